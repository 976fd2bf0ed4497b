"""What a run tells its user and leaves on disk besides checkpoints: the header, a line per epoch
(and per ~10 % of an epoch in a redirected log), the run files (config.yaml, spec.json), and at the
end the summary table, plots, samples and summary.json. Rank 0 only; nothing here changes training.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import torch

from ..errors import UserError
from ..fileio import atomic_write_bytes
from ..inference import RUN_SPEC_FILE
from .metrics import summary_table

if TYPE_CHECKING:
    from .trainer import Trainer

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"


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
    w, pre = t.world, t.spec.preprocess
    what = "resuming" if t.resume_state is not None else "training"
    threads = f" ({torch.get_num_threads()} threads)" if w.device.type == "cpu" else ""
    print(f"effnet train: {what} {t.spec.name} ({sum(p.numel() for p in t.model.parameters()):,}"
          f" params) on {len(t.train_data)} train / {len(t.val_data)} val images, "
          f"{t.num_classes} classes")
    print(f"  run dir {t.run_dir}; device {w.device}{threads} x {w.size} process(es); global batch "
          f"{t.global_batch}; peak lr {t.peak_lr:.4g}; {t.steps_per_epoch} steps/epoch, "
          f"{t.total_steps} steps; sizes train {pre.train_size} / eval {pre.eval_size}")
    print(f"recipe {t.recipe.name}:")
    print(t.recipe.describe(), flush=True)


def print_progress(epoch: int, epochs: int, batch: int, batches: int, loss: float, lr: float,
                   img_per_s: float) -> None:
    print(f"  epoch {epoch}/{epochs}  batch {batch}/{batches}  loss {loss:.4f}  lr {lr:.3g}  "
          f"{img_per_s:.0f} img/s", flush=True)


def print_epoch(row: dict, epochs: int) -> None:
    ema = f"  EMA top-1 {row['ema_top1']:.2f}" if "ema_top1" in row else ""
    print(f"epoch {row['epoch']}/{epochs}  loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}"
          f"  top-1 {row['top1']:.2f}  top-5 {row['top5']:.2f}{ema}  {row['img_per_s']:.0f} img/s",
          flush=True)


def finish(t: Trainer, summary: dict) -> None:
    """Samples, plots and summary.json, then the table of epochs and where the run is."""
    from .plots import save_plots

    if t.opts.save_samples:
        out = t.run_dir / "samples"
        out.mkdir(exist_ok=True)
        for i in range(min(t.opts.save_samples, len(t.val_raw))):
            image, label = t.val_raw[i]
            image.save(out / f"{i:03d}_{t.classes[label]}.png")
    save_plots(t.run_dir, t.history, t.schedule.curve(), t.steps_per_epoch)
    atomic_write_bytes(t.run_dir / SUMMARY_FILE, json.dumps(summary, indent=1).encode())
    print()
    print(summary_table(t.history))
    b = t.best
    print(f"\nbest top-1 {b['top1']:.2f} % at epoch {b['epoch']} ({b['weights']}); "
          f"{t.train_time:.0f} s of training")
    files = ["best.safetensors", "last.safetensors"]
    if t.ema is not None:
        files[1:1] = ["best_ema.safetensors"]
        files.append("last_ema.safetensors")
    print(f"run saved in {t.run_dir}: {', '.join(files)}, {RUN_SPEC_FILE}, {CONFIG_FILE}, "
          f"metrics.csv, *.png", flush=True)
