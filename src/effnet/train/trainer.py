"""The training loop: AMP, channels_last, torch.compile, gradient accumulation, DDP, EMA,
checkpoint/resume that replays a run bit for bit, metrics, plots.

Progressive learning (V2) changes the image size, RandAugment magnitude, mixup/cutmix and dropout
between stages; the loop keeps those behind two seams so a stage change is two calls:
`set_data_stage(size, randaug_magnitude, mixup, cutmix)` rebuilds the train transform and batch
mixer, `set_regularization(dropout, drop_path)` sets the model's rates. Callables passed as
`on_epoch_start` run before every epoch (a resumed one too) with the trainer, whose `global_step`
and `total_steps` say how far training is, so a stage schedule can be plugged in from outside.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..errors import UserError
from ..inference import RUN_SPEC_FILE
from ..models import load_config_file
from ..nn.model import EfficientNet
from . import checkpoint as ckpt
from . import report
from .distributed import (
    World,
    all_sum,
    any_true,
    barrier,
    broadcast_object,
    close_world,
    gather_objects,
    init_world,
)
from .ema import ModelEma
from .evaluate import autocast, eval_loader, evaluate
from .metrics import MetricsLog
from .network import build_model
from .optim import LRSchedule, build_optimizer, build_schedule, set_lr
from .options import RESUMABLE_RECIPE_KEYS, RunOptions
from .recipe import Recipe
from .runtime import RunRuntime, seed_all
from .sampling import EpochSampler, SeededSamples, loader_generator, sample_seed
from .signals import StopOnSignal

STATE_VERSION = 1


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last checkpoint is the last good state."""


def _subset(dataset, n: int | None, seed: int):
    if n is None or n >= len(dataset):
        return dataset
    from ..data import Split

    order = np.random.default_rng(seed).permutation(len(dataset))[:n]
    return Split(dataset, sorted(order.tolist()))


