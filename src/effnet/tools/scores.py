"""What a classifier's predictions on a labelled set say, beyond top-1: the confusion matrix,
precision / recall / F1 per class, calibration (reliability bins and expected calibration error)
and its most confident mistakes. Plain numpy over per-image (label, prediction, confidence), so the
run report and its tests compute them from the same arrays.

Conventions (the report states them on the page):
* the prediction of an image is its top-1 class (`logits.topk(1)`, as top-1 accuracy counts it),
  its confidence that class's softmax probability;
* a class nothing was predicted as has no precision (nor F1): NaN here, "-" on the page, and 0 in
  the macro average, which runs over the classes that occur as a label or a prediction (scikit-
  learn's `precision_recall_fscore_support(..., average="macro", zero_division=0)`);
* calibration bins are 15 equal-width confidence intervals (m/15, (m+1)/15] (the first one closed
  at 0), and ECE = sum over bins of |bin| / n * |accuracy(bin) - mean confidence(bin)|, as Guo et
  al. 2017, "On Calibration of Modern Neural Networks", eq. (3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ECE_BINS = 15


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) int64 counts: row = true class, column = predicted class."""
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    return np.bincount(labels * classes + preds, minlength=classes * classes).reshape(classes, classes)


@dataclass(frozen=True)
class ClassScores:
    """Per-class arrays (one entry per class) from a confusion matrix."""

    support: np.ndarray  # images of the class (row sums)
    predicted: np.ndarray  # images predicted as the class (column sums)
    correct: np.ndarray  # the diagonal
    precision: np.ndarray  # correct / predicted; NaN when nothing was predicted as the class
    recall: np.ndarray  # correct / support; NaN for a class without images
    f1: np.ndarray  # 2 correct / (support + predicted), the harmonic mean of the two

    @property
    def present(self) -> np.ndarray:
        """The classes that occur as a label or a prediction (those the macro average counts)."""
        return (self.support + self.predicted) > 0

    def macro(self) -> tuple[float, float, float]:
        """Macro precision, recall, F1 over the present classes (undefined ones count 0)."""
        keep = self.present
        return tuple(float(np.nan_to_num(a[keep], nan=0.0).mean()) if keep.any() else float("nan")
                     for a in (self.precision, self.recall, self.f1))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def class_scores(cm: np.ndarray) -> ClassScores:
    correct, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    return ClassScores(support, predicted, correct, _ratio(correct, predicted),
                       _ratio(correct, support), _ratio(2 * correct, support + predicted))


@dataclass(frozen=True)
class Calibration:
    edges: np.ndarray  # bins + 1 edges, 0 .. 1
    count: np.ndarray  # images per bin
    accuracy: np.ndarray  # fraction correct per bin (NaN for an empty bin)
    confidence: np.ndarray  # mean confidence per bin (NaN for an empty bin)
    ece: float


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> Calibration:
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin m holds edges[m] < conf <= edges[m + 1] (digitize over the inner edges, right-closed)
    which = np.digitize(conf, edges[1:-1], right=True)
    count = np.bincount(which, minlength=bins)
    acc = _ratio(np.bincount(which, weights=hit, minlength=bins), count)
    mean_conf = _ratio(np.bincount(which, weights=conf, minlength=bins), count)
    gaps = np.nan_to_num(np.abs(acc - mean_conf), nan=0.0)
    ece = float((count / max(1, len(conf)) * gaps).sum())
    return Calibration(edges, count, acc, mean_conf, ece)


def confident_mistakes(labels: np.ndarray, preds: np.ndarray, confidence: np.ndarray,
                       n: int) -> np.ndarray:
    """Indices of up to `n` wrongly predicted images, most confident first (ties: lower index)."""
    wrong = np.flatnonzero(np.asarray(labels) != np.asarray(preds))
    order = np.lexsort((wrong, -np.asarray(confidence, dtype=np.float64)[wrong]))
    return wrong[order[:n]]


def top_confusions(cm: np.ndarray, n: int = 10) -> list[tuple[int, int, int]]:
    """(true class, predicted class, images) of the `n` largest off-diagonal cells, largest first."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = np.flatnonzero(off)
    order = flat[np.lexsort((flat, -off.ravel()[flat]))][:n]
    k = cm.shape[0]
    return [(int(i // k), int(i % k), int(off.ravel()[i])) for i in order]
