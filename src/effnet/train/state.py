"""Where a run is: the train state a checkpoint's state.pt holds besides the weights, as plain data
(`torch.load(weights_only=True)` reads it), and the rules for resuming from it."""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..rundir import EMA_FILE, STATE_FILE, RunDir, link_name
from . import checkpoint as ckpt
from .distributed import World, all_sum, broadcast_object, gather_objects, raise_if_any
from .ema import ModelEma
from .plan import Progress
from .recipe import SAVED_BEFORE, Recipe
from .runtime import seed_all
from .sampling import sample_seed

# 2: the plans of a run whose length changed on resume (plan.py); a version-1 state had one plan,
# the length its recipe says
STATE_VERSION = 2
READABLE_VERSIONS = (1, 2)


def _no_best() -> dict:
    return {"top1": -1.0, "epoch": -1, "weights": ""}


@dataclass
class TrainState:
    """A run's progress and, in a saved state, the optimiser's, scaler's, EMA's and RNG's."""

    epoch: int = 0  # epochs finished
    batch_in_epoch: int = 0  # micro-batches of the epoch in progress done (0 at an epoch end)
    global_step: int = 0  # optimiser steps taken
    history: list[dict] = field(default_factory=list)  # one metrics row per finished epoch
    best: dict = field(default_factory=_no_best)
    train_time: float = 0.0  # seconds, checkpoints and evaluation excluded
    epoch_sums: tuple[float, int] = (0.0, 0)  # (loss sum, images) of the epoch in progress, all ranks
    step_plan: Progress | None = None  # over optimiser steps (the cosine LR's); None: the recipe's
    epoch_plan: Progress | None = None  # over epochs (the progressive stages')
    # the other parts' state, captured when the checkpoint is written
    optimizer: dict = field(default_factory=dict)
    scaler: dict = field(default_factory=dict)
    ema_updates: int = 0
    rng: list[dict] = field(default_factory=list)  # one per rank
    world_size: int = 1
    recipe: dict = field(default_factory=dict)

    def end_epoch(self, row: dict, top1: float, whose: str) -> bool:
        """Record a finished epoch's metrics; True when `top1` (of the model or its EMA, `whose`)
        is the best so far."""
        is_best = top1 > self.best["top1"]
        if is_best:
            self.best = {"top1": top1, "epoch": self.epoch + 1,
                         "weights": link_name("best", ema=whose == "ema")}
        self.history.append(row)
        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        return is_best

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ckpt.STATE_FORMAT, "version": STATE_VERSION,
            "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "global_step": self.global_step,
            "optimizer": self.optimizer, "scaler": self.scaler, "ema_updates": self.ema_updates,
            "rng": self.rng, "world_size": self.world_size,
            "recipe": self.recipe, "metrics": self.history, "best": self.best,
            "train_time_s": self.train_time, "epoch_sums": list(self.epoch_sums),
            "plan": {"steps": self.step_plan.to_list() if self.step_plan else [],
                     "epochs": self.epoch_plan.to_list() if self.epoch_plan else []},
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "the training state") -> TrainState:
        if d.get("format") != ckpt.STATE_FORMAT:
            raise UserError(f"{where} is not an effnet training state")
        if d.get("version") not in READABLE_VERSIONS:
            raise UserError(f"{where} has state version {d.get('version')!r}; this effnet reads "
                            f"{', '.join(map(str, READABLE_VERSIONS))} (a newer effnet wrote it?)")
        plan = d.get("plan") or {}
        return cls(epoch=int(d["epoch"]), batch_in_epoch=int(d["batch_in_epoch"]),
                   global_step=int(d["global_step"]), history=list(d["metrics"]),
                   best=dict(d["best"]), train_time=float(d.get("train_time_s", 0.0)),
                   epoch_sums=(float(d["epoch_sums"][0]), int(d["epoch_sums"][1])),
                   step_plan=Progress.from_list(plan["steps"]) if plan.get("steps") else None,
                   epoch_plan=Progress.from_list(plan["epochs"]) if plan.get("epochs") else None,
                   optimizer=d["optimizer"], scaler=d.get("scaler") or {},
                   ema_updates=int(d["ema_updates"]), rng=list(d["rng"]),
                   world_size=int(d["world_size"]), recipe=dict(d["recipe"]))


class EpochSums:
    """Loss and image sums of the epoch in progress on this rank, from `start` (the saved sums of
    a resumed epoch, on rank 0; the other ranks add theirs from zero)."""

    def __init__(self, start: tuple[float, int], device: torch.device):
        self.loss = torch.tensor(start[0], dtype=torch.float64, device=device)
        self.images = int(start[1])

    def add(self, loss: torch.Tensor, images: int) -> None:
        self.loss += loss.double() * images
        self.images += images

    def total(self, world: World) -> tuple[float, int]:
        """Over all ranks (collective)."""
        sums = all_sum(torch.tensor([float(self.loss), float(self.images)], dtype=torch.float64,
                                    device=world.device), world)
        return float(sums[0]), int(sums[1])


def _load_checkpoint(path: Path, run: RunDir, recipe: Recipe) -> tuple[Path, TrainState]:
    """(checkpoint directory, its state) when `recipe` may continue it (RunDir.check_recipe); a
    recipe saved before a key existed has that key's old meaning (SAVED_BEFORE)."""
    state = TrainState.from_dict(ckpt.load_state(path), str(path / STATE_FILE))
    run.check_recipe({**SAVED_BEFORE, **state.recipe}, recipe.to_dict())
    return path, state


