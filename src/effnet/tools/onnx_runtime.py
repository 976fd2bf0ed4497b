"""ONNX files that effnet exported, run by onnxruntime for `eval` and `predict`: a CPU session with
as many threads as torch uses, and the model config and class names read back from the file's
metadata_props (tools/export.py writes them), so the preprocessing is the one the file names.

onnxruntime is imported here only, when a .onnx is given: `effnet predict` of other files never
loads it (tests/test_cli_models.py says so)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError, error_line
from .export import ExportedModel, config_from_meta


def session(path: Path, threads: int | None = None):
    """An onnxruntime CPU session of `path` with `threads` intra-op threads (default: torch's,
    i.e. OMP_NUM_THREADS or the cores, so PyTorch and ONNX timings share a machine fairly)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 4  # fatal only: its own warnings and errors reach the user as ours
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own exception types: a damaged or foreign file
        raise UserError(f"cannot load {path}: not an ONNX model onnxruntime can run "
                        f"({error_line(e)})") from None


class OnnxProgram:
    """An onnxruntime session as a function of a torch tensor: NCHW float32 in, logits out (on the
    device the input came from)."""

    def __init__(self, sess, path: Path):
        self.session, self.path = sess, path
        self.input = sess.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        try:
            (out,) = self.session.run(None, {self.input: x.detach().float().cpu().numpy()})
        except Exception as e:  # a shape the graph cannot take
            shape = "x".join(map(str, x.shape))
            raise UserError(f"onnxruntime cannot run {self.path} on a {shape} input "
                            f"({error_line(e)})") from None
        return torch.from_numpy(out).to(x.device)


def load_onnx(path: Path, threads: int | None = None) -> tuple[ExportedModel, list[str] | None]:
    """The model in an effnet .onnx file (fp32 or int8) and its class names."""
    if not path.is_file():
        raise UserError(f"no such weights file: {path}")
    sess = session(path, threads)
    meta = dict(sess.get_modelmeta().custom_metadata_map)
    if "effnet.spec" not in meta:
        raise UserError(f"cannot use {path}: not written by effnet (no effnet.spec in its metadata, "
                        "so its preprocessing and classes are unknown)")
    try:
        config, classes = config_from_meta(meta)
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"cannot use {path}: damaged effnet metadata ({error_line(e)})") from None
    return ExportedModel(OnnxProgram(sess, path), config, meta), classes
