"""Compound vs single-dimension scaling at matched FLOPs on CIFAR-10, at a CPU-sized budget.

    .venv/bin/python benchmarks/compound_scaling.py [--seeds 3] [--workers 2]

V1 Table 3 / Table 7 / Fig. 8 in miniature: EfficientNetV2-B0 (whose B1-B3 the V2 family obtains
by V1's compound multipliers) shrunk by phi=-4 to a CPU size, at `--size` px (CIFAR upsampled), is
scaled to `--ratio` x its measured MACs by depth only, width only, resolution only and by the
compound rule (alpha, beta, gamma = 1.2, 1.1, 1.15, or
`--coeffs` from a search), each multiplier solved by bisection on `count_macs`
(effnet.search.experiment.matched). The baseline and the four scaled networks then train with one
recipe (`short`: a few epochs on a few thousand images) through `effnet.train` on a class-balanced
CIFAR-10 subset, `--seeds` times, seed-major (for seed: for network:) so load drift on a shared machine
hits every arm alike; `--workers` processes of one thread each take the runs in that order.

Data: ../shared/data/cifar10-jpeg.tar.gz (the JPEG re-encoding; see its README), extracted once,
only the subset used, into `--cache`; val images come from the official test split.
Results: scaling.csv (one row per network, mean top-1), seeds.csv (one row per run) and
accuracy_vs_flops.png go to benchmarks/results/compound_scaling/; the `compound_scaling` section of
BENCHMARKS.md is replaced (`--no-write` to skip).
"""

from __future__ import annotations

import argparse
import csv
import math
import shlex
import shutil
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from _bench import CIFAR_ARCHIVE, ROOT, extract_subset, mean_std, stamp, train_runs, verdict, write_section

