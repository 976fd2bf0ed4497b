"""Post-training int8 quantization for x86 CPUs: PT2E (torch.export, then torchao's prepare_pt2e /
convert_pt2e with the X86 inductor quantizer: per-channel symmetric int8 weights, per-tensor
affine uint8 activations, calibrated by min/max observers on real images).

The converted model holds quantize/dequantize pairs around float ops: run eagerly it simulates int8
exactly but is slow; torch.compile (inductor, with freezing) lowers those patterns to oneDNN int8
kernels, which is where the speed comes from (see `compile_int8`).

`FLOAT_PARTS` names the parts a user may keep in float: the first conv (it sees raw pixels), the
squeeze-excite gates (a sigmoid gate multiplies every channel: an error there scales a whole map)
and the classifier. benchmarks/quantize.py measures which of them help.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from ..nn.layers import SqueezeExcite
from . import export as ex

FLOAT_PARTS = ("stem", "se", "classifier")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


def find_images(folder: Path, limit: int, seed: int = 0) -> list[Path]:
    """Up to `limit` image files under `folder` (recursively), a seeded sample when there are more."""
    if not folder.is_dir():
        raise UserError(f"--calib: no such directory: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"--calib: no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
    if len(files) > limit:
        files = sorted(random.Random(seed).sample(files, limit))
    return files


def calibration_batches(files: list[Path], pre, size: int, batch: int = 16) -> Iterable[torch.Tensor]:
    """The calibration images through effnet's eval transform (what eval/predict feed the model)."""
    from ..inference import preprocess_image

    for i in range(0, len(files), batch):
        yield torch.stack([preprocess_image(p, pre, size) for p in files[i:i + batch]])


def float_module_names(model: nn.Module, keep_float: Iterable[str]) -> list[str]:
    """Module names of the parts in `keep_float` (a subset of FLOAT_PARTS) in `model`."""
    keep = set(keep_float)
    bad = sorted(keep - set(FLOAT_PARTS))
    if bad:
        raise UserError(f"--keep-float: unknown part {bad[0]!r} (choose from {', '.join(FLOAT_PARTS)})")
    names = [n for n in ("stem", "classifier") if n in keep]
    if "se" in keep:
        names += [n for n, m in model.named_modules() if isinstance(m, SqueezeExcite)]
    return names


def quantize_int8(model: nn.Module, batches: Iterable[torch.Tensor], size: int,
                  keep_float: Iterable[str] = ()) -> nn.Module:
    """The PT2E-converted int8 module of `model` (an eval-mode EfficientNet), calibrated on `batches`
    of `size` px images; its batch dimension stays dynamic."""
    ex.import_pt2e()
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    ready = ex.prepare(model)  # conv-BN folded, NCHW: the quantizer sees conv (+ act) patterns
    graph = ex.export_program(ready, size, frozenset({"batch"})).module()
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    for name in float_module_names(ready, keep_float):
        quantizer.set_module_name_qconfig(name, None)
    prepared = prepare_pt2e(graph, quantizer)
    seen = 0
    with torch.no_grad():
        for x in batches:
            prepared(x)
            seen += len(x)
    if not seen:
        raise UserError("no calibration images")
    converted = drop_unused_attributes(convert_pt2e(prepared))  # fold_quantize=True: int8 weights
    # eval() / train() on the result then only switch dropout/BN ops (there are none left)
    # instead of raising, so effnet's evaluate() can take it like any model
    return allow_exported_model_train_eval(converted)


def drop_unused_attributes(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """`graph` without the parameters and buffers no node reads. convert_pt2e folds each weight's
    quantize op into an int8 constant (`_frozen_paramN`) but leaves the float weight it was folded
    from registered on the module; torch.export lifts every registered tensor, read or not, so the
    saved .pt2 held each conv weight twice, in float32 and in int8 (larger than the fp32 file)."""
    read = {n.target for n in graph.graph.nodes if n.op == "get_attr"}
    for name, _ in [*graph.named_parameters(), *graph.named_buffers()]:
        if name not in read:
            owner, _, leaf = name.rpartition(".")
            delattr(graph.get_submodule(owner), leaf)
    graph.delete_all_unused_submodules()
    return graph


def save_int8(converted: nn.Module, model: nn.Module, classes: list[str] | None, size: int, path: Path,
              keep_float: Iterable[str] = (), calib_images: int = 0) -> Path:
    """The int8 module as an effnet .pt2 (re-exported, dynamic batch) with the fp32 model's
    metadata; `effnet eval` / `effnet predict` read it through `export.load_program`."""
    program = torch.export.export(converted, (ex.example_input(model, size),),
                                  dynamic_shapes=ex.dynamic_shapes(model, frozenset({"batch"})))
    meta = ex.metadata(model, classes, size, **{"effnet.quantized": "int8 pt2e x86 per-channel",
                                          "effnet.float_parts": ",".join(sorted(keep_float)),
                                          "effnet.calib_images": str(calib_images)})
    return ex.save_program(program, path, meta)


def compile_int8(module: nn.Module) -> nn.Module:
    """torch.compile for the int8 graph: inductor with freezing turns q/dq + conv patterns into
    oneDNN int8 convolutions (without freezing the weights stay dequantized at every call).
    benchmarks/quantize.py compiles the fp32 baseline the same way."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    return torch.compile(module, dynamic=True)  # one compilation for every batch size