def resume_point(run: RunDir | None, recipe: Recipe,
                 world: World) -> tuple[Path, TrainState] | None:
    """Collective: the checkpoint every rank continues from, or None for a fresh run.

    Every rank loads the checkpoint rank 0 finds: ranks reading `LATEST` each could see different
    ones (a network file system that caches, a save in flight). UserError on every rank when the
    ranks disagree on whether to resume or any rank cannot, so none waits for a rank that left."""
    choices = gather_objects(None if run is None else str(run), world)
    if len(set(choices)) > 1:
        raise UserError(f"the ranks disagree on which run to resume: {choices}")
    if run is None:
        return None
    path, error = None, None
    if world.main:
        try:
            path = str(run.latest_checkpoint())
        except UserError as e:
            error = str(e)
    path, error = broadcast_object((path, error), world)
    if error:
        raise UserError(error)
    found = None
    try:
        found = _load_checkpoint(Path(path), run, recipe)
    except UserError as e:
        error = str(e)
    raise_if_any(error, world)
    return found


def start_state(resumed: TrainState | None, steps_per_epoch: int, total_steps: int, epochs: int,
                world: World, cosine: bool) -> TrainState:
    """The state a run starts from: fresh, or the checkpoint's with the plans of the run's length."""
    if resumed is None:
        return TrainState(step_plan=Progress.of(total_steps), epoch_plan=Progress.of(epochs))
    steps, by_epoch = resumed_plans(resumed, steps_per_epoch, total_steps, epochs, world, cosine)
    # the other ranks add theirs from zero: the epoch-end sum is the same
    sums = resumed.epoch_sums if world.main else (0.0, 0)
    return dataclasses.replace(resumed, step_plan=steps, epoch_plan=by_epoch, epoch_sums=sums)


def snapshot(state: TrainState, world: World, recipe: Recipe, optimizer: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler, ema: ModelEma | None, epoch_sums: tuple[float, int],
             partial_time: float) -> TrainState:
    """The state to save, with the other parts' (collective: gathers every rank's RNG streams)."""
    return dataclasses.replace(
        state, train_time=state.train_time + partial_time, epoch_sums=epoch_sums,
        optimizer=optimizer.state_dict(), scaler=scaler.state_dict() if scaler.is_enabled() else {},
        ema_updates=int(ema.n_averaged) if ema is not None else 0,
        rng=gather_objects(ckpt.rng_state(), world), world_size=world.size, recipe=recipe.to_dict())


def resumed_plans(state: TrainState, steps_per_epoch: int, total_steps: int, epochs: int,
                  world: World, cosine: bool) -> tuple[Progress, Progress]:
    """(step plan, epoch plan) of a run resumed from `state` with `total_steps` / `epochs`: what
    ran keeps its place on the old plans, the rest follows the new length (plan.py)."""
    if state.step_plan is not None:
        steps, by_epoch = state.step_plan, state.epoch_plan
    else:  # version 1: the one plan of the recipe it was saved with
        saved = state.recipe.get("steps") or state.recipe["epochs"] * steps_per_epoch
        steps, by_epoch = Progress.of(saved), Progress.of(math.ceil(saved / steps_per_epoch))
    if cosine and world.main and total_steps > steps.end and steps(state.global_step) >= 1.0:
        print(f"effnet: note: the run's cosine schedule had ended at step {steps.end}; the steps "
              f"added train at its final LR", file=sys.stderr)
    # an epoch interrupted part-way keeps the stage it started in
    first_new_epoch = state.epoch + (1 if state.batch_in_epoch else 0)
    return (steps.replanned(state.global_step, total_steps),
            by_epoch.replanned(first_new_epoch, epochs))


def restore_parts(state: TrainState, ckpt_dir: Path, optimizer: torch.optim.Optimizer,
                  scaler: torch.amp.GradScaler, ema: ModelEma | None) -> None:
    """Put the optimiser, GradScaler and EMA where the checkpoint had them."""
    if ema is not None:
        ema_file = ckpt_dir / EMA_FILE
        if not ema_file.is_file():
            raise UserError(f"cannot resume: {ema_file} is missing")
        ckpt.load_weights_into(ema.module, ema_file)
        ema.set_num_updates(state.ema_updates)
    optimizer.load_state_dict(state.optimizer)
    if state.scaler:
        scaler.load_state_dict(state.scaler)


def resume_rng(state: TrainState, world: World, deterministic: bool, seed: int) -> dict | None:
    """This rank's saved random streams, to set right before the first batch; None when the run
    had another number of processes (the streams are reseeded then, with a warning)."""
    if world.device.type != "cpu" and not deterministic and world.main:
        # on CPU the default run replays bit for bit (tests/test_train_faults.py); on a GPU
        # cuDNN picks kernels by timing and some kernels add in a varying order
        print(f"effnet: note: resuming on {world.device.type} without --deterministic: the rest "
              f"of the run matches an uninterrupted one to float round-off, not bit for bit "
              f"(autotuned cuDNN kernels, atomic-add reductions)", file=sys.stderr)
    if state.world_size == world.size:
        return state.rng[world.rank]
    print(f"effnet: warning: resuming a {state.world_size}-process run on {world.size}; data "
          f"order and augmentation continue, random streams are reseeded", file=sys.stderr)
    seed_all(sample_seed(seed, state.global_step, world.rank))
    return None
