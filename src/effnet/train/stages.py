"""Runs a progressive-learning schedule (`effnet.train.progressive`) inside the trainer.

Stages are whole epochs: stage i of M covers epochs [floor(i*E/M), floor((i+1)*E/M)), i.e. epoch e
is in the first stage i with (e + 1) / E <= (i + 1) / M (`progressive.stage_of_progress`, which
`effnet schedule --epochs E` prints by too). Before each epoch the hook derives the stage from
the fraction of the run's epochs done at the epoch's end (`Trainer.epoch_progress`), so a resumed
run lands in the right stage, and one resumed with more epochs never goes back to an earlier
stage: the stages left are spread over the epochs left (plan.py). On a stage change it
rebuilds the train pipeline at the stage's image size, RandAugment magnitude and mixup/cutmix, and
sets the model's (and EMA's) dropout. Weights, optimizer, LR schedule and EMA carry on over the
global step. Each epoch's stage, and the dropout rate the model's dropout module actually holds,
go to the run directory's progressive.csv.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from ..rundir import RunDir
from .progressive import ProgressivePlan, StageSetting, schedule, stage_of_progress

COLUMNS = ("epoch", "stage", "size", "randaug", "mixup", "cutmix", "dropout")


def progressive_hook(plan: ProgressivePlan) -> Callable:
    current: dict = {"stage": None, "stages": None}

    def on_epoch_start(trainer) -> None:
        if current["stages"] is None:  # sizes given as fractions take the run's eval size
            current["stages"] = schedule(plan.at_eval_size(trainer.data_config.eval_size)
                                         if plan.relative else plan)
        stages = current["stages"]
        st = stage_of_progress(stages, trainer.epoch_progress(trainer.epoch + 1))
        if current["stage"] != st.index:
            trainer.set_data_stage(st.size, st.randaug or None, st.mixup, st.cutmix)
            trainer.set_regularization(dropout=st.dropout)
            current["stage"] = st.index
            if trainer.world.main:
                print(f"progressive stage {st.index + 1}/{len(stages)}: size {st.size}px, "
                      f"RandAugment M {st.randaug:.2f}, mixup {st.mixup:.3f}, cutmix {st.cutmix:.3f}, "
                      f"dropout {st.dropout:.3f}", flush=True)
        if trainer.world.main:
            _log(trainer.rundir, trainer.epoch, st, trainer.model_dropout())

    return on_epoch_start


def _log(run: RunDir, epoch: int, st: StageSetting, dropout: float) -> None:
    """Epoch `epoch` (0-based) trains in stage `st` with the model's dropout at `dropout`."""
    path = run.stages_file
    rows = []
    if path.exists():  # keep earlier epochs, drop any the resumed run is about to redo
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < epoch + 1]
    rows.append({"epoch": epoch + 1, "stage": st.index + 1, "size": st.size,
                 "randaug": f"{st.randaug:.4g}", "mixup": f"{st.mixup:.4g}", "cutmix": f"{st.cutmix:.4g}",
                 "dropout": f"{dropout:.4g}"})
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    w.writerows(rows)
    run.write(path, buf.getvalue().encode())
