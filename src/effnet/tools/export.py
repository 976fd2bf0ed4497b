"""Export a model for other runtimes: ONNX (the dynamo exporter) or a torch.export program (.pt2).

Exports are conv-BN folded (tools/fuse.py), carry their preprocessing and class names as metadata,
and may take a dynamic batch and a dynamic height/width, tf_ models included (nn/layers.py writes TF
"same" padding as one symbolic expression of the input size).

A .pt2 file is read back by `load_program`, which checks the archive first: `torch.export.load`
unpickles (torch.load(weights_only=False) on pickled weights/constants, pickle.loads on opaque
objects, and a weights_only=False fallback for sample inputs), so an archive holding any pickled
payload is refused before torch sees it. What remains is JSON (the graph, naming only registered
torch ops), raw tensor bytes, and sample inputs that load with weights_only=True.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import logging
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..arch.config import ModelConfig, spec_dict
from ..arch.preprocess import preprocess_from_dict
from ..arch.spec import spec_from_dict
from ..data.config import DataOverrides, resolve_data_config
from ..errors import UserError, error_line
from ..fileio import atomic_write, atomic_write_bytes
from .fuse import fuse_conv_bn

FORMATS = {"onnx": ".onnx", "exported-program": ".pt2"}
DYNAMIC_AXES = ("batch", "size")
MAX_SIZE = 4096  # upper bound of a dynamic height/width (torch.export wants a finite range)
META_FILE = "effnet.json"  # the .pt2 extra file with effnet's metadata (ONNX: metadata_props)


def min_input_size(model: nn.Module) -> int:
    """Smallest height/width an export takes: twice the total stride, so the last feature map is
    at least 2x2. torch.export specialises a 1x1 map (a broadcast case), and with TF padding its
    range analysis of the nested ceil-divisions cannot rule 1x1 out below 2x the stride."""
    return 2 * int(model.feature_info[-1]["reduction"])


def parse_dynamic(text: str | None) -> frozenset[str]:
    """'batch,size' -> {'batch', 'size'}; '' or None -> static shapes."""
    axes = frozenset(a.strip() for a in (text or "").split(",") if a.strip())
    bad = sorted(axes - set(DYNAMIC_AXES))
    if bad:
        raise UserError(f"--dynamic: unknown axis {bad[0]!r} (choose from {', '.join(DYNAMIC_AXES)})")
    return axes


def check_size(model: nn.Module, size: int, dynamic_size: bool = False) -> int:
    """`size` if an export can take it: at least the total stride (a 1x1 last map), twice that
    for a dynamic size (see min_input_size)."""
    stride = int(model.feature_info[-1]["reduction"])
    low = min_input_size(model) if dynamic_size else stride
    if not low <= size <= MAX_SIZE:
        why = "twice its total stride, for a dynamic size" if dynamic_size else "its total stride"
        raise UserError(f"--size {size}: {model.spec.name} exports for {low}..{MAX_SIZE} px inputs "
                        f"({low} = {why})")
    return size


def metadata(model: nn.Module, classes: list[str] | None, size: int | None = None,
             **extra: str) -> dict[str, str]:
    """String key -> string value metadata: the spec, its data config (resolved; eval size `size`
    when given, for a fixed-size export) and class names."""
    spec = model.spec
    pre = resolve_data_config(model, flags=DataOverrides(eval_size=size))
    meta = {
        "effnet.model": spec.name,
        # the spec with its preprocessing beside it, in the model config's file form
        "effnet.spec": json.dumps(spec_dict(spec, pre)),
        "effnet.num_classes": str(model.num_classes),
        "effnet.classes": json.dumps(list(classes) if classes else None),
        # the eval transform, spelled out for runtimes that do not read effnet's spec
        "effnet.preprocess": json.dumps({**dataclasses.asdict(pre), "input": "RGB float in [0, 1], NCHW",
                                         "resize": "short side to floor(eval_size / crop_pct), "
                                                   "center crop eval_size (crop_pct >= 1: squash)"}),
    }
    meta.update(extra)
    return meta


def prepare(model: nn.Module, fuse: bool = True) -> nn.Module:
    """An eval-mode copy to export: conv-BN folded, NCHW inside (the CPU channels_last reorder
    adds stride guards that pin the size, and other runtimes choose their own layout)."""
    out = fuse_conv_bn(model) if fuse else copy.deepcopy(model).eval()
    out.cpu_channels_last = False
    return out


def dynamic_shapes(model: nn.Module, dynamic: frozenset[str]) -> dict | None:
    if not dynamic:
        return None
    from torch.export import Dim

    axes: dict[int, Dim] = {}
    if "batch" in dynamic:
        axes[0] = Dim("batch", min=1, max=1 << 16)
    if "size" in dynamic:
        axes[2] = Dim("height", min=min_input_size(model), max=MAX_SIZE)
        axes[3] = Dim("width", min=min_input_size(model), max=MAX_SIZE)
    return {"x": axes}


def example_input(model: nn.Module, size: int, batch: int = 2) -> torch.Tensor:
    # batch 2: torch.export specialises a dynamic dimension whose example value is 0 or 1
    return torch.randn(batch, model.in_chans, size, size)


def export_program(model: nn.Module, size: int, dynamic: frozenset[str] = frozenset()):
    """torch.export.ExportedProgram of `model` (already prepared) for `size` px inputs."""
    return torch.export.export(model, (example_input(model, size),),
                               dynamic_shapes=dynamic_shapes(model, dynamic))


def save_onnx(model: nn.Module, path: Path, size: int, dynamic: frozenset[str], meta: dict[str, str]) -> Path:
    program = torch.onnx.export(model, (example_input(model, size),), dynamo=True,
                                dynamic_shapes=dynamic_shapes(model, dynamic),
                                input_names=["image"], output_names=["logits"], verbose=False)
    program.model.metadata_props.update(meta)
    atomic_write(path, lambda tmp: program.save(str(tmp)))
    return path


def save_program(program, path: Path, meta: dict[str, str]) -> Path:
    """torch.export.save with effnet's metadata as an extra file; atomic. Saved to memory first:
    torch's zip writer, writing to a file on a full disk, aborts the whole process. The traced
    example input (random noise: 1.2 MB at 224 px, a fifth of an int8 Lite0) is not kept."""
    program.example_inputs = None
    buf = io.BytesIO()
    torch.export.save(program, buf, extra_files={META_FILE: json.dumps(meta)})
    atomic_write_bytes(path, buf.getvalue())
    return path


def _check_archive(path: Path) -> dict[str, str]:
    """effnet's metadata of a .pt2; refuses one whose loading would unpickle anything (see the
    module docstring)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise UserError(f"cannot read {path}: not a .pt2 archive ({e})") from None
    with zf:
        names = zf.namelist()
        meta_name = next((n for n in names if n.endswith(f"/extra/{META_FILE}")), None)
        if meta_name is None:
            raise UserError(f"refusing to load {path}: not written by effnet (no {META_FILE} inside)")
        for name in names:
            if name.endswith(("weights_config.json", "constants_config.json")):
                config = json.loads(zf.read(name)).get("config", {})
                for fqn, payload in config.items():
                    if payload.get("use_pickle") or not str(payload.get("path_name", "")).startswith(
                            ("weight_", "tensor_")):
                        raise UserError(f"refusing to load {path}: {fqn} is stored as a pickle")
            elif name.endswith(".pt") and ("/data/weights/" in name or "/data/constants/" in name):
                raise UserError(f"refusing to load {path}: legacy pickled payload {name}")
            elif "/data/sample_inputs/" in name and zf.getinfo(name).file_size:  # empty: none saved
                try:
                    torch.load(io.BytesIO(zf.read(name)), weights_only=True)
                except Exception:
                    raise UserError(f"refusing to load {path}: {name} holds more than tensors") from None
        try:
            return json.loads(zf.read(meta_name))
        except ValueError as e:
            raise UserError(f"cannot read {path}: damaged {META_FILE} ({e})") from None


