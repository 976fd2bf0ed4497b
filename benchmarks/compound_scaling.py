"""Compound vs single-dimension scaling at matched FLOPs on CIFAR-10, at a CPU-sized budget.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/compound_scaling.py

V1 Table 3 / Table 7 / Fig. 8 in miniature: the quick recipe's CPU-sized B0 (B0 compound-scaled by
phi=-4) at 64 px (CIFAR upsampled) is scaled to `--ratio` x its measured MACs by depth only,
width only, resolution only and by the compound rule (alpha, beta, gamma = 1.2, 1.1, 1.15, or `--coeffs` from
a search), each multiplier solved by bisection on `count_macs`, and all five networks train with
the same proxy recipe (`quick`, `--epochs`) through `effnet.train` on a class-balanced subset of
CIFAR-10 (`--train-per-class`, `--val-per-class`, from the official test split).

Data: ../shared/data/cifar10-jpeg.tar.gz (the JPEG re-encoding; see its README) is extracted once,
only the subset used, into `--cache`; where the archive is absent the built-in digits are used.
Results go to `--output` (scaling.csv / .md / .json, accuracy_vs_flops.png), are copied to
benchmarks/results/compound_scaling/ and replace the `compound_scaling` section of BENCHMARKS.md
(`--no-write` to skip).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch
from _bench import CIFAR_ARCHIVE, extract_subset, write_section

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "compound_scaling"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ratio", default="2", help="target FLOPs ratio(s), e.g. 2 or 2,4")
    p.add_argument("--base", default="efficientnet_b0")
    p.add_argument("--base-phi", type=float, default=-4.0)
    p.add_argument("--size", type=int, default=64,
                   help="base resolution (64: CIFAR upsampled 2x, so the stride-32 net ends at "
                   "2x2 and resolution scaling can reach the matched ratio; at 32 px the next "
                   "size up, 33, already costs 2.2x)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--train-per-class", type=int, default=300)
    p.add_argument("--val-per-class", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--coeffs", type=Path, default=None, help="alpha/beta/gamma JSON (best.json)")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "effnet")
    p.add_argument("--output", type=Path, default=ROOT / "runs" / "bench-compound-scaling")
    p.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    args = p.parse_args(argv)

    from effnet.arch.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, read_coeffs
    from effnet.search.compound import prepare_base
    from effnet.search.experiment import print_table, run_experiment, verdict
    from effnet.search.proxy import Proxy

    ratios = sorted({float(r) for r in args.ratio.split(",")})
    coeffs = read_coeffs(args.coeffs) if args.coeffs else (PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA)
    t0 = time.perf_counter()
    if CIFAR_ARCHIVE.is_file():
        data = str(extract_subset(CIFAR_ARCHIVE, args.cache, args.train_per_class, args.val_per_class))
        data_desc = (f"CIFAR-10 (JPEG copy), {args.train_per_class} train / {args.val_per_class} "
                     f"val images per class (val from the official test split)")
    else:
        print(f"{CIFAR_ARCHIVE} not found: using the built-in digits", file=sys.stderr)
        data, data_desc = None, "built-in digits (CIFAR-10 archive absent)"
    t_data = time.perf_counter() - t0
    proxy = Proxy(recipe="quick", epochs=args.epochs, data=data, batch_size=args.batch_size)
    base = prepare_base(args.base, args.base_phi, args.size, proxy)
    if args.output.exists():
        shutil.rmtree(args.output)  # a benchmark measures afresh
    points, files = run_experiment(base, ratios, proxy, args.output, coeffs)
    elapsed = time.perf_counter() - t0
    table = print_table(points)
    print(table)
    print(f"\n{elapsed:.0f} s in all ({t_data:.0f} s data)")

    RESULTS.mkdir(parents=True, exist_ok=True)
    for key in ("csv", "markdown", "plot"):
        shutil.copyfile(files[key], RESULTS / files[key].name)
    if not args.no_write:
        md_table = files["markdown"].read_text().split("\n\n", 1)[1]
        cmd = "OMP_NUM_THREADS=2 .venv/bin/python benchmarks/compound_scaling.py" + (
            " " + shlex.join(argv if argv is not None else sys.argv[1:])
            if (argv if argv is not None else sys.argv[1:]) else "")
        body = "\n".join([
            "## Compound vs single-dimension scaling at matched FLOPs (V1 Table 3/7, Fig. 8)",
            "",
            f"`{cmd}` ({dt.date.today()}, {platform.processor() or platform.machine()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, {elapsed / 60:.1f} min).",
            "",
            f"Base: {base.name} (B0 shrunk by phi={args.base_phi:g}) at {args.size} px. Data: "
            f"{data_desc}. Every network trains with the `quick` recipe for {args.epochs} epochs "
            f"(batch {args.batch_size}, seed 0) through `effnet.train`; compound uses alpha, beta, "
            f"gamma = {coeffs[0]:g}, {coeffs[1]:g}, {coeffs[2]:g}. Each multiplier is solved by "
            f"bisection on measured MACs (`count_macs`), so the MACs-ratio column shows how close "
            f"to the target rounding let it get. top-1 is the best epoch's val top-1 (model or EMA).",
            "",
            md_table.rstrip(),
            "",
            f"Plot: `benchmarks/results/compound_scaling/{files['plot'].name}`; table as CSV: "
            f"`benchmarks/results/compound_scaling/{files['csv'].name}`.",
            "",
            "Verdict of this run: " + "; ".join(verdict(points)) + ". With a few thousand images "
            "and a few epochs, one seed, differences of a point or two are within run-to-run noise; "
            "this shows the machinery end to end, not the paper's ImageNet result (SPEC E.3/E.4).",
        ])
        write_section(ROOT / "BENCHMARKS.md", "compound_scaling", body)
        print("BENCHMARKS.md section compound_scaling updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
