"""Fused-MBConv in place of MBConv, in the spirit of EfficientNetV2 Table 3 (SPEC E.7), on this CPU.

    .venv/bin/python benchmarks/fused_mbconv.py [--bases b0,b4] [--seeds 3] [--epochs 4]

Networks: EfficientNet-B0 and B4 shrunk by the paper's compound rule (`--phi`, default -4, the
`short` recipe's B0) so they train in seconds, with their MBConv stages 1-3, 1-5, all (1-7) or none
replaced by Fused-MBConv (paper numbering counts the stem as stage 0: "stage 1-3" = the first three
MBConv stages). A fused block keeps its row's kernel, stride, expansion, width, layers and SE ratio
(SE sits on the expanded conv's output, as in P2 Fig. 2); an e=1 fused block is one k x k conv.

Measured: params and MACs at `--size` px (count_macs), train img/s (median step time of forward,
cross-entropy, backward and an SGD update at batch `--batch`, `--threads` threads, profile()),
and val top-1 after the same short training (effnet.train, `short` recipe, `--epochs`) on a
class-balanced CIFAR-10 subset from ../shared/data, several seeds: mean +- std.

The results replace the `fused_mbconv` section of BENCHMARKS.md (`--no-write` to skip).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from _bench import CIFAR_ARCHIVE, extract_subset, mean_std, stamp, verdict, write_section

from effnet.arch.scaling import scale_compound
from effnet.models import build, get_spec
from effnet.search.proxy import Proxy, train_spec
from effnet.tools.profile import profile

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"none": 0, "stage 1-3": 3, "stage 1-5": 5, "all (1-7)": 7}


def fused(spec, n: int):
    """`spec` with its first `n` stages as Fused-MBConv (everything else of the row kept)."""
    stages = tuple(replace(s, block="fused") if i < n else s for i, s in enumerate(spec.stages))
    return spec.with_(stages=stages, name=f"{spec.name}-fused{n}")


def measure(specs: dict, size: int, batch: int, classes: int, rounds: int = 5) -> dict:
    """Params, MACs and train img/s of each spec; the timings go round-robin over the specs,
    `rounds` times, and keep each one's median: a CPU shared with other jobs changes speed over
    minutes, so timing one variant after the other would compare loads, not networks."""
    models = {}
    for k, spec in specs.items():
        torch.manual_seed(0)
        models[k] = build(spec, num_classes=classes)
    out = {k: {"img_s": []} for k in specs}
    for _ in range(rounds):
        for k, model in models.items():
            r = profile(model, size, batch, steps=5, warmup=2)
            out[k].update(params=r["params"], macs=r["macs"])
            out[k]["img_s"].append(r["train_img_s"])
    for v in out.values():
        v["img_s"] = statistics.median(v["img_s"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bases", default="b0", help="comma list of V1 bases: b0, b4")
    p.add_argument("--phi", type=float, default=-4.0, help="compound shrink of each base")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--train-per-class", type=int, default=200)
    p.add_argument("--val-per-class", type=int, default=100)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batch", type=int, default=32, help="batch of the img/s timing")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "effnet")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    if not CIFAR_ARCHIVE.is_file():
        sys.exit(f"{CIFAR_ARCHIVE} is absent: this benchmark needs the shared CIFAR-10 archive")
    cmd = "python benchmarks/fused_mbconv.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    header = stamp(cmd.strip())  # the commit that runs, before any later edit of the tree
    torch.set_num_threads(args.threads)
    data = extract_subset(CIFAR_ARCHIVE, args.cache, args.train_per_class, args.val_per_class)

    rows = ["| base | Fused-MBConv in | params | MMACs | train img/s | top-1 % (mean +- std) |",
            "|---|---|---|---|---|---|"]
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        for b in args.bases.split(","):
            base, _ = scale_compound(get_spec(f"efficientnet_{b.strip()}"), args.phi)
            specs = {label: fused(base, n) for label, n in VARIANTS.items()}
            speed = measure(specs, args.size, args.batch, 10)
            accs = {label: [] for label in VARIANTS}
            losses = []  # the unfused base's final train loss: did the baseline learn?
            for seed in range(args.seeds):  # seed-major: every variant meets the same machine load
                for label, n in VARIANTS.items():
                    proxy = Proxy(recipe="short", epochs=args.epochs, data=str(data), seed=seed,
                                  workers=0)
                    s = train_spec(specs[label], args.size, proxy, Path(tmp) / f"{b}-{n}-{seed}")
                    accs[label].append(float(s["best"]["top1"]))
                    if label == "none":
                        losses.append(float(s["final"]["train_loss"]))
            notes.append(f"B{b[1:]} unfused baseline: final train loss {mean_std(losses)} "
                         f"against ln 10 = 2.30 (a uniform guess), top-1 {mean_std(accs['none'])} % "
                         f"against 10 % chance")
            for label in VARIANTS:
                m = speed[label]
                print(f"{b} phi {args.phi:g} fused {label}: {m['params'] / 1e6:.3f}M params, "
                      f"{m['macs'] / 1e6:.2f} MMACs, {m['img_s']:.0f} img/s, top-1 "
                      f"{mean_std(accs[label])}", flush=True)
                rows.append(f"| B{b[1:]} phi {args.phi:g} | {label} | {m['params'] / 1e6:.3f}M | "
                            f"{m['macs'] / 1e6:.2f} | {m['img_s']:.0f} | {mean_std(accs[label])} |")
            for label in list(VARIANTS)[1:]:
                notes.append(f"B{b[1:]} fused {label} vs none: "
                             + verdict(accs[label], accs["none"]))

    body = "\n".join([
        "## fused_mbconv: Fused-MBConv in stages 1-3 / 1-5 / all / none (V2 Table 3 spirit)",
        "",
        header,
        "",
        f"Bases: V1 {', '.join(args.bases.split(','))} shrunk by phi={args.phi:g} at {args.size} px. "
        f"CIFAR-10 subset: {args.train_per_class * 10} train / {args.val_per_class * 10} test "
        f"images, `short` recipe, {args.epochs} epochs, {args.seeds} seeds; img/s: one train step "
        f"(forward, loss, backward, SGD) at batch {args.batch}, {args.threads} thread(s): the median "
        f"of 5 rounds over the variants in turn (median of 5 steps each), on a CPU shared with "
        f"other jobs.",
        "",
        *rows,
        "",
        *[f"- {n}" for n in notes],
        "- Paper (B4, ImageNet, TPU/V100, SPEC E.7): fused stages 1-3 trains faster at equal or "
        "better accuracy; fusing every stage adds params and FLOPs and loses accuracy. The img/s "
        "here are this CPU's, not an accelerator's.",
    ])
    print(body)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", "fused_mbconv", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
