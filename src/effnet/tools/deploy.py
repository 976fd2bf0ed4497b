"""`effnet deploy RUN_DIR`: the files a trained run ships as, each scored on the run's own val split.

From the run's best weights (`RunDir.best_weights`) it writes, into RUN_DIR/deploy by default:
  model.onnx        fp32, conv-BN folded, dynamic batch and height/width, the class names and the
                    preprocessing (size, crop, interpolation, mean, std) in its metadata_props;
and with int8:
  model_int8.pt2    torchao PT2E int8 for x86 (as `effnet quantize` makes it, tools/quantize.py);
  model_int8.onnx   ONNX Runtime static int8, QOperator U8S8, per-channel (tools/onnx_int8.py);
both calibrated on up to `calib_images` of the run's training images (a sample drawn with
`calib_seed`), through the eval transform the val split gets.

Then it loads each file back from disk, as `effnet eval` and `predict` do, and scores it, with the
run's fp32 weights beside them: top-1 / top-5 on the val split the run logged (rebuilt by the
trainer's `load_splits`, tools/run_data.py; scored by `train.evaluate.evaluate`, so the numbers are
the ones `effnet eval` prints for the same file and split), the file's size, and the median
latency of a forward pass at batch 1 and batch 32 on this CPU, with as many threads as torch uses
(a few warm-up passes, then `reps` timed ones; random input at the eval size). deploy.json holds
it all, deploy.md the same as a table. An int8 file more than INT8_WARN_POINTS top-1 below fp32
costs one warning line.

The int8 .pt2 runs eagerly here (an exact int8 simulation: slow); `torch.compile` with inductor
freezing is what makes it fast (tools/quantize.py `compile_int8`, BENCHMARKS.md), and compiling is
too slow for a command that reports in seconds. ONNX Runtime's int8 kernels need nothing of that.
"""

from __future__ import annotations

import json
import random
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import EffnetWarning, UserError
from ..fileio import atomic_write_bytes
from .deploy_table import markdown
from .onnx_int8 import SCHEME, quantize_onnx_int8
from .run_data import open_run, run_setup, run_splits

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from ..arch.preprocess import Preprocess
    from ..rundir import RunDir
    from ..train.options import RunOptions
    from ..train.recipe import Recipe

DOING = "deploy"
OUTPUT_DIR = "deploy"  # RUN_DIR/deploy
JSON_FILE, MARKDOWN_FILE = "deploy.json", "deploy.md"
ONNX_FILE, PT2_INT8_FILE, ONNX_INT8_FILE = "model.onnx", "model_int8.pt2", "model_int8.onnx"
CALIB_IMAGES = 200
LATENCY_BATCHES = (1, 32)
WARMUP, REPS = 2, 5
INT8_WARN_POINTS = 1.0  # top-1 points an int8 file may lose against fp32 before a warning


@dataclass
class Scored:
    """One file's row of deploy.json."""

    name: str
    file: str
    bytes: int
    top1: float | None = None
    top5: float | None = None
    loss: float | None = None
    images: int | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)  # batch -> median ms per pass
    top1_vs_fp32: float | None = None

    @property
    def mb(self) -> float:
        return self.bytes / 1e6


def _sample(n_images: int, limit: int, seed: int = 0) -> list[int]:
    """Up to `limit` indices of `n_images`, a seeded sample when there are more."""
    if n_images <= limit:
        return list(range(n_images))
    return sorted(random.Random(seed).sample(range(n_images), limit))


def calibration(train_set, pre, size: int, limit: int, seed: int = 0, batch: int = 16):
    """(number of images, a function returning a fresh iterator of their batches): up to `limit`
    of the run's training images (a sample drawn with `seed`), as the eval transform gives them to
    the model. Each pass reads the images again, so no list of them is held."""
    from ..data import Transformed, eval_transform

    data = Transformed(train_set, eval_transform(pre, size))
    picked = _sample(len(data), limit, seed)

    def batches() -> Iterator[torch.Tensor]:
        for i in range(0, len(picked), batch):
            yield torch.stack([data[j][0] for j in picked[i:i + batch]])

    return len(picked), batches


