"""What a run tells its user and leaves on disk besides checkpoints: the header, a line per epoch
(and per ~10 % of an epoch in a redirected log), the run files (config.yaml, spec.json), and at the
end the summary table, plots, samples and summary.json. Rank 0 only; nothing here changes training.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import UserError
from ..fileio import atomic_write, atomic_write_bytes
from ..models import RUN_SPEC_FILE
from .distributed import World, broadcast_object
from .metrics import summary_table

if TYPE_CHECKING:
    from .recipe import Recipe
    from .trainer import Trainer

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"


def new_run_dir(output: str | None, model_name: str, world: World) -> Path:
    """--output, or runs/<timestamp>-<model> (rank 0's clock); UserError when it holds anything."""
    name = output or str(Path("runs") / (dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{model_name}"))
    run_dir = Path(broadcast_object(name, world))
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UserError(f"output directory {run_dir} already exists and is not empty; "
                        f"use --resume {run_dir} to continue it, or another --output")
    return run_dir


def write_run_files(t: Trainer) -> None:
    """config.yaml (recipe, runtime, derived numbers, command) and spec.json (the model config and
    class names that `predict`, `eval` and `--resume` rebuild the network from)."""
    import yaml

    try:
        t.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # under a file, in /proc, read-only: say which directory and why
        raise UserError(f"cannot create the run directory {t.run_dir}: {e.strerror}") from None
    config = {"recipe": t.recipe.to_dict(),
              "runtime": {k: v for k, v in t.opts.to_dict().items() if k != "resume"},
              "world_size": t.world.size, "global_batch": t.global_batch, "peak_lr": t.peak_lr,
              "steps_per_epoch": t.steps_per_epoch, "total_steps": t.total_steps,
              "torch": str(torch.__version__), "command": sys.argv}
    atomic_write_bytes(t.run_dir / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False).encode())
    run_spec = {"model": t.recipe.model, "config": t.model.config.to_dict(), "classes": t.classes}
    atomic_write_bytes(t.run_dir / RUN_SPEC_FILE, json.dumps(run_spec, indent=1).encode())


def print_header(t: Trainer) -> None:
    w, pre = t.world, t.data_config
    what = "resuming" if t.resume_state is not None else "training"
    threads = f" ({torch.get_num_threads()} threads)" if w.device.type == "cpu" else ""
    print(f"effnet train: {what} {t.spec.name} ({sum(p.numel() for p in t.model.parameters()):,}"
          f" params) on {len(t.train_data)} train / {len(t.val_data)} val images, "
          f"{t.num_classes} classes")
    print(f"  run dir {t.run_dir}; device {w.device}{threads} x {w.size} process(es); global batch "
          f"{t.global_batch}; peak lr {t.peak_lr:.4g}; {t.steps_per_epoch} steps/epoch, "
          f"{t.total_steps} steps; sizes train {pre.train_size} / eval {pre.eval_size}")
    print(f"  {ema_line(t.recipe, t.global_batch, len(t.train_data))}")
    print(f"recipe {t.recipe.name}:")
    print(t.recipe.describe(), flush=True)


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


def summary(t: Trainer, rank_hashes: list[str]) -> dict:
    s = t.state
    return {"run_dir": str(t.run_dir), "model": t.spec.name, "recipe": t.recipe.name,
            "epochs": s.epoch, "global_step": s.global_step, "world_size": t.world.size,
            "global_batch": t.global_batch, "train_time_s": s.train_time, "best": s.best,
            "final": s.history[-1] if s.history else {}, "rank_state_sha256": rank_hashes}


def finish(t: Trainer, summary: dict) -> None:
    """Samples, plots and summary.json, then the table of epochs and where the run is."""
    from .plots import save_plots

    if t.opts.save_samples:
        out = t.run_dir / "samples"
        out.mkdir(exist_ok=True)
        for i in range(min(t.opts.save_samples, len(t.val_raw))):
            image, label = t.val_raw[i]
            atomic_write(out / f"{i:03d}_{t.classes[label]}.png", partial(image.save, format="PNG"))
    save_plots(t.run_dir, t.state.history, t.schedule.curve(), t.steps_per_epoch)
    atomic_write_bytes(t.run_dir / SUMMARY_FILE, json.dumps(summary, indent=1).encode())
    print()
    print(summary_table(t.state.history))
    b = t.state.best
    print(f"\nbest top-1 {b['top1']:.2f} % at epoch {b['epoch']} ({b['weights']}); "
          f"{t.state.train_time:.0f} s of training")
    files = ["best.safetensors", "last.safetensors"]
    if t.ema is not None:
        files[1:1] = ["best_ema.safetensors"]
        files.append("last_ema.safetensors")
    print(f"run saved in {t.run_dir}: {', '.join(files)}, {RUN_SPEC_FILE}, {CONFIG_FILE}, "
          f"metrics.csv, *.png", flush=True)
