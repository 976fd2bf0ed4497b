"""The report's drawn figures, as PNG bytes (matplotlib, off-screen): the reliability diagram and,
for more classes than a table can show, the confusion matrix as an image."""

from __future__ import annotations

import io

import numpy as np

from .scores import Calibration


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _plt().close(fig)
    return buf.getvalue()


def reliability_png(cal: Calibration) -> bytes:
    """Accuracy against confidence per bin (bars), the diagonal of perfect calibration, and how
    many images each bin holds (below), as Guo et al. 2017 Fig. 1 draws it."""
    plt = _plt()
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.2, 5.6), sharex=True,
                                   gridspec_kw={"height_ratios": (3, 1)})
    lo, width = cal.edges[:-1], np.diff(cal.edges)
    filled = cal.count > 0
    ax.bar(lo[filled], cal.accuracy[filled], width=width[filled], align="edge", color="#4c78a8",
           edgecolor="white", label="accuracy")
    gap_lo = np.minimum(cal.accuracy, cal.confidence)[filled]
    ax.bar(lo[filled], np.abs(cal.accuracy - cal.confidence)[filled], bottom=gap_lo,
           width=width[filled], align="edge", color="#e45756", alpha=0.35, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{len(lo)} equal-width bins; ECE {cal.ece:.4f}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    hist.bar(lo, cal.count, width=width, align="edge", color="#9d9d9d", edgecolor="white")
    hist.set_xlabel("confidence (softmax probability of the predicted class)")
    hist.set_ylabel("images")
    fig.tight_layout()
    return _png(fig)


def confusion_png(cm: np.ndarray) -> bytes:
    """The confusion matrix, each row divided by its images (the recall of the class on the
    diagonal), for too many classes to print as a table."""
    plt = _plt()
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    fig, ax = plt.subplots(figsize=(7, 6.2))
    im = ax.imshow(frac, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xlabel("predicted class index")
    ax.set_ylabel("true class index")
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    fig.tight_layout()
    return _png(fig)
