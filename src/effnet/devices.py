"""Where and in what precision a model runs: the device a `--device` flag names and the autocast
dtype an `--amp` name stands for. Training, evaluation, profiling and export all ask here."""

from __future__ import annotations

import contextlib

import torch

from .errors import UserError

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
AMP_ALIASES = {"fp32": "none", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}  # torch's names


def amp_dtype(name: str) -> torch.dtype | None:
    """The autocast dtype an AMP name (or its torch alias) stands for; None: full precision."""
    key = AMP_ALIASES.get(name.lower(), name.lower())
    if key not in AMP_DTYPES:
        raise UserError(f"unknown autocast dtype {name!r}; use one of "
                        f"{', '.join([*AMP_DTYPES, *AMP_ALIASES])}")
    return AMP_DTYPES[key]


def autocast(device: torch.device, amp: str):
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def pick_device(name: str | None, local_rank: int = 0) -> torch.device:
    """The device a `--device` flag names (None / "auto": the local GPU if any, else the CPU);
    UserError for a name torch does not know or a device this machine does not have."""
    if name in (None, "auto"):
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
        if dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    elif dev.type != "cpu":
        try:  # mps, xpu, meta, ...: usable only where a tensor can be made there
            torch.empty(1, device=dev) + 1
        except (RuntimeError, AssertionError, NotImplementedError):
            raise UserError(f"--device {name}: not available on this machine") from None
        if dev.type == "meta":
            raise UserError(f"--device {name}: the meta device holds no data; use cpu or cuda")
    return dev