RESULTS = ROOT / "benchmarks" / "results" / "compound_scaling"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ratio", default="2", help="target FLOPs ratio(s), e.g. 2 or 2,4")
    p.add_argument("--base", default="efficientnetv2_b0",
                   help="the network to scale, shrunk by --base-phi first (V2-B0: its Fused-MBConv stages "
                   "train about 1.3x faster than B0's on a CPU and learn more in a few epochs)")
    p.add_argument("--base-phi", type=float, default=-4.0)
    p.add_argument("--size", type=int, default=48,
                   help="base resolution (48: CIFAR upsampled 1.5x, so the stride-32 net ends at "
                   "2x2 and resolution scaling gets within ~13 % of the ratio; at 32 px the next size up, "
                   "33, already costs 2.2x and compound scaling collapses onto it)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-per-class", type=int, default=250)
    p.add_argument("--val-per-class", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="training processes (one thread each)")
    p.add_argument("--coeffs", type=Path, default=None, help="alpha/beta/gamma JSON (best.json)")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "effnet")
    p.add_argument("--output", type=Path, default=ROOT / "runs" / "bench-compound-scaling")
    p.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    args = p.parse_args(argv)
    if not CIFAR_ARCHIVE.is_file():
        sys.exit(f"{CIFAR_ARCHIVE} is absent: this benchmark needs the shared CIFAR-10 archive")
    header = stamp(shlex.join(["python", "benchmarks/compound_scaling.py", *argv]))

    from effnet.arch.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, read_coeffs
    from effnet.search.compound import prepare_base
    from effnet.search.experiment import Scaled, matched, plot_experiment
    from effnet.search.grid import MacCounter
    from effnet.search.proxy import Proxy, spec_path, write_spec_file
    from effnet.tools.profile import count_params
    from effnet.train import RunOptions
    from effnet.train.recipe import override

    ratios = sorted({float(r) for r in args.ratio.split(",")})
    coeffs = read_coeffs(args.coeffs) if args.coeffs else (PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA)
    t0 = time.perf_counter()
    data = str(extract_subset(CIFAR_ARCHIVE, args.cache, args.train_per_class, args.val_per_class))
    # the `short` recipe: learns fast in a few epochs (zero head, short warm-up, no EMA / drop path)
    changes = {"lr": args.lr, "batch_size": args.batch_size}
    proxy = Proxy(recipe="short", epochs=args.epochs, data=data)
    base = prepare_base(args.base, args.base_phi, args.size, proxy)
    counter = MacCounter(num_classes=10)
    points = [Scaled("baseline", 1.0, base.spec, base.size, counter(base.spec, base.size), 1.0, 1.0)]
    for r in ratios:
        points += matched(base, r, counter, coeffs)
    for pt in points:
        pt.params = count_params(pt.spec, num_classes=10)
    if args.output.exists():
        shutil.rmtree(args.output)  # a benchmark measures afresh

    runs, keys = [], []
    for seed in range(args.seeds):  # seed-major: every arm meets the same machine load
        for i, pt in enumerate(points):
            run_dir = args.output / f"seed{seed}" / f"{pt.method}-x{pt.target:g}"
            spec_file = write_spec_file(pt.spec, spec_path(run_dir), base.preprocess)
            recipe = override(replace(proxy, seed=seed).recipe_for(str(spec_file), pt.resolution),
                              changes)
            runs.append((recipe, RunOptions(data=data, output=str(run_dir), workers=0, threads=1,
                                            progress=False, tensorboard=False)))
            keys.append((seed, i))

    def report(j: int, s: dict) -> None:
        seed, i = keys[j]
        print(f"seed {seed} {points[i].label:<22} top-1 {s['best']['top1']:6.2f} %  final train loss "
              f"{s['final']['train_loss']:.3f}  {s['train_time_s']:.0f} s", flush=True)

    summaries = train_runs(runs, args.workers, report)
    top1 = {i: [] for i in range(len(points))}
    loss = {i: [] for i in range(len(points))}
    rows = []
    for (seed, i), s in zip(keys, summaries, strict=True):
        top1[i].append(float(s["best"]["top1"]))
        loss[i].append(float(s["final"]["train_loss"]))
        rows.append([seed, points[i].method, points[i].target, points[i].resolution, top1[i][-1],
                     loss[i][-1], round(float(s["train_time_s"]), 1)])
    for i, pt in enumerate(points):
        pt.result = {"top1": statistics.mean(top1[i])}
    elapsed = time.perf_counter() - t0

    RESULTS.mkdir(parents=True, exist_ok=True)
    for old in RESULTS.iterdir():
        old.unlink()
    with (RESULTS / "seeds.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["seed", "method", "target_ratio", "resolution", "best_top1",
                                  "final_train_loss", "train_s"], *rows])
    with (RESULTS / "scaling.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["target_ratio", "method", "multiplier", "resolution", "blocks",
                                  "params", "macs", "macs_ratio", "top1_mean", "top1_std"]] + [
            [pt.target, pt.method, round(pt.multiplier, 6), pt.resolution, pt.spec.num_blocks,
             pt.params, pt.macs, round(pt.ratio, 4), round(statistics.mean(top1[i]), 2),
             round(statistics.stdev(top1[i]), 2) if len(top1[i]) > 1 else ""]
            for i, pt in enumerate(points)])
    plot_experiment(RESULTS / "accuracy_vs_flops.png", base, points)

    table = ["| target x | network | res | blocks | params | MMACs | MACs ratio | top-1 % | "
             "final train loss |", "|---|---|---|---|---|---|---|---|---|"]
    table += [f"| {pt.target:g} | {pt.label} | {pt.resolution} | {pt.spec.num_blocks} | "
              f"{pt.params / 1e6:.3f}M | {pt.macs / 1e6:.2f} | {pt.ratio:.3f} | {mean_std(top1[i])} | "
              f"{mean_std(loss[i])} |" for i, pt in enumerate(points)]
    verdicts = []
    for r in ratios:
        comp = next(i for i, pt in enumerate(points) if pt.method == "compound" and pt.target == r)
        for i, pt in enumerate(points):
            if pt.target == r and pt.method in ("depth", "width", "resolution"):
                verdicts.append(f"at {r:g}x FLOPs, compound vs {pt.method} only: "
                                + verdict(top1[comp], top1[i]))
    chance, uniform = 10.0, math.log(10)
    body = "\n".join([
        "## Compound vs single-dimension scaling at matched FLOPs (V1 Table 3/7, Fig. 8)",
        "",
        header,
        "",
        f"Base: {args.base} shrunk by phi={args.base_phi:g} at {args.size} px. Data: CIFAR-10 "
        f"(JPEG copy), {args.train_per_class} train / {args.val_per_class} val images per class (val "
        f"from the official test split), upsampled to each network's resolution. Every network "
        f"trains with the `short` recipe (zero head, 0.3-epoch warm-up, no dropout, stochastic depth or "
        f"EMA, random flips) at lr {args.lr:g}, batch {args.batch_size}, for {args.epochs} epochs, "
        f"seeds 0-{args.seeds - 1} interleaved (seed-major), {args.workers} process(es) of 1 thread; "
        f"{elapsed / 60:.1f} min in all. Compound uses alpha, beta, gamma = {coeffs[0]:g}, "
        f"{coeffs[1]:g}, {coeffs[2]:g}. Each multiplier is solved by bisection on measured MACs "
        f"(`count_macs`); the MACs-ratio column shows how close rounding let it get. top-1: the best "
        f"epoch's val top-1, mean +- std over seeds.",
        "",
        f"Did the baseline learn? Final train loss {mean_std(loss[0])} against {uniform:.2f} (ln 10, "
        f"a uniform guess), val top-1 {mean_std(top1[0])} % against {chance:.0f} % chance.",
        "",
        *table,
        "",
        *[f"- {v}" for v in verdicts],
        "",
        "Plot: `benchmarks/results/compound_scaling/accuracy_vs_flops.png` (mean top-1); tables as CSV: "
        "`benchmarks/results/compound_scaling/scaling.csv`, per run `seeds.csv`. A few thousand images "
        "and a few epochs show the machinery and the direction on this budget, not the paper's "
        "ImageNet result (SPEC E.3/E.4); deeper networks in particular need more epochs than this.",
    ])
    print(body)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", "compound_scaling", body)
        print("BENCHMARKS.md section compound_scaling updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
