"""The run report: one self-contained HTML page (RUN/report.html, images embedded as data URIs) that
says what a training run did and how its model behaves on the validation split.

How each number is made, so that the page agrees with metrics.csv and `effnet eval`:
* the weights are the run's best (`RunDir.best_weights()`: best_ema.safetensors when summary.json
  says the EMA scored best), rebuilt from spec.json by the model factory (`load_for_inference`);
* the validation split is rebuilt from the run's saved options by the trainer's own `load_splits`
  (data, --val-split, seed, --val-subset; tools/run_data.py), preprocessed by the trainer's `eval_data` at the eval
  size of the model's data config, and scored once, batched, by `train.evaluate.evaluate` (the
  function the trainer logs every epoch with and `effnet eval` prints), at the trainer's eval batch
  and with the run's --amp; its per-batch logits give every per-image number (tools/scores.py);
* the data summary (images per class and split, files skipped as unreadable) is recomputed from
  the same rebuilt splits, not recorded at train time: the report must rebuild the val split
  anyway to evaluate it, the split and the skipping are deterministic in the saved options, so
  this is exact for the data the run saw (if the folder changed since, the page says its top-1
  differs from metrics.csv's) and costs no extra pass (the load-time check reads headers only,
  about a minute per million files);
* Grad-CAM runs only for the images shown (the most confidently wrong ones), for the predicted
  class, at the eval size with the whole image squashed in (tools/cam.py).

A run whose data is gone still gets a page (config, curves, the epochs of metrics.csv) with the
missing sections named, and the caller gets a UserError saying so: the run's own files are worth
seeing, and a script still learns that the report is incomplete.
"""

from __future__ import annotations

import io
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import EffnetWarning, UserError
from ..rundir import PLOTS, RunDir
from . import scores
from .report_data import THUMB_PX, DataSummary, Evaluation, Mistake, ReportData
from .run_data import open_run, run_setup, run_splits

MISTAKES = 24  # most confidently wrong val images shown, each with its Grad-CAM
DOING = "write a report"


def _best(run: RunDir, rows: list[dict[str, str]], weights: Path) -> dict:
    """The epoch whose top-1 the evaluated weights had, and metrics.csv's column holding it."""
    column = "ema_top1" if weights.name == run.link("best", ema=True).name else "top1"
    entry = (run.summary() or {}).get("best")
    if isinstance(entry, dict) and isinstance(entry.get("epoch"), int):
        return {"epoch": entry["epoch"], "weights": weights.name, "column": column}

    def top(r):  # the trainer's rule: the better of model and EMA, first epoch to reach it
        return max(float(r.get(c) or "-inf") for c in ("top1", "ema_top1"))

    epoch = int(max(rows, key=top)["epoch"]) if rows else None
    return {"epoch": epoch, "weights": weights.name, "column": column}


def _device(flag: str | None, saved: str | None):
    """--device when given, else the run's device where this machine has it, else auto."""
    from ..devices import pick_device

    if flag is not None:
        return pick_device(flag)
    try:
        return pick_device(saved)
    except UserError:  # trained on a GPU server, reported on a laptop
        return pick_device(None)


def _base_chain(ds):
    """`ds` and the datasets below it (Split over ImageFiles, ...), top first."""
    while ds is not None:
        yield ds
        ds = getattr(ds, "base", None)


def _targets(ds) -> list[int] | None:
    t = getattr(ds, "targets", None)
    return None if t is None else [int(x) for x in t]


def _source(ds, i: int) -> str | None:
    """The file behind item `i` of a split of a folder (None for in-memory data)."""
    for d in _base_chain(ds):
        if hasattr(d, "samples") and not hasattr(d, "indices"):
            return str(d.samples[i][0])
        if hasattr(d, "indices"):
            i = d.indices[i]
    return None


def _skipped(*splits) -> list[tuple[str, str]]:
    seen, out = set(), []
    for s in splits:
        for d in _base_chain(s):
            if hasattr(d, "skipped") and id(d) not in seen:  # train and val may share a tree
                seen.add(id(d))
                out += [(str(f), str(why)) for f, why in d.skipped]
    return out


def _data_summary(name: str, train_set, val_set, cm: np.ndarray) -> DataSummary:
    k = cm.shape[0]
    t = _targets(train_set)
    train_counts = np.bincount(t, minlength=k).tolist() if t is not None else None
    return DataSummary(name, len(train_set), train_counts, cm.sum(axis=1).tolist(),
                       _skipped(train_set, val_set))


class _Scores:
    """Collects, batch by batch, what the per-image numbers need (a few floats per image)."""

    def __init__(self):
        self.parts: list[tuple] = []

    def __call__(self, logits, labels) -> None:
        import torch

        probs = logits.softmax(dim=1)
        pred = logits.topk(1, dim=1).indices[:, 0]  # as top-1 accuracy counts a hit
        conf = probs.gather(1, pred[:, None])[:, 0]
        p_true = probs.gather(1, labels[:, None].long())[:, 0]
        self.parts.append(tuple(x.detach().to("cpu", torch.float64 if x.is_floating_point() else None)
                                .numpy() for x in (labels, pred, conf, p_true)))

    def arrays(self) -> tuple[np.ndarray, ...]:
        if not self.parts:
            return tuple(np.zeros(0) for _ in range(4))
        return tuple(np.concatenate(col) for col in zip(*self.parts, strict=True))


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _thumb_size(size: tuple[int, int], side: int = THUMB_PX) -> tuple[tuple[int, int], int]:
    from PIL import Image

    scale = side / max(size)
    # tiny images (digits) stay crisp pixels; photos are resampled smoothly
    resample = Image.NEAREST if scale >= 2 else Image.LANCZOS
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale))), resample


