"""The trainer's smaller parts, each on its own: the runtime context (train/runtime.py), the run
options' checks (train/options.py) and the run report (train/report.py). What a resume may change
and the refusal of a non-empty new run directory are the run directory's: tests/test_rundir.py."""

import json
import os
import platform
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from effnet.errors import UserError
from effnet.train.options import RunOptions
from effnet.train.report import EpochProgress, print_epoch
from effnet.train.runtime import RunRuntime, seed_all


def test_runtime_sets_threads_and_determinism_and_restores_them():
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
              torch.backends.cudnn.benchmark)
    want = 1 if before[0] != 1 else 2
    with RunRuntime(torch.device("cpu"), threads=want, deterministic=not before[1]):
        assert torch.get_num_threads() == want
        assert torch.are_deterministic_algorithms_enabled() == (not before[1])
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
            torch.backends.cudnn.benchmark) == before
    with pytest.raises(RuntimeError), RunRuntime(torch.device("cpu"), threads=want, deterministic=False):
        raise RuntimeError("a failed run restores them too")
    assert torch.get_num_threads() == before[0]


# What glibc does with a 64 MiB tensor inside a CPU run's runtime and after it, from its own books
# (mallinfo2: bytes in mmapped blocks) and the resident size, in a fresh process.
_HEAP_BOOKS = """
import ctypes, json, torch
from effnet.train.runtime import HeldHeap, RunRuntime

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                     "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2

def mapped_with_a_tensor():
    t = torch.ones(16 * 2**20)  # 64 MiB, freed on return
    return libc.mallinfo2().hblkhd

def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

with RunRuntime(torch.device("cpu"), threads=1, deterministic=False):
    inside = mapped_with_a_tensor()
with HeldHeap():  # on its own: leaving RunRuntime may load cuDNN, which adds to the resident size
    mapped_with_a_tensor()
    held = rss()
print(json.dumps({"inside": inside, "given_back": held - rss(), "after": mapped_with_a_tensor()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="glibc's malloc only")
def test_cpu_run_keeps_freed_memory_in_the_heap_and_gives_it_back_after():
    # a fresh process: malloc's settings are process-wide; the user's own malloc settings switch
    # the feature off, so none of them reach it
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "LD_PRELOAD"))}
    env["EFFNET_HOLD_HEAP"] = "1"  # opt-in
    done = subprocess.run([sys.executable, "-c", _HEAP_BOOKS], env=env, capture_output=True, text=True)
    if "mallinfo2" in done.stderr:
        pytest.skip("glibc older than 2.33 (no mallinfo2)")
    assert done.returncode == 0, done.stderr[-2000:]
    books = json.loads(done.stdout)
    block = 64 * 2**20
    assert books["inside"] < block, books  # the run's tensor came from the heap, not a fresh mmap
    assert books["given_back"] > block * 3 // 4, books  # freed, it stayed resident until the end
    assert books["after"] >= block, books  # then glibc maps such a block afresh again


def test_seed_all_repeats_the_draws():
    seed_all(3)
    a = (torch.rand(4), random.random(), float(np.random.rand()))
    seed_all(3)
    b = (torch.rand(4), random.random(), float(np.random.rand()))
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def test_run_options_refuse_bad_values():
    with pytest.raises(UserError, match="--amp"):
        RunOptions(amp="fp8")
    with pytest.raises(UserError, match="--threads must be >= 1"):
        RunOptions(threads=0)


def test_a_redirected_log_gets_a_line_per_tenth_of_the_epoch(capsys):
    p = EpochProgress(show=True, epoch=0, epochs=2, done=0, batches=20, images_per_batch=8)
    assert p.log_every == 2  # pytest's stdout is not a terminal: no bar redraws
    for b in range(1, 21):
        p.batch_done()
        p.step_done(b, step=b, last=b == 20, loss=torch.tensor(0.5), lr=1e-3, seconds=1.0)
    p.close()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 9 and lines[0].startswith("  epoch 1/2  batch 2/20  loss 0.5000")
    print_epoch({"epoch": 1, "train_loss": 1.0, "val_loss": 2.0, "top1": 50.0, "top5": 90.0,
                 "img_per_s": 100.0, "ema_top1": 51.0}, 2)
    assert "EMA top-1 51.00" in capsys.readouterr().out
