"""ONNX Runtime static int8 of an fp32 effnet .onnx, for CPUs without PyTorch.

onnxruntime's recipe for CNNs: `quant_pre_process` (symbolic shape inference and graph
optimisation, which its quantizer asks for), then `quantize_static` with per-channel int8 weights,
activation ranges by min/max over calibration images that a CalibrationDataReader feeds one batch
at a time (no list of them is held). The result keeps the fp32 file's dynamic batch and size and
its effnet metadata (classes, preprocessing), so `eval` and `predict` read it like the fp32 file.

Not onnxruntime's default (QDQ, S8S8), which targets portability across execution providers: this
file is for its CPU provider. QOperator format (the quantizer writes QLinearConv, and
com.microsoft's QLinearAdd, QLinearGlobalAveragePool, QLinearSigmoid, ... itself, nothing left for
the runtime to fuse, so the file runs on onnxruntime, not on any ONNX runtime)
with uint8 activations and int8 weights (U8S8, the pairing x86's VNNI/AVX2 int8 kernels
take). Fine-tuned Lite0 at 224 px, 1 thread, ms per batch of 1 / 32 (benchmarks/quantize.py's
model, probed on a busy AMD EPYC): fp32 11.8 / 780; QDQ S8S8 8.6 / 640; QDQ U8S8 5.6 / 476;
QOperator U8S8 4.4 / 195. On x86 CPUs without VNNI, uint8 x int8 products can saturate
(onnxruntime's docs: quantize with reduce_range there); not done, since it costs precision on
the CPUs that have VNNI.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from ..errors import UserError
from ..fileio import atomic_write

SCHEME = "QOperator U8S8, per-channel"  # how deploy, its log and the benchmark name the file
QUANTIZED = f"int8 onnxruntime {SCHEME}, min/max calibration"


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """onnxruntime's quantizer logs advice through the root logger; the user gets effnet's lines."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def quantize_onnx_int8(fp32: Path, out: Path, batches: Iterable[torch.Tensor],
                       meta: dict[str, str]) -> int:
    """Write the static int8 model of `fp32` to `out` (atomically), calibrated on `batches` of
    preprocessed images, with `meta` (the fp32 file's metadata) and how it was quantized in its
    metadata_props; the number of calibration images."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    stream = iter(batches)
    first = next(stream, None)
    if first is None:  # onnxruntime's calibrator would raise its own ValueError, mid-quantization
        raise UserError("no calibration images")

    class Reader(CalibrationDataReader):
        def __init__(self, name: str):
            self.name, self.stream, self.images = name, itertools.chain([first], stream), 0

        def get_next(self):
            x = next(self.stream, None)
            if x is None:
                return None
            self.images += len(x)
            return {self.name: x.detach().float().cpu().numpy()}

    with tempfile.TemporaryDirectory(prefix="effnet-onnx-int8-") as tmp, _quiet_logging():
        prepared, quantized = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(prepared))
        name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
        reader = Reader(name)
        quantize_static(str(prepared), str(quantized), reader, quant_format=QuantFormat.QOperator,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        model = onnx.load(str(quantized))
    del model.metadata_props[:]
    for key, value in {**meta, "effnet.quantized": QUANTIZED,
                       "effnet.calib_images": str(reader.images)}.items():
        model.metadata_props.add(key=key, value=value)
    atomic_write(out, lambda path: onnx.save(model, str(path)))
    return reader.images
