"""What the run report shows, as plain data: report.py fills it, report_html.py draws it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..rundir import RunDir
from . import scores

THUMB_PX = 144  # the side of a mistake's pictures on the page


@dataclass
class Mistake:
    index: int  # in the val split
    source: str | None  # the image file, for a folder
    label: int
    pred: int
    prob: float  # softmax probability of `pred`
    prob_true: float  # ... of `label`
    image_png: bytes
    cam_png: bytes | None  # Grad-CAM overlay of `pred`; None without pytorch_grad_cam


@dataclass
class Evaluation:
    weights: Path
    device: str
    amp: str
    loss: float
    top1: float
    top5: float
    images: int
    labels: np.ndarray
    preds: np.ndarray
    confidence: np.ndarray
    cm: np.ndarray
    per_class: scores.ClassScores
    calib: scores.Calibration
    mistakes: list[Mistake] = field(default_factory=list)
    cam_note: str = ""


@dataclass
class DataSummary:
    name: str
    train_images: int
    train_counts: list[int] | None  # per class; None when the dataset does not list its labels
    val_counts: list[int]
    skipped: list[tuple[str, str]]  # (file, why) left out as unreadable, train and val


@dataclass
class ReportData:
    """Everything the page shows (report_html.render draws it)."""

    run: RunDir
    config: dict
    model: str
    params: int
    classes: list[str]
    preprocess: object  # arch.preprocess.Preprocess
    metrics: list[dict[str, str]]
    best: dict  # {"epoch", "weights", "column"}: where metrics.csv has the best weights' top-1
    plots: dict[str, bytes]
    data: DataSummary | None = None
    evaluation: Evaluation | None = None
    missing: str = ""  # why the data sections are absent
    seconds: dict[str, float] = field(default_factory=dict)
