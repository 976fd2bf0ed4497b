"""CPU training steps with glibc's malloc as it comes against effnet's `HeldHeap`, which a CPU run
enters with EFFNET_HOLD_HEAP=1 (src/effnet/train/runtime.py: freed memory stays in the heap for
the next step instead of being unmapped and faulted in again).

    .venv/bin/python benchmarks/heap.py [--steps 6] [--repeats 2]

Each arm is a fresh Python process (malloc's settings are process-wide, and glibc's adaptive mmap
threshold never comes back once set), taken in the order defaults, held, held, defaults, ... so
drift in the machine's load hits both alike. A process builds the model (random init, float32),
takes 2 warm-up AdamW steps on one fixed random batch, then `--steps` timed ones, and reports the
median step time, the minor page faults and system CPU time per timed step, and its peak resident
set size. Setups: the progressive benchmark's network (V2-B0 shrunk by phi -4, 10 classes, batch
64, 1 thread) at its smallest and largest train size, and the memory benchmark's B0 (1000
classes, batch 32, 224 px, 2 threads); nothing recomputed. The results replace the `heap` section
of BENCHMARKS.md (`--no-write` to skip).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys

from _bench import ROOT, stamp, write_section

SETUPS = {  # name -> (model, phi, classes, batch, size, threads)
    "V2-B0 phi -4, batch 64, 64 px, 1 thread": ("efficientnetv2_b0", -4.0, 10, 64, 64, 1),
    "V2-B0 phi -4, batch 64, 128 px, 1 thread": ("efficientnetv2_b0", -4.0, 10, 64, 128, 1),
    "B0, batch 32, 224 px, 2 threads": ("efficientnet_b0", None, 1000, 32, 224, 2),
}
ARMS = ("glibc defaults", "HeldHeap")


def child(setup: str, arm: str, steps: int) -> dict:
    import contextlib
    import resource
    import time

    import torch

    from effnet.models import make_model
    from effnet.train.runtime import HeldHeap

    model_name, phi, classes, batch, size, threads = SETUPS[setup]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = make_model(model_name, num_classes=classes, phi=phi)
    model.set_recompute("off")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, classes, (batch,))

    def step() -> float:
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    with HeldHeap() if arm == "HeldHeap" else contextlib.nullcontext() as held:
        if arm == "HeldHeap" and held.libc is None:
            raise SystemExit("HeldHeap does nothing here (not glibc, or MALLOC_* / GLIBC_TUNABLES / "
                             "LD_PRELOAD set): nothing to compare")
        for _ in range(2):
            step()
        before = resource.getrusage(resource.RUSAGE_SELF)
        times = [step() for _ in range(steps)]
        after = resource.getrusage(resource.RUSAGE_SELF)
    return {"step_ms": 1e3 * statistics.median(times),
            "faults": (after.ru_minflt - before.ru_minflt) / steps,
            "sys_ms": 1e3 * (after.ru_stime - before.ru_stime) / steps,
            "peak_mib": after.ru_maxrss / 1024}


def run_arm(setup: str, arm: str, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--child", setup, "--arm", arm, "--steps", str(steps)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT / "benchmarks")
    if done.returncode != 0:
        raise SystemExit(f"{setup} / {arm} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--repeats", type=int, default=2, help="processes per arm and setup")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--arm", default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.arm, args.steps)))
        return 0
    header = stamp(shlex.join(["python", "benchmarks/heap.py", *argv]))
    rows = ["| setup | arm | median step ms | page faults per step | system ms per step | "
            "peak RSS MiB |", "|---|---|---|---|---|---|"]
    speedups = []
    for setup in SETUPS:
        results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
        for k in range(args.repeats):
            for arm in ARMS if k % 2 == 0 else ARMS[::-1]:
                results[arm].append(r := run_arm(setup, arm, args.steps))
                print(f"{setup} / {arm}: {r}", flush=True)
        med = {arm: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
               for arm, rs in results.items()}
        for arm, m in med.items():
            rows.append(f"| {setup} | {arm} | {m['step_ms']:.0f} | {m['faults']:.0f} | "
                        f"{m['sys_ms']:.0f} | {m['peak_mib']:.0f} |")
        speedups.append(f"{setup}: HeldHeap's steps are "
                        f"{med[ARMS[0]]['step_ms'] / med[ARMS[1]]['step_ms']:.2f}x as fast, at "
                        f"{med[ARMS[1]]['peak_mib'] / med[ARMS[0]]['peak_mib']:.2f}x the peak RSS")
    body = "\n".join([
        "## heap: CPU training steps with glibc's malloc defaults vs effnet's HeldHeap",
        "",
        header,
        "",
        f"{args.steps} timed AdamW steps after 2 warm-up ones, float32, each arm in a fresh process, "
        f"{args.repeats} process(es) per arm, medians over them (module docstring).",
        "",
        *rows,
        "",
        *[f"- {s}." for s in speedups],
    ])
    print("\n" + body)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", "heap", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
