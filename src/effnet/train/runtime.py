"""The process-wide settings a run changes (intra-op threads, deterministic algorithms, cuDNN
autotuning) and the seeds it sets. `RunRuntime` sets them for the length of a run and gives the
caller its own back afterwards: the searches train many candidates in one process, and a library
call must not leave torch configured differently from how it found it."""

from __future__ import annotations

import os
import random

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
        if self.device.type == "cpu":
            torch.set_num_threads(cpu_threads(self.threads))
        return self

    def __exit__(self, *exc) -> None:
        threads, deterministic, benchmark = self._saved
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.benchmark = benchmark
