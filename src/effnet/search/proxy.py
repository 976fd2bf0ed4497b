"""Train any NetSpec with the library's trainer (`effnet.train.train`), the one training loop.

A recipe's model may be the path of a spec file (`effnet.models.resolve`), so a searched or scaled
network is written as one beside its run directory and trained from it: nothing is registered in
the zoo. The run directory's spec.json holds the full spec as trained, so `effnet predict/eval`
rebuild it later.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
from pathlib import Path

from ..arch.config import spec_dict
from ..arch.preprocess import Preprocess
from ..arch.spec import NetSpec
from ..errors import UserError
from ..rundir import RunDir


@dataclasses.dataclass(frozen=True)
class Proxy:
    """The short proxy recipe every candidate trains with, and where its data comes from."""

    recipe: str = "quick"
    epochs: int = 3
    data: str | None = None
    train_subset: int | None = None
    val_subset: int | None = None
    batch_size: int | None = None
    seed: int = 0
    device: str | None = None
    workers: int | None = None
    # also checkpoint every N optimiser steps: a killed worker's trial is resumed from there by
    # the worker that retries it, instead of from its last epoch end (0: epoch ends only)
    ckpt_every_steps: int = 0

    # where and how a candidate trains, not what it learns: a study does not remember them
    RUNTIME = ("device", "workers", "ckpt_every_steps")

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UserError(f"--budget-epochs must be >= 1 (got {self.epochs})")
        if self.ckpt_every_steps < 0:
            raise UserError(f"--ckpt-every-steps must be >= 0 (got {self.ckpt_every_steps})")
        for name in ("train_subset", "val_subset", "batch_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1 (got {v})")

    def recipe_for(self, model_name: str, size: int):
        from ..train.presets import get_recipe
        from ..train.recipe import override

        changes = {"model": model_name, "phi": None, "width": None, "depth": None,
                   "img_size": size, "eval_size": size, "epochs": self.epochs, "steps": 0,
                   "seed": self.seed}
        if self.batch_size is not None:
            changes["batch_size"] = self.batch_size
        return override(get_recipe(self.recipe), changes, "proxy recipe")

    def study_record(self) -> dict:
        """The settings that decide a candidate's result, which every worker of a study shares."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.RUNTIME}


def spec_path(run_dir: Path) -> Path:
    """Where the spec a run trains lives: beside its run directory (the trainer wants that empty)."""
    run_dir = Path(run_dir)
    return run_dir.parent / f"{run_dir.name}.spec.json"


def write_spec_file(spec: NetSpec, path: Path, preprocess: Preprocess | None = None) -> Path:
    """`spec` as a spec JSON file (what `effnet train --model FILE` reads), with `preprocess`
    beside it when given, written atomically."""
    from ..fileio import atomic_write_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(spec_dict(spec, preprocess), indent=1).encode())
    return path


def _has_checkpoint(run: RunDir) -> bool:
    """A checkpoint that loads (a killed worker may have left a run with none, or a damaged one)."""
    try:
        run.latest_checkpoint()
    except (UserError, OSError):
        return False
    return True


def train_spec(spec: NetSpec, size: int, proxy: Proxy, run_dir: Path, log: Path | None = None,
               preprocess: Preprocess | None = None) -> dict:
    """Train `spec` at `size` px with the proxy recipe into `run_dir`, normalised and interpolated
    as `preprocess` says (the search base's; default the architecture's); returns the trainer's
    summary.

    A run directory left by a killed worker is resumed from its last checkpoint (or started again
    when none was written), so a retried trial loses only the unfinished epoch; a finished one
    (summary.json written) is not trained again.
    """
    from ..train import RunOptions, train

    run_dir, run = Path(run_dir), RunDir(run_dir)
    summary = run.summary()
    if summary is not None:  # finished before its worker could report it
        return summary
    resume = None
    if run_dir.exists() and any(run_dir.iterdir()):
        if _has_checkpoint(run):
            resume = str(run_dir)
        else:
            shutil.rmtree(run_dir)
    spec_file = write_spec_file(spec, spec_path(run_dir), preprocess)
    recipe = proxy.recipe_for(str(spec_file), size)
    opts = RunOptions(data=proxy.data, output=None if resume else str(run_dir), resume=resume,
                      train_subset=proxy.train_subset, val_subset=proxy.val_subset,
                      device=proxy.device, workers=proxy.workers,
                      ckpt_every_steps=proxy.ckpt_every_steps, progress=False, tensorboard=False)
    out = io.StringIO() if log is None else None
    with contextlib.ExitStack() as stack:
        if log is not None:
            Path(log).parent.mkdir(parents=True, exist_ok=True)
        stream = out if log is None else stack.enter_context(open(log, "a"))
        stack.enter_context(contextlib.redirect_stdout(stream))
        return train(recipe, opts)
