"""Per-epoch metrics: a CSV beside the run (rewritten whole from the history, so a resumed run
never shows an epoch twice), TensorBoard when it is installed, and the final table."""

from __future__ import annotations

import csv
import io

import torch

from ..rundir import RunDir
from ..tables import text_table

COLUMNS = ("epoch", "global_step", "images", "global_batch", "lr", "train_loss", "val_loss",
           "top1", "top5", "ema_val_loss", "ema_top1", "ema_top5", "epoch_time_s", "img_per_s")


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks=(1, 5)) -> list[int]:
    """How many rows have the target among the top-k logits, per k (k capped at the class count)."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hit = top.eq(target.view(-1, 1))
    return [int(hit[:, :min(k, kmax)].any(dim=1).sum()) for k in ks]


class MetricsLog:
    def __init__(self, run: RunDir, history: list[dict] | None = None, tensorboard: bool = True):
        self.run = run
        self.history: list[dict] = list(history or [])
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run.tensorboard_dir))
            except Exception:  # tensorboard is optional
                self.tb = None

    def add(self, row: dict) -> None:
        self.history.append(row)
        self.write()
        if self.tb is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, int | float):
                    self.tb.add_scalar(k, v, row["epoch"])
            self.tb.flush()

    def write(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in self.history:
            w.writerow({k: _fmt(row.get(k)) for k in COLUMNS})
        self.run.write(self.run.metrics_file, buf.getvalue().encode())

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def summary_table(history: list[dict]) -> str:
    cols = [("epoch", "epoch", "{}"), ("train loss", "train_loss", "{:.4f}"),
            ("val loss", "val_loss", "{:.4f}"), ("top-1", "top1", "{:.2f}"), ("top-5", "top5", "{:.2f}"),
            ("EMA top-1", "ema_top1", "{:.2f}"), ("lr", "lr", "{:.3g}"), ("img/s", "img_per_s", "{:.0f}"),
            ("time s", "epoch_time_s", "{:.1f}")]
    cols = [c for c in cols if any(r.get(c[1]) is not None for r in history)]
    rows = [tuple(c[0] for c in cols)]
    for r in history:
        rows.append(tuple("-" if r.get(k) is None else f.format(r[k]) for _, k, f in cols))
    return text_table(rows[0], rows[1:])
