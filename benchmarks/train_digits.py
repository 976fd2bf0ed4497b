"""`effnet train` with no arguments (the demo: the `quick` recipe on the built-in digits), run as a
user runs it, and its result as the `train_digits` section of BENCHMARKS.md.

    .venv/bin/python benchmarks/train_digits.py

The command runs in a fresh temporary directory (so its default run directory, runs/<time>-<model>,
lands there) as `python -m effnet train` on this checkout's src/; the section is read back from
the run's own files: summary.json (best epoch), metrics.csv (per-epoch top-1/top-5, speed) and
config.yaml (the recipe it used). Wall time is the whole command, start-up and evaluation
included. About 2 minutes on one core. `--no-write` prints the section without writing it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _bench import stamp, write_section

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ("train",)  # `effnet train`, nothing else: the defaults are what is measured
WD_ON = {"bn": "off BN", "bn_bias": "off biases and BN", "none": "on every parameter"}  # recipe.wd_exclude


def run_demo(workdir: Path) -> tuple[Path, float]:
    """Run the command in `workdir`; its run directory and the command's wall seconds."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                    os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "effnet", *COMMAND], cwd=workdir, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"`effnet {' '.join(COMMAND)}` failed with exit status {done.returncode}")
    runs = sorted((workdir / "runs").glob("*/summary.json"))
    if len(runs) != 1:
        sys.exit(f"expected one run with a summary.json under {workdir / 'runs'}, found {len(runs)}")
    return runs[0].parent, wall


def recipe_line(r: dict, params: int, images: int, steps: int) -> str:
    """The recipe as a sentence, from the run's config.yaml."""
    model = r["model"] + (f" compound-scaled to phi = {r['phi']:g}" if r.get("phi") is not None else "")
    crops = ("plain resize" if r["scale"] is None else
             f"random-resized crops of {r['scale'][0]:.0%}-{r['scale'][1]:.0%} area")
    ema = f"EMA {r['ema_decay']:g}" if r["ema_decay"] else "no EMA"
    return (f"The `{r['name']}` recipe: {model} ({params:,} parameters) at {r['img_size']} px, "
            f"{images:,} train images per epoch, {r['epochs']} epochs x {steps} steps of batch "
            f"{r['batch_size']}, {r['opt']} lr {r['lr']:g} ({r['sched']}, {r['warmup_epochs']:g} warmup "
            f"epoch(s), weight decay {r['weight_decay']:g} {WD_ON[r['wd_exclude']]}), {ema}, "
            f"dropout {r['dropout']}, stochastic depth {r['drop_path']}, {crops}, "
            f"{'flips' if r['hflip'] else 'no flip'}, label smoothing {r['label_smoothing']:g}.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)

    import effnet.train as et
    from effnet.train.recipe import recipe_from_dict

    env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    header = stamp(f"{env}.venv/bin/python benchmarks/train_digits.py"  # the commit that runs
                   + "".join(f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv)))
    with tempfile.TemporaryDirectory(prefix="effnet-demo-") as tmp:
        run, wall = run_demo(Path(tmp))
        summary = json.loads((run / "summary.json").read_text())
        rows = list(csv.DictReader((run / "metrics.csv").open()))
        config = yaml.safe_load((run / "config.yaml").read_text())
        classes = json.loads((run / "spec.json").read_text())["classes"]
    recipe = config["recipe"]
    params = sum(q.numel() for q in et.build_model(recipe_from_dict(recipe), len(classes)).parameters())

    best = summary["best"]
    row = next(r for r in rows if int(r["epoch"]) == best["epoch"])
    which = "EMA" if best["weights"].startswith("best_ema") else "raw"
    top5 = row["ema_top5" if which == "EMA" else "top5"]
    final = rows[-1]
    speeds = [float(r["img_per_s"]) for r in rows]
    table = [
        "| metric | value |", "|---|---|",
        f"| best val top-1 | **{best['top1']:.2f} %** (epoch {best['epoch']} of {len(rows)}, {which} weights) |",
        f"| val top-5 at that epoch | {float(top5):.2f} % |",
        f"| final epoch val top-1 | raw {float(final['top1']):.2f} %"
        + (f", EMA {float(final['ema_top1']):.2f} %" if final.get("ema_top1") else "") + " |",
        f"| final train loss | {float(final['train_loss']):.4f} (uniform guess: ln {len(classes)} = "
        f"{math.log(len(classes)):.2f}) |",
        f"| wall time, whole command | {wall:.0f} s ({summary['train_time_s']:.0f} s of it in training steps) |",
        f"| training speed | median {statistics.median(speeds):.0f} img/s over epochs "
        f"(min {min(speeds):.0f}, max {max(speeds):.0f}) |",
        f"| parameters | {params:,} |",
    ]
    body = "\n".join([
        "## Training: `effnet train` with no arguments (quick recipe, built-in digits)",
        "",
        header,
        "",
        f"It runs `{env}effnet {' '.join(COMMAND)}` (as `python -m effnet train` in an empty directory) "
        f"and reads the run's summary.json, metrics.csv and config.yaml.",
        "",
        recipe_line(recipe, params, int(final["images"]), config["steps_per_epoch"]),
        "",
        *table,
    ])
    print("\n" + body)
    if not args.no_write:
        write_section(args.output, "train_digits", body)
        print(f"\nwrote the train_digits section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
