"""The training loop, composed of parts with one job each: the run's data epoch by epoch
(epoch_data.py), one optimiser step with AMP, accumulation, DDP, clipping and EMA (step.py), the
train state a checkpoint holds and the rules for resuming it (state.py, plan.py, checkpoint.py),
and what the run prints and leaves on disk (report.py, metrics.py) in its run directory (a
`RunDir`, which owns the directory's files).

Progressive learning (V2) changes the image size, RandAugment magnitude, mixup/cutmix and dropout
between stages; the loop keeps those behind two seams so a stage change is two calls:
`set_data_stage(size, randaug_magnitude, mixup, cutmix)` rebuilds the train transform and batch
mixer, `set_regularization(dropout, drop_path)` sets the model's rates. Callables passed as
`on_epoch_start` run before every epoch (a resumed one too) with the trainer, whose `global_step`
and `total_steps` say how far training is, so a stage schedule can be plugged in from outside.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence

import torch

from ..data.config import resolve_data_config
from ..errors import UserError
from ..rundir import RunDir
from ..signals import StopOnSignal
from . import checkpoint as ckpt
from . import report
from .distributed import (
    World,
    any_true,
    barrier,
    broadcast_buffers,
    broadcast_object,
    close_world,
    gather_objects,
    init_world,
)
from .ema import ModelEma
from .epoch_data import EpochData, eval_data, load_splits, steps_per_epoch
from .evaluate import evaluate_run
from .metrics import MetricsLog
from .network import run_network, training_module
from .optim import build_optimizer, build_schedule
from .options import RunOptions
from .plan import Progress
from .recipe import Recipe
from .runtime import RunRuntime, seed_all
from .sampling import sample_seed
from .state import EpochSums, TrainState, restore_parts, resume_point, resume_rng, snapshot, start_state
from .step import OptimStep, TrainingDiverged

__all__ = ["RunOptions", "Trainer", "TrainingDiverged", "train"]


class Trainer:
    def __init__(self, recipe: Recipe, opts: RunOptions,
                 on_epoch_start: Sequence[Callable[[Trainer], None]] = ()):
        self.recipe, self.opts = recipe, opts
        self.on_epoch_start = list(on_epoch_start)
        if recipe.progressive:  # V2 progressive learning: a stage schedule run before each epoch
            from .progressive import plan_from_text
            from .stages import progressive_hook

            try:
                plan = plan_from_text(recipe.progressive)
            except ValueError as e:
                raise UserError(f"--progressive: {e}") from None
            self.on_epoch_start.insert(0, progressive_hook(plan))

    # where the run is, for hooks and the report
    epoch = property(lambda self: self.state.epoch)
    global_step = property(lambda self: self.state.global_step)
    # the train pipeline of the current stage
    train_data = property(lambda self: self.data.dataset)
    train_seeded = property(lambda self: self.data.seeded)
    mixer = property(lambda self: self.data.mixer)
    ema_model = property(lambda self: self.ema.module if self.ema is not None else None)
    run_dir = property(lambda self: self.rundir.path)  # where the run's files are (a Path)

    def _setup(self) -> None:
        r, o = self.recipe, self.opts
        self.world = w = init_world(o.device)
        self.resume_state: TrainState | None = None
        # everything is checked before anything is written
        run = RunDir(o.resume) if o.resume else None
        resumed = resume_point(run, r, w)
        if resumed is not None:
            self.rundir = run
            self.resume_ckpt, self.resume_state = resumed
        self._context.enter_context(RunRuntime(w.device, o.threads, o.deterministic))
        if o.amp == "bf16" and w.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError("--amp bf16: this GPU does not support bfloat16; use --amp fp16")

        train_set, val_set, self.classes, self.num_classes = load_splits(o, r)
        self.global_batch = r.batch_size * w.size * r.grad_accum
        self.steps_per_epoch = steps_per_epoch(len(train_set), r, w)
        self.total_steps = r.steps or r.epochs * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        resuming = (self.rundir, self.resume_ckpt) if o.resume else None
        self.model = model = run_network(r, o, self.num_classes, w, resuming)
        # the model's config holds the recipe's sizes over its weights' preprocessing (the
        # factory resolved them), so spec.json rebuilds this preprocessing for eval and predict
        self.spec, self.data_config = model.spec, resolve_data_config(model)
        pre = self.data_config
        workers = o.workers if o.workers is not None else (0 if w.device.type == "cpu" else 8)
        self.data = EpochData(train_set, pre, r, self.num_classes, w, workers, o.channels_last)
        self.val_raw = val_set
        self.val_data, self.val_loader = eval_data(val_set, pre, max(r.batch_size, 64), workers, w)
        if not o.resume:
            name = broadcast_object(o.output or RunDir.default_path(self.spec.name), w)  # rank 0's clock
            self.rundir = RunDir.new(name)

        ddp, self.train_model = training_module(model, w, o.compile)
        self.ema_decay = r.ema_step_decay(self.global_batch)  # per step at this global batch
        self.ema = ModelEma(model, self.ema_decay, r.ema_warmup) if self.ema_decay > 0 else None
        self.peak_lr = r.peak_lr(self.global_batch)
        self.info = report.RunInfo(
            self.rundir, r, self.spec.name, sum(p.numel() for p in model.parameters()), self.classes,
            (len(self.data.dataset), len(self.val_data)), w.device, w.size, self.global_batch,
            self.peak_lr, self.steps_per_epoch, self.total_steps, (pre.train_size, pre.eval_size))
        self.optimizer = build_optimizer(model, r, self.peak_lr)
        self.state = start_state(self.resume_state, self.steps_per_epoch, self.total_steps,
                                 self.epochs, w, cosine=r.sched == "cosine")
        self.schedule = build_schedule(r, self.peak_lr, self.steps_per_epoch, self.total_steps,
                                       self.state.step_plan)
        self.step = OptimStep(model, self.optimizer, self.schedule, w, train_model=self.train_model,
                              ddp=ddp, ema=self.ema, accum=r.grad_accum, clip_grad=r.clip_grad,
                              label_smoothing=r.label_smoothing, amp=o.amp)
        self._partial_time, self._resume_rng = 0.0, None  # (time of the epoch in progress: saves)
        if self.resume_state is not None:
            restore_parts(self.state, self.resume_ckpt, self.optimizer, self.step.scaler, self.ema)
            self._resume_rng = resume_rng(self.state, w, o.deterministic, r.seed)
        else:
            seed_all(sample_seed(r.seed, 1 << 30, w.rank))  # per-rank dropout/mixup streams

    # --- the seams of progressive learning ---------------------------------------------------
    def set_data_stage(self, size: int, randaug_magnitude: float | None, mixup: float,
                       cutmix: float) -> None:
        """(Re)build the train transform and batch mixer: the one place a progressive-learning
        stage changes the data pipeline."""
        self.data.set_stage(size, randaug_magnitude, mixup, cutmix)

    @property
    def epoch_progress(self) -> Progress:
        """The fraction of the run's epochs done after epoch e is `epoch_progress(e + 1)`; it never
        goes back when a resumed run changes its length (plan.py)."""
        return self.state.epoch_plan

    def model_dropout(self) -> float:
        """The dropout rate the model's classifier dropout holds right now."""
        return float(self.model.head_drop.p)

    def set_regularization(self, dropout: float | None = None, drop_path: float | None = None) -> None:
        for m in (self.model, self.ema_model):
            if m is not None and dropout is not None:
                m.set_dropout(dropout)
            if m is not None and drop_path is not None:
                m.set_drop_path(drop_path)

    # --- the loop ------------------------------------------------------------------------------
    def _checkpoint(self, best: bool = False) -> None:
        """Collective: every rank takes part."""
        s, w = self.state, self.world
        state = snapshot(s, w, self.recipe, self.optimizer, self.step.scaler, self.ema,
                         self._sums.total(w) if s.batch_in_epoch else (0.0, 0), self._partial_time)
        if w.main:
            ckpt.save_checkpoint(self.rundir, self.model, self.ema_model, state.to_dict(), best=best)
        barrier(w)

    def _train_epoch(self) -> dict:
        r, o, w, s, step = self.recipe, self.opts, self.world, self.state, self.step
        n_micro, skip = self.steps_per_epoch * r.grad_accum, s.batch_in_epoch
        self.train_model.train()
        self._sums, s.epoch_sums = EpochSums(s.epoch_sums, w.device), (0.0, 0)
        bar = report.EpochProgress(w.main and o.progress, s.epoch, self.epochs, skip, n_micro,
                                   r.batch_size * w.size)
        start, lr = time.perf_counter(), self.schedule(s.global_step)
        batches = self.data.batches(s.epoch, skip, n_micro)
        if self._resume_rng is not None:  # exactly where the interrupted run was
            ckpt.set_rng_state(self._resume_rng)
            self._resume_rng = None
        for i, (x, y) in enumerate(batches, start=skip):
            loss = step.accumulate(x, y)
            self._sums.add(loss, x.shape[0])
            s.batch_in_epoch = i + 1
            bar.batch_done()
            if not step.boundary:
                continue
            lr = step.update(s.global_step)
            s.global_step += 1
            last = i + 1 == n_micro or s.global_step >= self.total_steps
            if last or s.global_step % 10 == 0:  # an epoch-end checkpoint follows: never save NaNs
                step.check_finite(self.rundir, s.epoch, s.global_step, params=last)
            bar.step_done(i + 1, s.global_step, last, loss, lr, time.perf_counter() - start)
            if o.ckpt_every_steps and s.global_step % o.ckpt_every_steps == 0 and not last:
                step.check_finite(self.rundir, s.epoch, s.global_step, params=True)
                t0 = time.perf_counter()
                self._partial_time = t0 - start
                self._checkpoint()
                start += time.perf_counter() - t0  # checkpoint time is not training time
            # SIGTERM / SIGINT on any rank: every rank saves, then exits (effnet/signals.py)
            if not last and any_true(self.stop.requested(), w):
                self._partial_time = time.perf_counter() - start
                self._checkpoint()
                raise self.stop.stopped(f"after step {s.global_step} of {self.total_steps}; "
                                        f"checkpoint saved; continue with: effnet train --resume "
                                        f"{self.rundir}")
            if s.global_step >= self.total_steps:
                break
        bar.close()
        elapsed = time.perf_counter() - start
        s.train_time += elapsed
        self._partial_time = 0.0
        loss_sum, images = self._sums.total(w)
        return {"train_loss": loss_sum / max(1.0, images), "images": images, "epoch_time_s": elapsed,
                "img_per_s": images / max(1e-9, elapsed), "lr": lr}

    def run(self) -> dict:
        try:
            with contextlib.ExitStack() as self._context:  # torch settings restored on the way out
                # inside a search: the search's handler, whose flag may already be set
                self.stop = self._context.enter_context(StopOnSignal())
                self._setup()
                return self._run()
        finally:
            close_world(getattr(self, "world", World()))

    def _run(self) -> dict:
        o, w, s = self.opts, self.world, self.state
        if w.main and self.resume_state is None:
            report.write_run_files(self.info, o.to_dict(), self.model.config.to_dict())
        barrier(w)
        self.metrics = MetricsLog(self.rundir, s.history, o.tensorboard) if w.main else None
        if w.main:
            if self.resume_state is None:
                self.metrics.write()
            report.print_header(self.info, resuming=self.resume_state is not None)
        while s.epoch < self.epochs and s.global_step < self.total_steps:
            for hook in self.on_epoch_start:
                hook(self)
            stats = self._train_epoch()
            broadcast_buffers((self.model, self.ema_model), w)
            row = {"epoch": s.epoch + 1, "global_step": s.global_step,
                   "global_batch": self.global_batch, **stats}
            val, top, whose = evaluate_run(self.model, self.ema_model, self.val_loader, w, o.amp,
                                           o.channels_last)
            row.update(val)
            is_best = s.end_epoch(row, top, whose)
            if w.main:
                self.metrics.add(row)
                report.print_epoch(row, self.epochs)
            self._checkpoint(best=is_best)
        return self._finish()

    def _finish(self) -> dict:
        s = self.state
        summary = report.summary(self.info, s, gather_objects(ckpt.state_hash(self.model), self.world))
        if self.world.main:
            samples = [self.val_raw[i] for i in range(min(self.opts.save_samples, len(self.val_raw)))]
            report.finish(self.info, s, summary, self.schedule.curve(), samples, self.ema is not None)
            self.metrics.close()
        barrier(self.world)
        return summary

def train(recipe: Recipe, opts: RunOptions | None = None,
          on_epoch_start: Sequence[Callable[[Trainer], None]] = ()) -> dict:
    """Train `recipe` and return the run's summary (also saved as RUN/summary.json)."""
    return Trainer(recipe, opts or RunOptions(), on_epoch_start).run()
