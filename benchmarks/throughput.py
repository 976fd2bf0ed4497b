"""Throughput of effnet vs timm vs torchvision, same architecture, side by side in one process.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/throughput.py

For EfficientNet-B0 and EfficientNetV2-S, each library builds its own model (random weights, same
architecture, dropout 0.2 and stochastic depth 0.2 for all) and is timed on the same input for
inference (eval, inference_mode) and a train step (forward + cross-entropy + backward + SGD with
momentum), in NCHW and channels_last. Rounds interleave the peers (A B C A B C ...) so drift in
the machine's speed (other jobs, clocks) falls on all of them alike; the table reports the median
images/s of the rounds and effnet's ratio to the fastest peer. Same threads, precision, batch and
mode for all. On a GPU (`--device cuda`) the same runs use bf16 autocast.

The results replace the `throughput` section of BENCHMARKS.md (`--no-write` to skip).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
import torchvision
from _bench import stamp, write_section

import effnet
from effnet.tools.fuse import fuse_conv_bn

ROOT = Path(__file__).resolve().parents[1]
FUSED = "effnet fused"
NOTE = ("Reading it: in `nchw` rows effnet is ahead because of its CPU channels_last default (oneDNN "
        "otherwise reorders NCHW at every conv); in `channels_last` rows all three run the same op "
        "sequence (conv, BN, SiLU, SE mean/gate, drop path), so they tie within noise. BN takes "
        "10-30 % of B0's CPU inference time in torch.profiler; `fuse_conv_bn` folds it away.")

# model key -> (effnet name, timm name, torchvision builder name)
PAIRS = {
    "b0": ("efficientnet_b0", "efficientnet_b0", "efficientnet_b0"),
    "v2s": ("efficientnetv2_s", "efficientnetv2_s", "efficientnet_v2_s"),
}
# (size, batch) per model: CPU defaults keep the whole run within minutes on 2 cores
DEFAULTS = {"cpu": {"b0": (224, 8), "v2s": (224, 4)}, "cuda": {"b0": (224, 256), "v2s": (384, 64)}}


def build(lib: str, key: str, drop: float) -> torch.nn.Module:
    ours, timm_name, tv_name = PAIRS[key]
    if lib == "effnet":
        return effnet.create_model(ours, drop_rate=drop, drop_path_rate=drop)
    if lib == "timm":
        return timm.create_model(timm_name, drop_rate=drop, drop_path_rate=drop)
    return getattr(torchvision.models, tv_name)(dropout=drop, stochastic_depth_prob=drop)


class Runner:
    """One library's model, input and optimizer, with one callable per mode."""

    def __init__(self, model, x, amp, channels_last: bool):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(x.device, memory_format=fmt)
        self.x = x.contiguous(memory_format=fmt)
        self.y = torch.randint(0, 1000, (x.shape[0],), device=x.device)
        self.amp = amp
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-4, momentum=0.9)

    def autocast(self):
        return torch.autocast(self.x.device.type, dtype=self.amp, enabled=self.amp is not None)

    def infer(self) -> None:
        self.model.eval()
        with torch.inference_mode(), self.autocast():
            self.model(self.x)

    def train(self) -> None:
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        with self.autocast():
            out = self.model(self.x)
        F.cross_entropy(out.float(), self.y).backward()
        self.opt.step()


def time_interleaved(runners: dict[str, Runner], mode: str, warmup: int, rounds: int, iters: int,
                     sync) -> dict[str, float]:
    """Median seconds per iteration of each runner, rounds interleaved across runners."""
    for r in runners.values():
        for _ in range(warmup):
            getattr(r, mode)()
    sync()
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(rounds):
        for name, r in runners.items():
            fn = getattr(r, mode)
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            sync()
            times[name].append((time.perf_counter() - t0) / iters)
    return {k: statistics.median(v) for k, v in times.items()}


