"""What a run tells its user and leaves on disk besides checkpoints: the header, a line per epoch
(and per ~10 % of an epoch in a redirected log), the run files (config.yaml, spec.json), and at the
end the summary table, plots, samples and summary.json. Rank 0 only; nothing here changes training.
It reads no trainer: the run's facts come as a `RunInfo`, its progress as the train state, and its
files are the run directory's (`RunDir`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from ..rundir import RunDir
from .metrics import summary_table
from .recipe import Recipe
from .state import TrainState


@dataclass(frozen=True)
class RunInfo:
    """What the report says about a run, fixed once the trainer is set up."""

    rundir: RunDir
    recipe: Recipe
    model: str  # the trained network's name
    params: int
    classes: list[str]
    images: tuple[int, int]  # train, val
    device: torch.device
    processes: int
    global_batch: int
    peak_lr: float
    steps_per_epoch: int
    total_steps: int
    sizes: tuple[int, int]  # train, eval image size of the network's preprocessing


def write_run_files(info: RunInfo, runtime: dict, model_config: dict) -> None:
    """config.yaml (recipe, runtime, derived numbers, command) and spec.json (the model config and
    class names that `predict`, `eval` and `--resume` rebuild the network from)."""
    run = info.rundir
    run.mkdir()
    run.write_config(info.recipe.to_dict(), runtime, world_size=info.processes,
                     global_batch=info.global_batch, peak_lr=info.peak_lr,
                     steps_per_epoch=info.steps_per_epoch, total_steps=info.total_steps,
                     torch=str(torch.__version__), command=sys.argv)
    run.write_spec(info.recipe.model, model_config, info.classes)


def print_header(info: RunInfo, resuming: bool) -> None:
    threads = f" ({torch.get_num_threads()} threads)" if info.device.type == "cpu" else ""
    print(f"effnet train: {'resuming' if resuming else 'training'} {info.model} ({info.params:,}"
          f" params) on {info.images[0]} train / {info.images[1]} val images, "
          f"{len(info.classes)} classes")
    print(f"  run dir {info.rundir}; device {info.device}{threads} x {info.processes} process(es); "
          f"global batch {info.global_batch}; peak lr {info.peak_lr:.4g}; {info.steps_per_epoch} "
          f"steps/epoch, {info.total_steps} steps; sizes train {info.sizes[0]} / eval {info.sizes[1]}")
    print(f"  {ema_line(info.recipe, info.global_batch, info.images[0])}")
    print(f"recipe {info.recipe.name}:")
    print(info.recipe.describe(), flush=True)


def ema_line(recipe: Recipe, global_batch: int, train_images: int) -> str:
    """How far back the EMA reaches: its decay per step at this global batch and its horizon,
    1 / (1 - decay) steps, in images and epochs (after the (1+t)/(10+t) warm-up, if on)."""
    r, decay = recipe, recipe.ema_step_decay(global_batch)
    if not decay:
        return "EMA off"
    stated = (f"{r.ema_decay:g} per step at global batch {r.ema_base_size}" if r.ema_base_size
              else f"{r.ema_decay:g} per step at any global batch")
    images = global_batch / (1 - decay)
    return (f"EMA decay {stated} -> {decay:.8g} per step at {global_batch}: a horizon of "
            f"{images:,.0f} images ({images / max(1, train_images):.3g} epochs)")


class EpochProgress:
    """An epoch's progress: a bar on a terminal; in a redirected log a plain line every ~10 % of
    the epoch instead of bar redraws. Reads the loss (a device sync) only when it shows it."""

    def __init__(self, show: bool, epoch: int, epochs: int, done: int, batches: int,
                 images_per_batch: int):
        from tqdm import tqdm

        self.show, self.epoch, self.epochs, self.batches = show, epoch, epochs, batches
        self.done_at_start, self.images_per_batch = done, images_per_batch
        self.bar = tqdm(total=batches, initial=done, disable=not (show and sys.stdout.isatty()),
                        leave=False, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                        dynamic_ncols=True)
        self.log_every = max(1, batches // 10) if show and self.bar.disable else 0

    def batch_done(self) -> None:
        self.bar.update(1)

    def step_done(self, batch: int, step: int, last: bool, loss, lr: float, seconds: float) -> None:
        line = self.log_every and batch % self.log_every == 0
        if not self.show or not (step % 10 == 0 or last or line):
            return
        speed = (batch - self.done_at_start) * self.images_per_batch / max(1e-9, seconds)
        if not self.log_every:
            self.bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}", img_s=f"{speed:.0f}")
        elif line and not last:
            print(f"  epoch {self.epoch + 1}/{self.epochs}  batch {batch}/{self.batches}  loss "
                  f"{loss.item():.4f}  lr {lr:.3g}  {speed:.0f} img/s", flush=True)

    def close(self) -> None:
        self.bar.close()


def print_epoch(row: dict, epochs: int) -> None:
    ema = f"  EMA top-1 {row['ema_top1']:.2f}" if "ema_top1" in row else ""
    print(f"epoch {row['epoch']}/{epochs}  loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}"
          f"  top-1 {row['top1']:.2f}  top-5 {row['top5']:.2f}{ema}  {row['img_per_s']:.0f} img/s",
          flush=True)


def summary(info: RunInfo, state: TrainState, rank_hashes: list[str]) -> dict:
    return {"run_dir": str(info.rundir), "model": info.model, "recipe": info.recipe.name,
            "epochs": state.epoch, "global_step": state.global_step, "world_size": info.processes,
            "global_batch": info.global_batch, "train_time_s": state.train_time, "best": state.best,
            "final": state.history[-1] if state.history else {}, "rank_state_sha256": rank_hashes}


def finish(info: RunInfo, state: TrainState, summary: dict, lr_curve: list[float],
           samples: list, ema: bool) -> None:
    """`samples` (val (image, label) pairs), plots and summary.json, then the table of epochs and
    where the run is."""
    from .plots import save_plots

    run = info.rundir
    for i, (image, label) in enumerate(samples):
        run.write_sample(i, info.classes[label], image)
    save_plots(run, state.history, lr_curve, info.steps_per_epoch)
    run.write_summary(summary)
    print()
    print(summary_table(state.history))
    b = state.best
    print(f"\nbest top-1 {b['top1']:.2f} % at epoch {b['epoch']} ({b['weights']}); "
          f"{state.train_time:.0f} s of training")
    print(f"run saved in {run}: {', '.join(run.saved_files(ema))}", flush=True)
