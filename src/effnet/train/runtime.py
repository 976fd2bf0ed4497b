"""The process-wide settings a run changes (intra-op threads, deterministic algorithms, cuDNN
autotuning, glibc's malloc on the CPU) and the seeds it sets. `RunRuntime` sets them for the
length of a run and gives the caller its own back afterwards: the searches train many candidates
in one process, and a library call must not leave the process configured differently from how it
found it."""

from __future__ import annotations

import ctypes
import os
import random
import sys

import numpy as np
import torch


def cpu_threads(requested: int | None = None) -> int:
    """Intra-op threads for CPU training: --threads, else torch's default (OMP_NUM_THREADS or the
    machine's cores). A guess from the load average picked 1 thread of 2 on an idle machine that
    had just been busy and halved a fine-tune's speed; on a machine shared with other jobs, pass
    --threads (OpenMP threads that must wait for a busy core spin at every barrier)."""
    return requested or torch.get_num_threads()


def seed_all(seed: int) -> None:
    """Seed torch, Python's and NumPy's global generators."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
# What a run leaves behind. Any mallopt of these freezes glibc's adaptive thresholds for good, so
# the exit sets the state they adapt to in a process that frees large blocks (mmap threshold at
# its 32 MiB ceiling, trim threshold twice that), not the 128 KiB start, where every block above
# 128 KiB would be mapped afresh from then on.
_AFTER_RUN = {_M_MMAP_MAX: 65536, _M_MMAP_THRESHOLD: 32 * 2**20, _M_TRIM_THRESHOLD: 64 * 2**20}


def _glibc():
    """The C library if it is glibc on Linux and the user left its malloc alone (no MALLOC_*
    variables, no GLIBC_TUNABLES, no other allocator preloaded), else None."""
    if not sys.platform.startswith("linux") or any(
            k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "LD_PRELOAD") for k in os.environ):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version, libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc's own names)
    except (OSError, AttributeError, TypeError):  # musl has no gnu_get_libc_version
        return None
    return libc


class HeldHeap:
    """Context manager: glibc keeps the memory a CPU training step frees, for the next step.

    By default glibc serves every block above its mmap threshold (at most 32 MiB) with a fresh
    mmap and unmaps it on free, so each step's large activations and gradients fault their pages
    in again, zeroed by the kernel, as often as the heap's history makes glibc's adaptive
    threshold fall short. In one probe process a V2-B0 train step (phi -4, batch 64, AdamW, 1
    thread, 128 px) took 53,500 page faults and 79 of its 309 ms in the kernel, and 229 ms without
    them; fresh processes of benchmarks/heap.py took about 2,000 faults for the same step.
    PyTorch's CPU tuning guide gets the same by preloading jemalloc or tcmalloc, which a pip
    install cannot do. Only the main thread's heap holds its memory: glibc still maps blocks above
    64 MiB afresh in other threads' arenas. On exit the held memory goes back to the system and
    malloc is left as `_AFTER_RUN` says. Nothing happens off Linux, on other C libraries, or when
    the user configured malloc.

    Opt-in (EFFNET_HOLD_HEAP=1) for CPU runs: benchmarks/heap.py measured B0 (batch 32, 224 px)
    at 1.23x the step speed but 1.21x the peak RSS, which would cost the memory goal
    (BENCHMARKS.md `memory`: effnet at 0.68-0.71x timm's peak, goal <= 0.8x); fresh V2-B0
    processes gained 1-3 %, while a long run whose heap history went wrong gained 1.47x."""

    def __enter__(self) -> HeldHeap:
        self.libc = _glibc()
        if self.libc is not None:
            self.libc.mallopt(_M_MMAP_MAX, 0)
            self.libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)  # an int: 2 GiB
        return self

    def __exit__(self, *exc) -> None:
        if self.libc is not None:
            for param, value in _AFTER_RUN.items():
                self.libc.mallopt(param, value)
            self.libc.malloc_trim(0)


class RunRuntime:
    """Context manager: threads / determinism / cuDNN benchmark for a run on `device`, restored on
    exit (seeds are the run's business: its checkpoint restores the generators' states)."""

    def __init__(self, device: torch.device, threads: int | None, deterministic: bool):
        self.device, self.threads, self.deterministic = device, threads, deterministic

    def __enter__(self) -> RunRuntime:
        self._saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                       torch.backends.cudnn.benchmark)
        if self.deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self._heap = None
        if self.device.type == "cpu":
            torch.set_num_threads(cpu_threads(self.threads))
            if os.environ.get("EFFNET_HOLD_HEAP") == "1":  # opt-in: HeldHeap's memory cost
                self._heap = HeldHeap().__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._heap is not None:
            self._heap.__exit__(*exc)
        threads, deterministic, benchmark = self._saved
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.benchmark = benchmark
