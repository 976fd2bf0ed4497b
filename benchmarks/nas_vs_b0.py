"""A short training-aware NAS on a CIFAR-10 subset, and its best candidate against EfficientNet-B0
scaled (phi) to the same measured train-step time, trained with the same budget.

    .venv/bin/python benchmarks/nas_vs_b0.py [--trials 6] [--seeds 3] [--epochs 4]

1. `effnet search nas --space b0` on B0 shrunk by `--base-phi` at `--size` px: `--trials`
   random candidates, each timed (train step at batch `--batch`) and trained `--proxy-epochs` on
   `--proxy-images` images, scored by A * S^-0.07 * P^-0.05.
2. B0 compound-scaled by the phi (a scan, step 0.25) whose measured train-step time is closest
   to the best candidate's (same batch, size and threads; both timed back to back).
3. Both trained from scratch with the `short` recipe for `--epochs` on the whole train subset,
   `--seeds` seeds each, and evaluated on the test subset: mean +- std, a seed-paired verdict
   only when the difference exceeds the spread.

The results replace the `nas_vs_b0` section of BENCHMARKS.md (`--no-write` to skip).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
from _bench import CIFAR_ARCHIVE, extract_subset, mean_std, stamp, verdict, write_section

from effnet.arch.scaling import scale_compound
from effnet.models import get_spec
from effnet.search.nas import NasConfig, run_nas
from effnet.search.nas_report import stage_code
from effnet.search.proxy import Proxy, train_spec
from effnet.search.reward import step_time

ROOT = Path(__file__).resolve().parents[1]


def b0_at_step_time(target, size: int, batch: int, phis: list[float]):
    """B0 scaled by the phi of `phis` whose train step takes as long as `target`'s.

    Rounding of widths and depths makes B0's step time jump between neighbouring phis, so a scan,
    not a bisection. Each phi is timed back to back with `target` and compared by the ratio: on a
    CPU shared with other jobs the load drifts over minutes, far less within seconds."""
    b0 = get_spec("efficientnet_b0")
    scan = {}
    for phi in phis:
        spec = scale_compound(b0, phi)[0]
        r_b0, r_target = step_time(spec, size, batch, 10), step_time(target, size, batch, 10)
        scan[phi] = (spec, r_b0, r_target, r_b0["step_s"] / r_target["step_s"])
        print(f"B0 phi {phi:g}: step {r_b0['step_s'] * 1e3:.1f} ms, NAS best "
              f"{r_target['step_s'] * 1e3:.1f} ms", flush=True)
    phi = min(scan, key=lambda p: abs(math.log(scan[p][3])))
    return phi, scan


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-phi", type=float, default=-4.0)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--proxy-epochs", type=int, default=2)
    p.add_argument("--proxy-images", type=int, default=1000)
    p.add_argument("--train-per-class", type=int, default=200)
    p.add_argument("--val-per-class", type=int, default=50)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batch", type=int, default=32, help="batch of the step timing")
    p.add_argument("--phi-min", type=float, default=-5.0, help="B0 phi scan from")
    p.add_argument("--phi-max", type=float, default=-1.5, help="B0 phi scan to")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "effnet")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    if not CIFAR_ARCHIVE.is_file():
        sys.exit(f"{CIFAR_ARCHIVE} is absent: this benchmark needs the shared CIFAR-10 archive")
    cmd = "python benchmarks/nas_vs_b0.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    header = stamp(cmd.strip())  # the commit that runs, before any later edit of the tree
    torch.set_num_threads(args.threads)
    data = extract_subset(CIFAR_ARCHIVE, args.cache, args.train_per_class, args.val_per_class)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        proxy = Proxy(recipe="short", epochs=args.proxy_epochs, data=str(data),
                      train_subset=args.proxy_images,
                      workers=0)
        res = run_nas(NasConfig(space="b0", base="efficientnet_b0", base_phi=args.base_phi,
                                base_size=args.size, proxy=proxy, trials=args.trials,
                                time_batch=args.batch, output=str(Path(tmp) / "nas"),
                                progress=False))
        nas_s = time.perf_counter() - t0
        best = res.best
        print(f"NAS: {len(res.trained)} candidates in {nas_s:.0f} s; best {best.key} "
              f"{stage_code(best.spec)}", flush=True)
        phis = [args.phi_min + 0.25 * i for i in range(int((args.phi_max - args.phi_min) / 0.25) + 1)]
        phi, scan = b0_at_step_time(best.spec, args.size, args.batch, phis)
        b0, r_b0, r_best, _ = scan[phi]
        contenders = {"NAS best": best.spec, f"B0 phi {phi:.2f}": b0}
        measured = {"NAS best": r_best, f"B0 phi {phi:.2f}": r_b0}  # timed back to back
        accs: dict[str, list[float]] = {k: [] for k in contenders}
        for seed in range(args.seeds):
            for name, spec in contenders.items():
                full = Proxy(recipe="short", epochs=args.epochs, data=str(data), seed=seed, workers=0)
                s = train_spec(spec, args.size, full, Path(tmp) / f"{name}-{seed}".replace(" ", "_"))
                accs[name].append(float(s["best"]["top1"]))
                print(f"seed {seed} {name}: top-1 {accs[name][-1]:.2f}", flush=True)
    rows = ["| network | stages | params | MMACs | train step ms | top-1 % (mean +- std) |",
            "|---|---|---|---|---|---|"]
    for name, spec in contenders.items():
        m = measured[name]
        rows.append(f"| {name} | {stage_code(spec)} | {m['params'] / 1e6:.3f}M | "
                    f"{m['macs'] / 1e6:.2f} | {m['step_s'] * 1e3:.1f} | {mean_std(accs[name])} |")
    nas_rows = ["| rank | stages | proxy top-1 % | S | P | reward |", "|---|---|---|---|---|---|"]
    for i, c in enumerate(res.trained, start=1):
        a = c.attrs
        nas_rows.append(f"| {i} | {stage_code(c.spec)} | {a['top1']:.2f} | {a['S']:.3f} | "
                        f"{a['P']:.3f} | {a['reward']:.4f} |")
    b0_name = list(contenders)[1]
    body = "\n".join([
        "## nas_vs_b0: a short NAS on a CIFAR-10 subset vs B0 scaled to the same train-step time",
        "",
        header,
        "",
        f"Search: space b0 (per stage MBConv/Fused, k 3/5, e 1/4/6, layers around B0's, SE on "
        f"MBConv) on B0 phi={args.base_phi:g} at {args.size} px, {args.trials} random candidates, "
        f"proxy {args.proxy_epochs} epochs on {args.proxy_images} images; {nas_s / 60:.1f} min. "
        f"Step time: batch {args.batch}, {args.threads} thread(s), on a CPU shared with other jobs.",
        "",
        *nas_rows,
        "",
        f"Equal budget: `short` recipe, {args.epochs} epochs on {args.train_per_class * 10} train "
        f"images, {args.val_per_class * 10} test images, {args.seeds} seeds.",
        "",
        *rows,
        "",
        f"- B0 phi scan {args.phi_min:g}..{args.phi_max:g} (step 0.25), B0 / NAS-best step time: "
        + ", ".join(f"{p:g}: {scan[p][3]:.2f}" for p in scan) + f"; closest: phi {phi:g}.",
        f"- NAS best vs {b0_name}: " + verdict(accs["NAS best"], accs[b0_name]) + ".",
        "- A search this short (a handful of candidates, proxy training of a few epochs on a small "
        "subset) ranks candidates by noisy proxy accuracies; read the verdict above, not the "
        "ranking, as the answer to whether it found something better.",
    ])
    print(body)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", "nas_vs_b0", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
