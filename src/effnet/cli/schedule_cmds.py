"""`effnet schedule`: print a progressive-learning schedule without training."""

from __future__ import annotations

import argparse

from ..errors import UserError
from . import commands
from .argtypes import nonneg_int, positive_int


def add_plan_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared with `effnet train --progressive`."""
    p.add_argument("--stages", type=positive_int, default=None, help="number of stages M")
    p.add_argument("--size", default=None, help="image size START:END in pixels (128:300) or as "
                   "fractions of the eval size (0.57:0.86)")
    p.add_argument("--randaug", default=None, help="RandAugment magnitude START:END")
    p.add_argument("--mixup", default=None, help="Mixup alpha START:END")
    p.add_argument("--cutmix", default=None, help="CutMix alpha START:END")
    p.add_argument("--dropout", default=None, help="dropout rate START:END")
    p.add_argument("--convention", choices=("paper", "code"), default=None)
    p.add_argument("--size-divisor", type=nonneg_int, default=None, help="round intermediate sizes (0: off)")


PLAN_FLAGS = ("stages", "size", "randaug", "mixup", "cutmix", "dropout", "convention", "size_divisor")


def plan_from_args(preset: str | None, args):
    """A preset by name, changed by any explicit flags; or a plan from flags alone (the same text
    form `effnet train --progressive` takes)."""
    from ..train.progressive import PRESETS, plan_from_text

    if preset and preset not in PRESETS:
        raise UserError(f"unknown schedule {preset!r}; choose from {', '.join(PRESETS)}")
    if not preset and args.size is None:
        raise UserError("give a preset (e.g. v2-s) or at least --size START:END")
    flags = [f"{k}={getattr(args, k)}" for k in PLAN_FLAGS if getattr(args, k) is not None]
    try:
        return plan_from_text(",".join(([preset] if preset else []) + flags))
    except ValueError as e:
        raise UserError(str(e)) from None


def register(sub: argparse._SubParsersAction) -> None:
    p = commands.add(sub, "schedule")
    p.add_argument("preset", nargs="?", default=None,
                   help="v2-s, v2-m, v2-l (paper Table 6) or v2-s-code ... (released code)")
    add_plan_flags(p)
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="list each stage's epochs in a run of N epochs, as training assigns them")
    p.add_argument("--eval-size", type=positive_int, default=None,
                   help="the model's eval size, for sizes given as fractions of it")
    p.set_defaults(run=cmd_schedule)


def cmd_schedule(args) -> int:
    from ..train.progressive import table

    try:
        print(table(plan_from_args(args.preset, args), args.epochs, args.eval_size))
    except ValueError as e:
        raise UserError(str(e)) from None
    return 0
