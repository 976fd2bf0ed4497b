"""Peak memory of training: effnet against timm, each arm in a fresh process, side by side.

    .venv/bin/python benchmarks/memory.py [--models efficientnet_b0,efficientnetv2_s,efficientnet_lite0]
                                          [--batch 32] [--size 224] [--steps 10] [--threads 2]

Each arm is a new Python process that builds the model (random init, 1000 classes, float32, the
same threads), then takes `--steps` AdamW steps on one fixed random batch with cross-entropy, and
reports its peak resident set size (`ru_maxrss`), the resident size before the first step (the
interpreter, torch and the model) and the median step time. Arms:

- timm: `timm.create_model(name)` with its defaults;
- effnet: `effnet.create_model(name)` trained as `effnet train` trains it from scratch (every
  preset but `finetune`): recompute "activations" (src/effnet/nn/recompute.py: the backward pass
  recomputes BatchNorm, activations and squeeze-excite from the saved convolution outputs);
- effnet --recompute off: what that saves (the `finetune` preset's default: time over memory);
- effnet --grad-checkpointing: recompute whole blocks (timm has the same flag, off by default).

The results replace the `memory` section of BENCHMARKS.md (`--no-write` to skip).
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import statistics
import subprocess
import sys
import time

from _bench import ROOT, stamp, write_section

ARMS = {  # arm -> (library, recompute mode for effnet)
    "timm": ("timm", None),
    "effnet": ("effnet", "activations"),
    "effnet --recompute off": ("effnet", "off"),
    "effnet --grad-checkpointing": ("effnet", "blocks"),
}


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def child(arm: str, name: str, batch: int, size: int, steps: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    lib, mode = ARMS[arm]
    if lib == "timm":
        import timm

        model = timm.create_model(name)
    else:
        import effnet

        model = effnet.create_model(name)
        model.set_recompute(mode)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 1000, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()
    before = _rss_mib()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_mib": peak, "before_mib": before, "step_s": statistics.median(times),
            "loss": float(loss)}


def run_arm(arm: str, name: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", arm, "--models", name, "--batch", str(args.batch),
           "--size", str(args.size), "--steps", str(args.steps), "--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT / "benchmarks")
    if done.returncode != 0:
        raise SystemExit(f"{arm} {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="efficientnet_b0,efficientnetv2_s,efficientnet_lite0")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.models, args.batch, args.size, args.steps, args.threads)))
        return 0
    cmd = "python benchmarks/memory.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    header = stamp(cmd.strip())
    rows = ["| model | arm | peak RSS MiB | before the first step MiB | training adds MiB | "
            "vs timm (peak) | median step s |", "|---|---|---|---|---|---|---|"]
    verdicts = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        results = {}
        for arm in ARMS:
            results[arm] = r = run_arm(arm, name, args)
            print(f"{name} {arm}: {r}", flush=True)
        timm_peak = results["timm"]["peak_mib"]
        for arm, r in results.items():
            rows.append(f"| {name} | {arm} | {r['peak_mib']:.0f} | {r['before_mib']:.0f} | "
                        f"{r['peak_mib'] - r['before_mib']:.0f} | {r['peak_mib'] / timm_peak:.2f}x | "
                        f"{r['step_s']:.2f} |")
        ratio = results["effnet"]["peak_mib"] / timm_peak
        verdicts.append(f"{name}: effnet's default peak is {ratio:.2f}x timm's "
                        f"({'met' if ratio <= 0.8 else 'NOT met'}; goal <= 0.80x); its step takes "
                        f"{results['effnet']['step_s'] / results['effnet --recompute off']['step_s']:.2f}x "
                        f"the time of --recompute off")
    body = "\n".join([
        f"## memory: peak resident memory of {args.steps} training steps, effnet vs timm",
        "",
        header,
        "",
        f"Batch {args.batch} at {args.size} px, float32, AdamW, {args.threads} threads, "
        f"{args.steps} steps, each arm in a fresh process (module docstring).",
        "",
        *rows,
        "",
        *[f"- {v}." for v in verdicts],
    ])
    print("\n" + body)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", "memory", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
