"""How and where a recipe runs: `RunOptions`, and which of its fields a resumed run may change."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from .evaluate import AMP_DTYPES

RESUMABLE_RECIPE_KEYS = ("epochs", "steps")  # a resumed run may be lengthened, nothing else


def _resumable(default: Any) -> Any:
    return dataclasses.field(default=default, metadata={"resumable": True})


@dataclass(frozen=True)
class RunOptions:
    """Where and how a recipe runs (none of this changes the maths of a CPU run). Fields made
    with `_resumable` may change when a run is resumed; the rest must be those of the run."""

    data: str | None = None  # None: built-in digits
    val_split: float | None = None
    download: bool = False
    strict: bool = False
    output: str | None = None  # run directory; default runs/<timestamp>-<model>
    resume: str | None = None
    weights: str | None = None  # initial weights (fine-tuning)
    pretrained: str | None = None  # published weights by tag (effnet.pretrained), with their preprocessing
    adapt: bool = False
    num_classes: int | None = None
    device: str | None = _resumable(None)  # auto: cuda:<local rank> when available
    amp: str = _resumable("none")  # none | bf16 | fp16
    channels_last: bool = _resumable(False)
    compile: bool = _resumable(False)
    # what the backward pass recomputes instead of keeping (nn/recompute.py): "activations" keeps
    # only convolution outputs, about half the activation memory for a few % more time; "blocks"
    # is timm's --grad-checkpointing; the numbers are the same in every mode
    recompute: str = _resumable("activations")
    workers: int | None = _resumable(None)  # None: 0 on CPU (in-process is fastest for small images), else 8
    threads: int | None = _resumable(None)  # CPU intra-op threads; None: see cpu_threads()
    ckpt_every_steps: int = _resumable(0)  # also checkpoint every N optimiser steps (0: at epoch ends only)
    deterministic: bool = _resumable(False)
    train_subset: int | None = None  # first N of a seeded shuffle of train (quick experiments)
    val_subset: int | None = None
    save_samples: int = _resumable(0)  # write N val images as PNG into RUN/samples (for a predict demo)
    progress: bool = _resumable(True)
    tensorboard: bool = _resumable(True)

    def __post_init__(self) -> None:
        if self.amp not in AMP_DTYPES:
            raise UserError(f"--amp must be one of {', '.join(AMP_DTYPES)} (got {self.amp!r})")
        from ..nn.recompute import MODES

        if self.recompute not in MODES:
            raise UserError(f"--recompute must be one of {', '.join(MODES)} (got {self.recompute!r})")
        for name in ("ckpt_every_steps", "save_samples"):
            if getattr(self, name) < 0:
                raise UserError(f"{name.replace('_', '-')} must be >= 0")
        for name in ("workers", "threads", "train_subset", "val_subset", "num_classes"):
            v = getattr(self, name)
            if v is not None and v < (0 if name == "workers" else 1):
                raise UserError(f"--{name.replace('_', '-')} must be >= {0 if name == 'workers' else 1}"
                                f" (got {v})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resumable_options() -> tuple[str, ...]:
    """The RunOptions a resumed run may change (device, threads, progress output, ...)."""
    return tuple(f.name for f in dataclasses.fields(RunOptions) if f.metadata.get("resumable"))