def _mistake_pictures(model, image, pred: int, with_cam: bool) -> tuple[bytes, bytes | None]:
    """PNGs of the image and of its Grad-CAM overlay for class `pred`, THUMB_PX a side."""
    from PIL import Image

    size, resample = _thumb_size(image.size)
    thumb = image.convert("RGB").resize(size, resample)
    if not with_cam:
        return _png(thumb), None
    from .cam import CamResult, grad_cam, overlay

    r = grad_cam(model, image, class_index=pred)
    heat = np.asarray(Image.fromarray(np.float32(r.heat), mode="F").resize(size, Image.BILINEAR))
    return _png(thumb), _png(overlay(thumb, CamResult(np.clip(heat, 0.0, 1.0), r.class_index, r.prob)))


def _evaluate(model, val_set, recipe, opts, weights: Path, device: str | None, amp: str | None,
              batch_size: int | None, workers: int | None, mistakes: int,
              seconds: dict) -> Evaluation:
    import importlib.util

    import torch

    from ..data.config import resolve_data_config
    from ..train.distributed import World
    from ..train.epoch_data import eval_data
    from ..train.evaluate import evaluate

    world = World(device=_device(device, opts.device))
    amp = amp or opts.amp
    pre = resolve_data_config(model)
    batch = batch_size or max(recipe.batch_size, 64)  # the trainer's eval batch
    if workers is None:
        workers = opts.workers if opts.workers is not None else (0 if world.device.type == "cpu" else 8)
    _, loader = eval_data(val_set, pre, batch, workers, world)
    collect = _Scores()
    t0 = time.perf_counter()
    model = model.to(world.device)
    r = evaluate(model, loader, world, amp, opts.channels_last, keep=collect)
    seconds["evaluation"] = time.perf_counter() - t0
    labels, preds, conf, p_true = collect.arrays()
    labels, preds = labels.astype(np.int64), preds.astype(np.int64)
    cm = scores.confusion_matrix(labels, preds, model.num_classes)
    ev = Evaluation(weights, str(world.device), amp, r["loss"], r["top1"], r["top5"], r["images"],
                    labels, preds, conf, cm, scores.class_scores(cm),
                    scores.calibration(conf, labels == preds))

    t0 = time.perf_counter()
    with_cam = importlib.util.find_spec("pytorch_grad_cam") is not None
    if not with_cam:
        ev.cam_note = "Grad-CAM needs the grad-cam package: pip install 'effnet[deploy]'"
    with torch.enable_grad():
        for i in scores.confident_mistakes(labels, preds, conf, mistakes).tolist():
            image, _ = val_set[i]
            png, cam = _mistake_pictures(model, image, int(preds[i]), with_cam)
            ev.mistakes.append(Mistake(i, _source(val_set, i), int(labels[i]), int(preds[i]),
                                       float(conf[i]), float(p_true[i]), png, cam))
    seconds["grad_cam"] = time.perf_counter() - t0
    return ev


def build_report(path, *, device: str | None = None, amp: str | None = None,
                 batch_size: int | None = None, workers: int | None = None,
                 mistakes: int = MISTAKES) -> ReportData:
    """What the page of run `path` shows. UserError for a path that is not a run or a run without
    weights; data that cannot be loaded leaves `missing` set (and the data sections empty)."""
    from ..data.config import resolve_data_config
    from ..inference import load_for_inference

    start = time.perf_counter()
    run, config, weights = open_run(path, DOING)
    model, saved_classes = load_for_inference(None, weights)
    recipe, opts = run_setup(run, config)
    rows = run.metrics()
    classes = list(saved_classes or [])
    classes += [str(i) for i in range(len(classes), model.num_classes)]  # a --num-classes beyond the data's
    page = ReportData(run, config, model.spec.name, sum(p.numel() for p in model.parameters()),
                      classes, resolve_data_config(model), rows, _best(run, rows, weights),
                      {k: run.plot(k).read_bytes() for k in PLOTS if run.plot(k).is_file()})
    try:
        with warnings.catch_warnings():  # the skipped files are listed on the page instead
            warnings.simplefilter("ignore", EffnetWarning)
            train_set, val_set, _ = run_splits(recipe, opts, saved_classes)
    except UserError as e:
        page.missing = str(e)
        return page
    page.seconds["load"] = time.perf_counter() - start
    page.evaluation = _evaluate(model, val_set, recipe, opts, weights, device, amp, batch_size,
                                workers, mistakes, page.seconds)
    page.data = _data_summary(opts.data or "digits", train_set, val_set, page.evaluation.cm)
    return page


def write_report(path, **kwargs) -> ReportData:
    """Write RUN/report.html (atomically) and return what it shows. UserError when the run or its
    weights are missing; when its data is gone, after writing the page without the data sections."""
    from .report_html import render

    start = time.perf_counter()
    page = build_report(path, **kwargs)
    page.seconds["total"] = time.perf_counter() - start  # the page says how long it took to make
    page.run.write(page.run.report_file, render(page).encode())
    if page.missing:
        raise UserError(f"{page.missing}; wrote {page.run.report_file} without the data summary "
                        "and the evaluation")
    return page