def _state_hash(module: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                 if v.numel() else b"")
    return h.hexdigest()


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

    # --- setup ----------------------------------------------------------------------------
    def _setup(self) -> None:
        r, o = self.recipe, self.opts
        self.world = w = init_world(o.device)
        self.resume_state = None
        if o.resume:  # everything is checked before anything is written
            self.run_dir = Path(o.resume)
            self.resume_ckpt = ckpt.latest_checkpoint(self.run_dir)
            self.resume_state = ckpt.load_state(self.resume_ckpt)
            saved = self.resume_state["recipe"]
            changed = sorted(k for k, v in r.to_dict().items()
                             if k not in RESUMABLE_RECIPE_KEYS and saved.get(k) != v)
            if changed:
                raise UserError(f"cannot resume {self.run_dir} with a different recipe "
                                f"(changed: {', '.join(changed)})")
        self._context.enter_context(RunRuntime(w.device, o.threads, o.deterministic))
        if o.amp == "bf16" and w.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError("--amp bf16: this GPU does not support bfloat16; use --amp fp16")

        from ..data import Transformed, batch_mixer, eval_transform, load_data

        splits = load_data(o.data, val_split=o.val_split, download=o.download, strict=o.strict,
                           seed=r.seed)
        self.classes = list(splits.classes)
        train_set = _subset(splits.train, o.train_subset, r.seed)
        val_set = _subset(splits.val, o.val_subset, r.seed + 1)
        if len(train_set) == 0 or len(val_set) == 0:
            raise UserError(f"{splits.name}: the {'train' if not len(train_set) else 'val'} split "
                            f"is empty")
        n_classes = o.num_classes or len(self.classes)
        if n_classes < len(self.classes):
            raise UserError(f"--num-classes {n_classes} is fewer than the {len(self.classes)} "
                            f"classes in {splits.name}")
        self.num_classes = n_classes
        micro = len(train_set) // (r.batch_size * w.size)
        self.steps_per_epoch = micro // r.grad_accum
        if self.steps_per_epoch < 1:
            raise UserError(f"the training set has {len(train_set)} images, fewer than one global "
                            f"batch of {r.batch_size * w.size * r.grad_accum} (batch size x "
                            f"processes x grad-accum); lower --batch-size")
        self.total_steps = r.steps or r.epochs * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.global_batch = r.batch_size * w.size * r.grad_accum

        seed_all(r.seed)  # the same initial weights on every rank (DDP also broadcasts them)
        if o.resume:  # the network that was trained, BN settings of its weights included
            model = EfficientNet.from_config(load_config_file(str(self.run_dir / RUN_SPEC_FILE)))
        else:
            model = build_model(r, n_classes, weights=o.weights, adapt=o.adapt,
                                pretrained=o.pretrained)
        self.spec = model.spec
        self.batch_mixer_fn = batch_mixer
        self.workers = o.workers if o.workers is not None else (0 if w.device.type == "cpu" else 8)

        # data: the train transform and mixer live behind set_data_stage (progressive learning)
        self.train_data = Transformed(train_set, None)
        self.train_seeded = SeededSamples(self.train_data, r.seed)
        self.set_data_stage(self.spec.preprocess.train_size, r.randaug_magnitude, r.mixup, r.cutmix)
        self.val_data = Transformed(val_set, eval_transform(self.spec.preprocess,
                                                            self.spec.preprocess.eval_size))
        self.val_raw = val_set
        self.sampler = EpochSampler(self.train_seeded, w.rank, w.size, r.seed)
        self.val_loader = eval_loader(self.val_data, max(r.batch_size, 64), self.workers, w)

        # run directory: chosen on rank 0 (timestamp), refused when it already holds anything
        if not o.resume:
            name = o.output or str(Path("runs") / (dt.datetime.now().strftime("%Y%m%d-%H%M%S")
                                                   + f"-{self.spec.name}"))
            self.run_dir = Path(broadcast_object(name, w))
            if self.run_dir.exists() and (not self.run_dir.is_dir() or any(self.run_dir.iterdir())):
                raise UserError(f"output directory {self.run_dir} already exists and is not empty; "
                                f"use --resume {self.run_dir} to continue it, or another --output")

        # model, EMA, optimiser
        model.to(w.device)
        if o.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.resume_state is not None:
            ckpt.load_weights_into(model, self.resume_ckpt / ckpt.MODEL_FILE)
        self.model = model
        if w.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.ddp = DDP(model, device_ids=[w.device.index] if w.device.type == "cuda" else None)
        else:
            self.ddp = None
        self.train_model = self.ddp or model
        if o.compile:
            self.train_model = torch.compile(self.train_model)
        self.ema = ModelEma(model, r.ema_decay, r.ema_warmup) if r.ema_decay > 0 else None
        self.peak_lr = r.peak_lr(self.global_batch)
        self.optimizer = build_optimizer(model, r, self.peak_lr)
        self.schedule: LRSchedule = build_schedule(r, self.peak_lr, self.steps_per_epoch,
                                                   self.total_steps)
        self.scaler = torch.amp.GradScaler(w.device.type, enabled=o.amp == "fp16")

        self.epoch, self.batch_in_epoch, self.global_step = 0, 0, 0
        self.history: list[dict] = []
        self.best = {"top1": -1.0, "epoch": -1, "weights": ""}
        self.train_time = 0.0
        self._partial_time = 0.0  # training time of the epoch in progress, for mid-epoch saves
        self._carry = (0.0, 0)  # (loss sum, images) of a resumed epoch's finished part
        if self.resume_state is not None:
            self._restore(self.resume_state)
        else:
            seed_all(sample_seed(r.seed, 1 << 30, w.rank))  # per-rank dropout/mixup streams

    def set_data_stage(self, size: int, randaug_magnitude: float | None, mixup: float,
                       cutmix: float) -> None:
        """(Re)build the train transform and batch mixer: the one place a progressive-learning
        stage changes the data pipeline."""
        from ..data import train_transform

        r = self.recipe
        self.train_data.transform = train_transform(
            self.spec.preprocess, size, randaug_magnitude=randaug_magnitude,
            randaug_ops=r.randaug_ops, hflip=r.hflip, scale=r.scale, cutout=r.cutout)
        self.mixer = self.batch_mixer_fn(self.num_classes, mixup, cutmix, r.label_smoothing)

    def model_dropout(self) -> float:
        """The dropout rate the model's classifier dropout holds right now."""
        return float(self.model.head_drop.p)

    def set_regularization(self, dropout: float | None = None, drop_path: float | None = None) -> None:
        for m in (self.model, self.ema.module if self.ema is not None else None):
            if m is None:
                continue
            if dropout is not None:
                m.set_dropout(dropout)
            if drop_path is not None:
                m.set_drop_path(drop_path)

    # --- state ----------------------------------------------------------------------------
    def _restore(self, st: dict) -> None:
        w = self.world
        if self.ema is not None:
            ema_file = self.resume_ckpt / ckpt.EMA_FILE
            if not ema_file.is_file():
                raise UserError(f"cannot resume: {ema_file} is missing")
            ckpt.load_weights_into(self.ema.module, ema_file)
            self.ema.set_num_updates(int(st["ema_updates"]))
        self.optimizer.load_state_dict(st["optimizer"])
        if st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        self.epoch, self.batch_in_epoch = int(st["epoch"]), int(st["batch_in_epoch"])
        self.global_step = int(st["global_step"])
        self.history = list(st["metrics"])
        self.best = dict(st["best"])
        self.train_time = float(st.get("train_time_s", 0.0))
        if w.main:  # the other ranks add theirs from zero: the epoch-end sum is the same
            self._carry = (float(st["epoch_sums"][0]), int(st["epoch_sums"][1]))
        if w.device.type != "cpu" and not self.opts.deterministic and w.main:
            # on CPU the default run replays bit for bit (tests/test_train_faults.py); on a GPU
            # cuDNN picks kernels by timing and some kernels add in a varying order
            print(f"effnet: note: resuming on {w.device.type} without --deterministic: the rest of "
                  f"the run matches an uninterrupted one to float round-off, not bit for bit "
                  f"(autotuned cuDNN kernels, atomic-add reductions)", file=sys.stderr)
        rngs = st["rng"]
        if int(st["world_size"]) == w.size:
            self._resume_rng = rngs[w.rank]
        else:
            print(f"effnet: warning: resuming a {st['world_size']}-process run on {w.size}; data "
                  f"order and augmentation continue, random streams are reseeded", file=sys.stderr)
            self._resume_rng = None
            seed_all(sample_seed(self.recipe.seed, self.global_step, w.rank))

    def _state(self) -> dict:
        rngs = gather_objects(ckpt.rng_state(), self.world)
        if self.batch_in_epoch:  # mid-epoch: the epoch's sums so far, over all ranks
            sums = all_sum(torch.tensor([float(self._loss_sum), float(self._images)],
                                        dtype=torch.float64, device=self.world.device), self.world)
            carry = [float(sums[0]), int(sums[1])]
        else:
            carry = [0.0, 0]
        return {
            "format": ckpt.STATE_FORMAT, "version": STATE_VERSION,
            "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "global_step": self.global_step,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "ema_updates": int(self.ema.n_averaged) if self.ema is not None else 0,
            "rng": rngs, "world_size": self.world.size,
            "recipe": self.recipe.to_dict(), "metrics": self.history, "best": self.best,
            "train_time_s": self.train_time + self._partial_time, "epoch_sums": carry,
        }

    def _checkpoint(self, best: bool = False) -> None:
        state = self._state()  # collective: every rank takes part
        if self.world.main:
            ckpt.save_checkpoint(self.run_dir, self.model,
                                 self.ema.module if self.ema is not None else None, state, best=best)
        barrier(self.world)

    # --- the loop -------------------------------------------------------------------------
    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.dtype.is_floating_point:  # soft targets from mixup/cutmix, smoothing included
            return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()
        return F.cross_entropy(logits, targets, label_smoothing=self.recipe.label_smoothing)

    def _check_finite(self, bad: torch.Tensor) -> None:
        if any_true(bool(bad.item()), self.world):
            pointer = self.run_dir / ckpt.CKPT_DIR / ckpt.POINTER
            where = (f"the last good checkpoint is kept in {self.run_dir}" if pointer.exists()
                     else "no checkpoint was written yet")
            raise TrainingDiverged(
                f"the loss became NaN/inf at epoch {self.epoch + 1}, step {self.global_step} "
                f"(lr {self.schedule(max(0, self.global_step - 1)):.3g}); training stopped and "
                f"{where}; lower --lr or try --amp bf16 / --clip-grad")

    @torch.no_grad()
    def _params_finite(self) -> torch.Tensor:
        """Weights and BN statistics all finite (a saved state must evaluate to numbers)."""
        tensors = [p.detach() for p in self.model.parameters()]
        tensors += [b for b in self.model.buffers() if b.is_floating_point()]
        norms = torch._foreach_norm(tensors)
        return torch.isfinite(torch.stack(norms)).all()

    def _train_epoch(self, tqdm) -> dict:
        r, o, w = self.recipe, self.opts, self.world
        dev = w.device
        n_micro = self.steps_per_epoch * r.grad_accum
        skip = self.batch_in_epoch
        self.sampler.set_epoch(self.epoch)
        self.sampler.start = skip * r.batch_size
        self.train_seeded.set_epoch(self.epoch)
        loader = DataLoader(self.train_seeded, batch_size=r.batch_size, sampler=self.sampler,
                            num_workers=self.workers, drop_last=True,
                            generator=loader_generator(r.seed, self.epoch),
                            pin_memory=dev.type == "cuda")
        self.train_model.train()
        # loss and image sums of the epoch so far (a resumed epoch starts from the saved ones)
        self._loss_sum = torch.tensor(self._carry[0], dtype=torch.float64, device=dev)
        self._images = int(self._carry[1])
        self._carry = (0.0, 0)
        bad = torch.zeros((), dtype=torch.bool, device=dev)
        # a bar on a terminal; in a redirected log a plain line every ~10 % of the epoch instead
        # of bar redraws
        show = w.main and o.progress
        bar = tqdm(total=n_micro, initial=skip, disable=not (show and sys.stdout.isatty()),
                   leave=False, desc=f"epoch {self.epoch + 1}/{self.epochs}", unit="batch",
                   dynamic_ncols=True)
        log_every = max(1, n_micro // 10) if show and bar.disable else 0
        start = time.perf_counter()
        lr = self.schedule(self.global_step)
        if getattr(self, "_resume_rng", None) is not None:  # exactly where the interrupted run was
            ckpt.set_rng_state(self._resume_rng)
            self._resume_rng = None
        it = iter(loader)
        for i in range(skip, n_micro):
            x, y = next(it)
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if self.mixer is not None:
                x, y = self.mixer(x, y)
            if o.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            boundary = (i + 1) % r.grad_accum == 0
            sync = self.ddp.no_sync() if (self.ddp is not None and not boundary) else nullcontext()
            with sync:
                with autocast(dev, o.amp):
                    logits = self.train_model(x)
                loss = self._loss(logits.float(), y)
                self.scaler.scale(loss / r.grad_accum).backward()
            self._loss_sum += loss.detach().double() * x.shape[0]
            bad |= ~torch.isfinite(loss.detach())
            self._images += x.shape[0]
            self.batch_in_epoch = i + 1
            bar.update(1)
            if not boundary:
                continue
            lr = self.schedule(self.global_step)
            set_lr(self.optimizer, lr)
            if r.clip_grad > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), r.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            self.global_step += 1
            last = i + 1 == n_micro or self.global_step >= self.total_steps
            if last:  # an epoch-end checkpoint follows: never save a diverged state
                self._check_finite(bad | ~self._params_finite())
            if self.global_step % 10 == 0 or last:
                self._check_finite(bad)
            if show and (self.global_step % 10 == 0 or last or (log_every and (i + 1) % log_every == 0)):
                seen = (i + 1 - skip) * r.batch_size * w.size
                speed = seen / max(1e-9, time.perf_counter() - start)
                if not log_every:
                    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}", img_s=f"{speed:.0f}")
                elif (i + 1) % log_every == 0 and not last:
                    report.print_progress(self.epoch + 1, self.epochs, i + 1, n_micro, loss.item(), lr,
                                          speed)
            if o.ckpt_every_steps and self.global_step % o.ckpt_every_steps == 0 and not last:
                self._check_finite(bad | ~self._params_finite())
                t0 = time.perf_counter()
                self._partial_time = t0 - start
                self._checkpoint()
                start += time.perf_counter() - t0  # checkpoint time is not training time
            if not last and self.stop.requested(w):  # SIGTERM / SIGINT: save, then exit (signals.py)
                self._partial_time = time.perf_counter() - start
                self._checkpoint()
                raise self.stop.stopped(self.run_dir, self.global_step, self.total_steps)
            if self.global_step >= self.total_steps:
                break
        bar.close()
        elapsed = time.perf_counter() - start
        self.train_time += elapsed
        self._partial_time = 0.0
        totals = all_sum(torch.tensor([float(self._loss_sum), float(self._images)],
                                      dtype=torch.float64, device=dev), w)
        return {"train_loss": float(totals[0]) / max(1.0, float(totals[1])),
                "images": int(totals[1]), "epoch_time_s": elapsed,
                "img_per_s": float(totals[1]) / max(1e-9, elapsed), "lr": lr}

    def _sync_buffers(self) -> None:
        """Every rank takes rank 0's BN statistics (DDP itself broadcasts them before each forward,
        so they are the ones the next step would use), model and EMA alike."""
        if not self.world.enabled:
            return
        import torch.distributed as dist

        for m in (self.model, self.ema.module if self.ema is not None else None):
            if m is not None:
                for b in m.buffers():
                    dist.broadcast(b, src=0)

    def run(self) -> dict:
        try:
            with contextlib.ExitStack() as self._context:  # torch settings restored on the way out
                self.stop = self._context.enter_context(StopOnSignal())
                self._setup()
                return self._run()
        finally:
            close_world(getattr(self, "world", World()))

    def _run(self) -> dict:
        from tqdm import tqdm

        o, w = self.opts, self.world
        if w.main and self.resume_state is None:
            report.write_run_files(self)
        barrier(w)
        self.metrics = MetricsLog(self.run_dir, self.history, o.tensorboard) if w.main else None
        if w.main:
            if self.resume_state is None:
                self.metrics.write()
            report.print_header(self)
        while self.epoch < self.epochs and self.global_step < self.total_steps:
            for hook in self.on_epoch_start:
                hook(self)
            stats = self._train_epoch(tqdm)
            self._sync_buffers()
            row = {"epoch": self.epoch + 1, "global_step": self.global_step,
                   "global_batch": self.global_batch, **stats}
            val = evaluate(self.model, self.val_loader, w, o.amp, o.channels_last)
            row.update(val_loss=val["loss"], top1=val["top1"], top5=val["top5"])
            top, which = val["top1"], "model"
            if self.ema is not None:
                ev = evaluate(self.ema.module, self.val_loader, w, o.amp, o.channels_last)
                row.update(ema_val_loss=ev["loss"], ema_top1=ev["top1"], ema_top5=ev["top5"])
                if ev["top1"] > top:
                    top, which = ev["top1"], "ema"
            is_best = top > self.best["top1"]
            if is_best:
                self.best = {"top1": top, "epoch": self.epoch + 1,
                             "weights": "best_ema.safetensors" if which == "ema" else "best.safetensors"}
            self.history.append(row)
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            if w.main:
                self.metrics.add(row)
                report.print_epoch(row, self.epochs)
            self._checkpoint(best=is_best)
        return self._finish()

    def _finish(self) -> dict:
        w = self.world
        hashes = gather_objects(_state_hash(self.model), w) if w.enabled else [_state_hash(self.model)]
        summary = {
            "run_dir": str(self.run_dir), "model": self.spec.name, "recipe": self.recipe.name,
            "epochs": self.epoch, "global_step": self.global_step, "world_size": w.size,
            "global_batch": self.global_batch, "train_time_s": self.train_time,
            "best": self.best, "final": self.history[-1] if self.history else {},
            "rank_state_sha256": hashes,
        }
        if w.main:
            report.finish(self, summary)
            self.metrics.close()
        barrier(w)
        return summary


def train(recipe: Recipe, opts: RunOptions | None = None,
          on_epoch_start: Sequence[Callable[[Trainer], None]] = ()) -> dict:
    """Train `recipe` and return the run's summary (also saved as RUN/summary.json)."""
    return Trainer(recipe, opts or RunOptions(), on_epoch_start).run()