def latency_ms(model: nn.Module, shape: tuple[int, ...], reps: int = REPS, warmup: int = WARMUP) -> float:
    """Median milliseconds of one forward pass of a `shape` input (random, seeded)."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.inference_mode():
        for i in range(warmup + reps):
            t0 = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def score(name: str, path: Path, model: nn.Module, val_set, batch_size: int, in_chans: int,
          reps: int = REPS, latency_batches: tuple[int, ...] = LATENCY_BATCHES) -> Scored:
    """`model` (loaded from `path`) scored as deploy scores a file: top-1 / top-5 / loss on
    `val_set` (None: skipped) and the median latency of `in_chans` x eval-size inputs at each of
    `latency_batches`."""
    from ..data.config import resolve_data_config
    from ..train.distributed import World
    from ..train.epoch_data import eval_data
    from ..train.evaluate import evaluate

    row = Scored(name, str(path), path.stat().st_size)
    pre = resolve_data_config(model)  # the file's own preprocessing (an export's, from its metadata)
    if val_set is not None:
        world = World()
        _, loader = eval_data(val_set, pre, batch_size, 0, world)
        r = evaluate(model, loader, world)
        row.top1, row.top5, row.loss, row.images = r["top1"], r["top5"], r["loss"], r["images"]
    for b in latency_batches:
        row.latency_ms[str(b)] = latency_ms(model, (b, in_chans, pre.eval_size, pre.eval_size), reps)
    return row


def compare_to_fp32(rows: list[Scored]) -> list[str]:
    """Set each row's top-1 against the first (the fp32 weights'); a warning for each int8 file
    that loses more than INT8_WARN_POINTS."""
    fp32, lines = rows[0], []
    for r in rows[1:]:
        if r.top1 is None or fp32.top1 is None:
            continue
        r.top1_vs_fp32 = r.top1 - fp32.top1
        if r.name.startswith("int8") and r.top1_vs_fp32 < -INT8_WARN_POINTS:
            lines.append(f"{r.name} ({Path(r.file).name}) loses {-r.top1_vs_fp32:.2f} points of top-1 "
                         f"against fp32 ({r.top1:.2f} % vs {fp32.top1:.2f} %)")
    return lines


def _out_dir(run, output: Path | None) -> Path:
    out = Path(output) if output is not None else run.path / OUTPUT_DIR
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the deploy directory {out}: {e.strerror}") from None
    return out


@dataclass
class RunModel:
    """A run as deploy reads it: its best weights as a model, the recipe and options it trained
    with, its preprocessing, and its train / val splits (None, with `missing` saying why, when
    the data is gone)."""

    run: RunDir
    weights: Path
    model: nn.Module
    classes: list[str] | None
    recipe: Recipe
    opts: RunOptions
    pre: Preprocess
    train_set: Dataset | None
    val_set: Dataset | None
    missing: str | None = None

    def eval_batch(self, batch_size: int | None = None) -> int:
        return batch_size or max(self.recipe.batch_size, 64)  # the trainer's eval batch


def load_run_model(path, need_train: bool = False) -> RunModel:
    """The run at `path` read back for scoring (and, with `need_train`, calibrating): UserError
    for a path that is not a run, a run without weights, or, with `need_train`, a run whose
    training data cannot be loaded."""
    from ..data.config import resolve_data_config
    from ..inference import load_for_inference

    run, config, weights = open_run(path, DOING)
    model, classes = load_for_inference(None, weights)
    recipe, opts = run_setup(run, config)
    try:
        train_set, val_set, _ = run_splits(recipe, opts, classes)
    except UserError as e:
        if need_train:
            raise UserError(f"cannot {DOING} --int8: no calibration images: the run's training data "
                            f"cannot be loaded ({e})") from None
        return RunModel(run, weights, model, classes, recipe, opts, resolve_data_config(model),
                        None, None, str(e))
    return RunModel(run, weights, model, classes, recipe, opts, resolve_data_config(model),
                    train_set, val_set)


def write_int8_pt2(rm: RunModel, path: Path, calib_images: int = CALIB_IMAGES, calib_seed: int = 0,
                   keep_float: tuple[str, ...] = ()) -> int:
    """The run's torchao PT2E int8 .pt2 (as `effnet quantize` makes it) at `path`, calibrated on up
    to `calib_images` of its training images drawn with `calib_seed`, with the parts in
    `keep_float` (quantize.FLOAT_PARTS) left in float; the number of calibration images."""
    from . import quantize as q

    size = rm.pre.eval_size
    calibrated, batches = calibration(rm.train_set, rm.pre, size, calib_images, calib_seed)
    converted = q.quantize_int8(rm.model, batches(), size, keep_float)
    q.save_int8(converted, rm.model, rm.classes, size, path, keep_float, calibrated)
    return calibrated


def write_int8_onnx(rm: RunModel, fp32_onnx: Path, path: Path, calib_images: int = CALIB_IMAGES,
                    calib_seed: int = 0) -> int:
    """The ONNX Runtime static int8 .onnx of the run's fp32 .onnx `fp32_onnx` at `path`,
    calibrated as `write_int8_pt2` calibrates; the number of calibration images."""
    from . import export as ex

    _, batches = calibration(rm.train_set, rm.pre, rm.pre.eval_size, calib_images, calib_seed)
    return quantize_onnx_int8(fp32_onnx, path, batches(), ex.metadata(rm.model, rm.classes))


def deploy(path, output: Path | None = None, int8: bool = False, calib_images: int = CALIB_IMAGES,
           reps: int = REPS, batch_size: int | None = None, calib_seed: int = 0,
           log: Callable[[str], None] = print) -> dict:
    """Write the run's deployable files and deploy.json / deploy.md into `output` (default
    RUN_DIR/deploy); what deploy.json holds. UserError before anything is written for a path that
    is not a run, a run without weights, and int8 without calibration images (the run's training
    data gone); a run whose data is gone otherwise gets its files, sizes and latencies, and then
    a UserError saying the accuracy is missing. The int8 files are calibrated on the same sample
    of the run's training images, drawn with `calib_seed`."""
    from ..inference import load_exported
    from . import export as ex

    if calib_images < 1:
        raise UserError(f"--calib-images must be >= 1 (got {calib_images})")
    rm = load_run_model(path, need_train=int8)
    model, pre, size = rm.model, rm.pre, rm.pre.eval_size
    out = _out_dir(rm.run, output)
    started = time.perf_counter()

    onnx_path = out / ONNX_FILE
    # traced at >= 2x the total stride (torch.export's lower bound of a dynamic size); the graph
    # takes any size, the eval size included
    export_size = ex.check_size(model, max(size, ex.min_input_size(model)), dynamic_size=True)
    meta = ex.metadata(model, rm.classes)  # the eval size of the model's own preprocessing
    ex.save_onnx(ex.prepare(model), onnx_path, export_size, frozenset({"batch", "size"}), meta)
    log(f"wrote {onnx_path} (fp32, input Nx{model.in_chans}xHxW)")
    files = [("fp32 PyTorch", rm.weights), ("ONNX fp32", onnx_path)]
    calibrated = 0
    if int8:
        calibrated = write_int8_pt2(rm, out / PT2_INT8_FILE, calib_images, calib_seed)
        log(f"wrote {out / PT2_INT8_FILE} (torchao PT2E int8, {calibrated} calibration images)")
        write_int8_onnx(rm, onnx_path, out / ONNX_INT8_FILE, calib_images, calib_seed)
        log(f"wrote {out / ONNX_INT8_FILE} (ONNX Runtime static int8, {SCHEME})")
        files += [("int8 PT2E (.pt2)", out / PT2_INT8_FILE), ("int8 ONNX Runtime", out / ONNX_INT8_FILE)]

    rows = []
    for name, file in files:
        m = model if file == rm.weights else load_exported(file)[0]  # each file as eval/predict load it
        rows.append(score(name, file, m, rm.val_set, rm.eval_batch(batch_size), model.in_chans, reps))
        log(f"scored {name}")
    fp32 = rows[0]
    for line in compare_to_fp32(rows):
        warnings.warn(line, EffnetWarning, stacklevel=2)
    summary = {
        "run": str(rm.run), "weights": rm.weights.name, "output": str(out), "model": model.spec.name,
        "classes": rm.classes, "preprocess": asdict(pre),
        "val": {"data": rm.opts.data or "digits", "images": fp32.images, "missing": rm.missing},
        "calibration_images": calibrated or None, "calibration_seed": calib_seed if calibrated else None,
        "latency": {"device": "cpu", "threads": torch.get_num_threads(), "batches": list(LATENCY_BATCHES),
                    "warmup": WARMUP, "reps": reps, "statistic": "median ms per forward pass",
                    "input": f"random, {model.in_chans}x{size}x{size}"},
        "files": [{**asdict(r), "mb": round(r.mb, 3)} for r in rows],
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_bytes(out / JSON_FILE, (json.dumps(summary, indent=1) + "\n").encode())
    atomic_write_bytes(out / MARKDOWN_FILE, markdown(summary).encode())
    log(f"wrote {out / JSON_FILE} and {out / MARKDOWN_FILE}")
    if rm.missing:
        raise UserError(f"{rm.missing}; wrote {out} without top-1 (the run's val split cannot be rebuilt)")
    return summary
