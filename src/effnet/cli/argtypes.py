"""argparse value types that refuse NaN, infinities and out-of-range numbers while the flags are
parsed, before any heavy import: `effnet scale --phi nan` answers in a fraction of a second."""

from __future__ import annotations

import argparse
import math


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _int_at_least(low: int, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low} (got {value})")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(1, text)


def nonneg_int(text: str) -> int:
    return _int_at_least(0, text)