def config_from_meta(meta: dict[str, str]) -> tuple[ModelConfig, list[str] | None]:
    """The model config (spec, class count, the preprocessing it was exported with) and class
    names that `metadata` wrote into an export (.pt2 or ONNX)."""
    spec = json.loads(meta["effnet.spec"])  # every effnet version wrote the preprocessing inside
    config = ModelConfig(spec_from_dict(spec), num_classes=int(meta["effnet.num_classes"]),
                         preprocess=preprocess_from_dict(spec["preprocess"]))
    return config, json.loads(meta.get("effnet.classes", "null"))


class ExportedModel(nn.Module):
    """A loaded export (a .pt2 program, plain or int8, or an ONNX file run by onnxruntime) with
    what eval/predict need: its config (spec, class count, the preprocessing it was exported with)
    and num_classes. `program` is the callable that runs it (tensor in, logits out)."""

    def __init__(self, program: Callable[[torch.Tensor], torch.Tensor], config: ModelConfig,
                 meta: dict[str, str]):
        super().__init__()
        self.program = program
        self.config, self.meta = config, meta
        self.spec, self.num_classes = config.spec, config.num_classes

    def train(self, mode: bool = True) -> ExportedModel:
        # an exported program is frozen in eval behaviour; train()/eval() have nothing to switch
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self.program(x)
        except (RuntimeError, AssertionError) as e:  # its input guards: a shape it was not exported for
            if not str(e).startswith(("Guard failed", "Expected input")):
                raise
            raise UserError(f"this exported model takes other input shapes ({error_line(e)}); "
                            f"it was exported for {self.config.preprocess.eval_size} px") from None


def import_pt2e() -> None:
    """Import torchao's PT2E quantization. torch logs a deprecation warning about torchao's own
    code while it loads (register_constant on an Enum): a line on the user's terminal they can do
    nothing about, so torch's pytree logger is quieted for the import."""
    logger = logging.getLogger("torch.utils._pytree")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401
    finally:
        logger.setLevel(level)


def load_program(path: Path) -> tuple[ExportedModel, list[str] | None]:
    """The model in an effnet .pt2 file and its class names."""
    meta = _check_archive(path)
    if "effnet.quantized" in meta:  # registers the quantized_decomposed ops the graph names
        import_pt2e()
    try:
        program = torch.export.load(str(path))
    except Exception as e:  # a damaged archive, or one from an incompatible torch
        raise UserError(f"cannot load {path}: {error_line(e)}") from None
    config, classes = config_from_meta(meta)
    return ExportedModel(program.module(), config, meta), classes
