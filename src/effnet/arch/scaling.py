"""Compound scaling (V1 paper section 3): a pure function from spec to spec.

`compound(phi, alpha, beta, gamma)` gives the multipliers d = alpha^phi, w = beta^phi, r = gamma^phi;
`scale(spec, width=, depth=)` applies the first two with the family's rounding rules. Resolution is
not part of a spec (image sizes belong to the weights' data config): the scaled size is a value
scaling returns, `Multipliers.scaled_size(base size)`, for the caller to use.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import UserError
from .spec import NetSpec, Stem, round_channels, round_repeats

PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA = 1.2, 1.1, 1.15

# Far beyond any published network (EfficientNet-L2: ~90 blocks, 5,504 channels, 800 px) and beyond
# what fits in memory: a scaled spec past one of these is refused before any module is built
# (phi=40 on B0 asks for ~23,000 blocks of up to 57,000 channels at 60,000 px).
MAX_BLOCKS, MAX_CHANNELS, MAX_RESOLUTION = 2000, 65536, 16384


@dataclass(frozen=True)
class Multipliers:
    depth: float
    width: float
    resolution: float

    @property
    def flops_factor(self) -> float:
        """The ideal FLOPs growth d * w^2 * r^2 that compound scaling aims at 2^phi."""
        return self.depth * self.width**2 * self.resolution**2

    def scaled_size(self, base_size: int) -> int:
        """The image size the network scaled by these multipliers takes, from its base's size;
        ValueError beyond what any network here is built for."""
        size = scale_resolution(base_size, self.resolution)
        if size > MAX_RESOLUTION:
            raise ValueError(f"a {size:,} px input is too large to build "
                             f"(limit {MAX_RESOLUTION:,})")
        return size


def compound(phi: float, alpha: float = PAPER_ALPHA, beta: float = PAPER_BETA,
             gamma: float = PAPER_GAMMA) -> Multipliers:
    if not all(math.isfinite(v) for v in (phi, alpha, beta, gamma)):
        raise ValueError(f"phi, alpha, beta, gamma must be finite (got {phi}, {alpha}, {beta}, {gamma})")
    if min(alpha, beta, gamma) < 1.0:
        raise ValueError(f"alpha, beta, gamma must be >= 1 (got {alpha}, {beta}, {gamma})")
    return Multipliers(depth=alpha**phi, width=beta**phi, resolution=gamma**phi)


def scale_resolution(size: int, multiplier: float, divisor: int = 1) -> int:
    """Resolution scaled and rounded to the nearest multiple of `divisor`. The released sizes
    follow no divisor (260, 300, 380), so by default this is the nearest integer."""
    return max(divisor, int(round(size * multiplier / divisor)) * divisor)


def _check_buildable(name: str, blocks: int, channels: int) -> None:
    too_big = [f"{what} {have:,} (limit {limit:,})" for what, have, limit in (
        ("blocks", blocks, MAX_BLOCKS), ("channels", channels, MAX_CHANNELS)) if have > limit]
    if too_big:
        raise ValueError(f"{name} is too large to build: {', '.join(too_big)}")


def scale(spec: NetSpec, width: float = 1.0, depth: float = 1.0, dropout: float | None = None,
          name: str | None = None, depth_rounding: str = "ceil") -> NetSpec:
    """Scale every stage's width and depth with the spec's rounding rules; stem and head too,
    unless the family fixes them (Lite)."""
    r = spec.rounding
    last = len(spec.stages) - 1
    stages = []
    for i, st in enumerate(spec.stages):
        keep_depth = r.fixed_end_repeats and i in (0, last)
        stages.append(replace(
            st,
            out=round_channels(st.out, width, r),
            repeats=st.repeats if keep_depth else round_repeats(st.repeats, depth, depth_rounding),
        ))
    stem_out = spec.stem.out if r.fixed_stem_head else round_channels(spec.stem.out, width, r)
    head = spec.head if (r.fixed_stem_head or not spec.head) else round_channels(spec.head, width, r)
    _check_buildable(name or spec.name, sum(st.repeats for st in stages),
                     max(stem_out, head or 0, *(st.out for st in stages)))
    return replace(
        spec,
        name=name or spec.name,
        stem=Stem(stem_out, spec.stem.kernel, spec.stem.stride, spec.stem.kind),
        stages=tuple(stages),
        head=head,
        dropout=spec.dropout if dropout is None else dropout,
    )


def scale_compound(spec: NetSpec, phi: float, alpha: float = PAPER_ALPHA,
                   beta: float = PAPER_BETA, gamma: float = PAPER_GAMMA,
                   depth_rounding: str = "round") -> tuple[NetSpec, Multipliers]:
    """Apply the compound rule for any real phi; returns the spec and the multipliers used (the
    scaled image size is `multipliers.scaled_size(base size)`).

    Depth rounds to the nearest integer here, not up as the released variants do: a ceiling turns
    every 1-layer stage into 2 layers at any phi > 0 (B0 at phi=1: 23 blocks instead of 19.2), which
    overshoots the 2^phi FLOPs target the rule is built for (+11 % at phi=1 against +3 %).
    `depth_rounding="ceil"` reproduces the TPU rounding.
    """
    if not math.isfinite(phi):
        raise ValueError(f"phi must be a finite number (got {phi})")
    m = compound(phi, alpha, beta, gamma)
    scaled = scale(spec, width=m.width, depth=m.depth, name=f"{spec.name}-phi{phi:g}",
                   depth_rounding=depth_rounding)
    return scaled, m


def scale_by(spec: NetSpec, phi: float | None = None, width: float | None = None,
             depth: float | None = None) -> tuple[NetSpec, Multipliers]:
    """A spec compound-scaled by `phi` (the paper's coefficients) or scaled by width/depth
    multipliers, and the multipliers used (resolution 1 for width/depth); unchanged without any."""
    if phi is not None and (width is not None or depth is not None):
        raise ValueError("give either phi or width/depth multipliers, not both")
    if phi is not None:
        return scale_compound(spec, phi)
    if width is None and depth is None:
        return spec, Multipliers(1.0, 1.0, 1.0)
    w, d = width or 1.0, depth or 1.0
    if w <= 0 or d <= 0:
        raise ValueError(f"width and depth multipliers must be > 0 (got {w}, {d})")
    return scale(spec, width=w, depth=d, name=f"{spec.name}-w{w:g}-d{d:g}"), Multipliers(d, w, 1.0)


def read_coeffs(path: Path | None) -> tuple[float, float, float]:
    """alpha, beta, gamma from a JSON file (a search's best.json), the paper's without one;
    UserError when the file is not such JSON."""
    if path is None:
        return PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA
    try:
        c = json.loads(Path(path).read_text())
        vals = float(c["alpha"]), float(c["beta"]), float(c["gamma"])
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a JSON file of alpha, beta, gamma") from None
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: expected JSON with alpha, beta, gamma ({e})") from None
    if not all(math.isfinite(v) for v in vals) or min(vals) < 1:
        raise UserError(f"{path}: alpha, beta, gamma must be finite and >= 1 (got {vals})")
    return vals
