"""The alpha/beta/gamma grid of V1 section 3 step 1, filtered by FLOPs as measured, not as hoped.

The rule `alpha * beta^2 * gamma^2 ~= 2` assumes FLOPs grow exactly as d * w^2 * r^2. Rounding
channels to multiples of 8, repeats to integers and sizes to pixels breaks that, most for small
bases, so every grid point that passes the cheap formula is scaled for real and its MACs counted
(`count_macs`, exact); only points whose measured ratio to the base is within `tolerance` of 2^phi
are candidates. Grid points that round to the same network are trained once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ..arch.conventions import default_preprocess
from ..arch.preprocess import Preprocess
from ..arch.scaling import scale_compound
from ..arch.spec import NetSpec
from ..errors import UserError

PREFILTER_FACTOR = 2.0  # the formula band is this times the MACs tolerance (rounding moves MACs)


@dataclass(frozen=True)
class GridPoint:
    alpha: float
    beta: float
    gamma: float

    @property
    def formula(self) -> float:
        """alpha * beta^2 * gamma^2, the FLOPs growth per unit phi the paper's rule assumes."""
        return self.alpha * self.beta**2 * self.gamma**2

    @property
    def key(self) -> str:
        return f"a{self.alpha:.4g}-b{self.beta:.4g}-g{self.gamma:.4g}"


@dataclass
class Candidate:
    """A grid point scaled for real: its network, resolution and measured MACs."""

    point: GridPoint
    spec: NetSpec
    resolution: int
    macs: int
    ratio: float  # measured MACs / base MACs
    target: float  # 2^phi
    same_as: str = ""  # key of the candidate that trains the identical network ("" = trains itself)
    result: dict = field(default_factory=dict)  # filled by the search: top1, state, trial, error

    @property
    def key(self) -> str:
        return self.point.key

    @property
    def off_target(self) -> float:
        return self.ratio / self.target - 1.0


@dataclass(frozen=True)
class SearchBase:
    """The network a search scales and its data config at the size it scales from (trained and
    evaluated at that size): a spec has no size of its own (compound.prepare_base resolves it)."""

    spec: NetSpec
    preprocess: Preprocess

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def size(self) -> int:
        return self.preprocess.eval_size


def base_spec(spec: NetSpec, size: int, preprocess: Preprocess | None = None) -> SearchBase:
    """The base network at `size` px for train and eval (the grid scales from this size),
    normalised as `preprocess` says (default: the architecture's)."""
    if size < 8:
        raise UserError(f"base size must be >= 8 px (got {size})")
    pre = preprocess or default_preprocess(spec.name)
    return SearchBase(spec, replace(pre, train_size=size, eval_size=size))


def grid_axes(step: float, tolerance: float, phi: float = 1.0
              ) -> tuple[list[float], list[float], list[float]]:
    """Values of alpha, beta, gamma on the grid: 1, 1 + step, ... up to the largest value that can
    still meet the constraint when the other two are 1: alpha <= 2 * (1 + band), beta and gamma
    <= sqrt(2 * (1 + band)), band = PREFILTER_FACTOR * tolerance. The constraint is per unit phi
    (alpha * beta^2 * gamma^2 ~= 2), so the bounds do not depend on phi."""
    if not step > 0:
        raise UserError(f"--grid-step must be > 0 (got {step})")
    if not tolerance > 0:
        raise UserError(f"--tolerance must be > 0 (got {tolerance})")
    if not phi > 0:
        raise UserError(f"--phi must be > 0 for a search (got {phi})")
    band = PREFILTER_FACTOR * tolerance
    top = 2.0 * (1.0 + band)

    def axis(hi: float) -> list[float]:
        n = int(math.floor((hi - 1.0) / step + 1e-9))
        if n > 400:
            raise UserError(f"--grid-step {step} makes a grid of over 400 values per axis; "
                            f"use a coarser step")
        return [round(1.0 + k * step, 6) for k in range(n + 1)]

    return axis(top), axis(math.sqrt(top)), axis(math.sqrt(top))


def prefilter(step: float, tolerance: float, phi: float = 1.0) -> list[GridPoint]:
    """Grid points whose formula alpha * beta^2 * gamma^2 lies within the band around 2,
    ordered by distance to 2 (then alpha, beta, gamma)."""
    alphas, betas, gammas = grid_axes(step, tolerance, phi)
    band = PREFILTER_FACTOR * tolerance
    pts = [GridPoint(a, b, g) for a in alphas for b in betas for g in gammas
           if abs(a * b * b * g * g / 2.0 - 1.0) <= band]
    pts.sort(key=lambda p: (abs(p.formula / 2.0 - 1.0), p.alpha, p.beta, p.gamma))
    return pts


class MacCounter:
    """count_macs with a cache: many grid points round to the same network."""

    def __init__(self, num_classes: int = 1000):
        self.num_classes = num_classes
        self._cache: dict[tuple[NetSpec, int], int] = {}

    def __call__(self, spec: NetSpec, size: int) -> int:
        key = (spec.with_(name=""), size)
        if key not in self._cache:
            import torch

            from ..models import build
            from ..tools.profile import count_macs

            with torch.device("meta"):
                model = build(spec, num_classes=self.num_classes)
            self._cache[key] = count_macs(model, size)
        return self._cache[key]


def measure(base: SearchBase, points: list[GridPoint], phi: float, counter: MacCounter,
            progress: bool = False) -> tuple[int, list[Candidate]]:
    """Scale `base` (at its size) by every point at `phi` and count MACs.
    Returns the base MACs and one Candidate per point (in the order given)."""
    from tqdm import tqdm

    base_macs = counter(base.spec, base.size)
    target = 2.0**phi
    out = []
    for p in tqdm(points, desc="measuring MACs", unit="point", disable=not progress, leave=False):
        spec, m = scale_compound(base.spec, phi, p.alpha, p.beta, p.gamma, depth_rounding="round")
        res = m.scaled_size(base.size)
        macs = counter(spec, res)
        out.append(Candidate(p, spec.with_(name=f"{base.name}-{p.key}-phi{phi:g}"), res, macs,
                             macs / base_macs, target))
    return base_macs, out


def within(cands: list[Candidate], tolerance: float) -> list[Candidate]:
    return [c for c in cands if abs(c.off_target) <= tolerance]


def mark_duplicates(cands: list[Candidate]) -> list[Candidate]:
    """Point every candidate at the first one (in list order) with the identical network and
    resolution; returns the unique ones, which are the ones trained."""
    first: dict[tuple[NetSpec, int], Candidate] = {}
    unique = []
    for c in cands:
        k = (c.spec.with_(name=""), c.resolution)
        if k in first:
            c.same_as = first[k].key
        else:
            first[k] = c
            unique.append(c)
    return unique


def candidates(base: SearchBase, phi: float, step: float, tolerance: float,
               counter: MacCounter | None = None, progress: bool = False
               ) -> tuple[int, list[Candidate], list[Candidate]]:
    """(base MACs, every prefiltered point measured, the unique in-tolerance ones to train)."""
    counter = counter or MacCounter()
    base_macs, measured = measure(base, prefilter(step, tolerance, phi), phi, counter, progress)
    inside = within(measured, tolerance)
    inside.sort(key=lambda c: (abs(c.off_target), c.point.alpha, c.point.beta, c.point.gamma))
    return base_macs, measured, mark_duplicates(inside)