def versions(device: torch.device) -> str:
    """What _bench.stamp's machine line leaves out: the GPU and the libraries' versions."""
    gpu = f"GPU: {torch.cuda.get_device_name(device)}; " if device.type == "cuda" else ""
    return (f"{gpu}torch {torch.__version__}, timm {timm.__version__}, "
            f"torchvision {torchvision.__version__}; torch threads {torch.get_num_threads()}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="b0,v2s", help="comma list of: " + ", ".join(PAIRS))
    p.add_argument("--libs", default="effnet,timm,torchvision")
    p.add_argument("--device", default="cpu", help="cpu, cuda, or auto (cuda when available)")
    p.add_argument("--b0-size", type=int)
    p.add_argument("--b0-batch", type=int)
    p.add_argument("--v2s-size", type=int)
    p.add_argument("--v2s-batch", type=int)
    p.add_argument("--modes", default="infer,train")
    p.add_argument("--formats", default="nchw,channels_last")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations per peer before the rounds")
    p.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds")
    p.add_argument("--iters", type=int, default=1, help="iterations per round")
    p.add_argument("--drop", type=float, default=0.2, help="dropout and stochastic depth for all peers")
    p.add_argument("--no-fused", action="store_true",
                   help="skip the extra inference column for effnet with BN folded (fuse_conv_bn)")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but no GPU is available")
    amp = torch.bfloat16 if device.type == "cuda" else None
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    libs = args.libs.split(",")
    fused = not args.no_fused and "effnet" in libs
    env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    stamped = stamp((env + ".venv/bin/python benchmarks/throughput.py "  # the commit that runs
                    + shlex.join(sys.argv[1:] if argv is None else argv)).strip())
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    rows = []
    for key in args.models.split(","):
        size, batch = DEFAULTS[device.type][key]
        size = getattr(args, f"{key}_size") or size
        batch = getattr(args, f"{key}_batch") or batch
        torch.manual_seed(0)
        x = torch.randn(batch, 3, size, size, device=device)
        for fmt in args.formats.split(","):
            runners = {}
            for lib in libs:
                torch.manual_seed(0)
                runners[lib] = Runner(build(lib, key, args.drop), x, amp, fmt == "channels_last")
            if fused and "effnet" in runners:
                runners[FUSED] = Runner(fuse_conv_bn(runners["effnet"].model), x, amp, fmt == "channels_last")
            # one untimed step of each kind first: the allocator settles (glibc raises its mmap
            # threshold after the first large frees), so the first row measured is not penalised
            modes = args.modes.split(",")
            for r in runners.values():
                for mode in modes:
                    getattr(r, mode)()
            sync()
            for mode in modes:
                timed = {k: r for k, r in runners.items() if k != FUSED or mode == "infer"}
                secs = time_interleaved(timed, mode, args.warmup, args.rounds, args.iters, sync)
                ips = {k: batch / s for k, s in secs.items()}
                peers = [v for k, v in ips.items() if k not in ("effnet", FUSED)]
                ratio = ips["effnet"] / max(peers) if "effnet" in ips and peers else float("nan")
                rows.append((PAIRS[key][0], size, batch, mode, fmt, ips, ratio))
                print(f"{PAIRS[key][0]:18s} {size} x{batch:<4d} {mode:5s} {fmt:14s} "
                      + "  ".join(f"{k} {v:8.1f}" for k, v in ips.items()) + f"  ratio {ratio:.2f}",
                      flush=True)
            del runners
    elapsed = time.perf_counter() - started
    load_after = os.getloadavg()[0]

    precision = "bf16 autocast" if amp else "fp32"
    cols = libs + ([FUSED] if fused else [])
    header = "| model | size | batch | mode | format | " + " | ".join(f"{c} img/s" for c in cols) \
        + " | effnet / fastest peer |"
    lines = [
        "## Throughput: effnet vs timm vs torchvision",
        "",
        stamped,
        "",
        f"{versions(device)}; device {device.type}, {precision}; run took {elapsed / 60:.1f} min; "
        f"1-min load average {load_before:.1f} before, "
        f"{load_after:.1f} after (other jobs on the machine slow every peer and add noise)",
        "",
        f"Method: median images/s of {args.rounds} interleaved rounds (A B C A B C ...) of {args.iters} "
        f"iteration(s) after {args.warmup} warm-up iterations; dropout = stochastic depth = {args.drop} "
        "for all; same input, batch, threads and precision for all. `train` = forward + cross-entropy "
        "+ backward + SGD (momentum) step; `infer` = eval forward under inference_mode. "
        "`nchw`: NCHW input, each model as its library builds it (effnet's CPU default "
        "`EfficientNet.cpu_channels_last` runs the convs channels_last inside the forward); "
        "`channels_last`: model and input converted with `.to(memory_format=torch.channels_last)`.",
    ]
    if fused:
        lines.append(f"`{FUSED}`: inference only, the effnet model after `effnet.tools.fuse.fuse_conv_bn` "
                     "(BN folded into the convs, an opt-in export/inference step; not in the ratio).")
    lines += ["", header, "|" + "---|" * (6 + len(cols))]
    for name, size, batch, mode, fmt, ips, ratio in rows:
        cells = " | ".join(f"{ips[c]:.1f}" if c in ips else "–" for c in cols)
        lines.append(f"| {name} | {size} | {batch} | {mode} | {fmt} | {cells} | {ratio:.2f} |")
    lines += ["", NOTE]
    body = "\n".join(lines) + "\n"
    print(body)
    if not args.no_write:
        write_section(args.output, "throughput", body)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
