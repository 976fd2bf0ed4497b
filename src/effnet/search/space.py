"""The training-aware NAS search space of EfficientNetV2 (SPEC E.6), as data.

Stage-wise and factorised as in MnasNet: every stage of a backbone picks its block type
{MBConv, Fused-MBConv}, kernel {3, 5}, expansion {1, 4, 6}, a number of layers around the
backbone's, and squeeze-excite on/off where the paper allows it (MBConv only: no V2 network puts SE
on a fused block, SPEC C.1). Channels and strides are the backbone's ("reusing the backbone's
channel widths" is how the paper shrinks the space), as are stem, head and preprocessing.

A candidate is an ordinary `NetSpec` (print it with `spec.table()`); `spec_key` hashes its rows so
two samples of the same architecture are recognised whatever their trial numbers or names.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from ..arch.spec import NetSpec, Stage
from ..errors import UserError

BLOCKS = ("mbconv", "fused")
KERNELS = (3, 5)
EXPANDS = (1, 4, 6)
SE_RATIO = 0.25  # the V1/V2 ratio when SE is on
LAYER_STEP = 0.25  # layers: the backbone's r, r -/+ max(1, round(r * LAYER_STEP))

# --space NAME -> the backbone it reuses by default (both search the same per-stage choices)
SPACES = {"v2": "efficientnetv2_s", "b0": "efficientnet_b0"}


def layer_choices(repeats: int) -> tuple[int, ...]:
    step = max(1, round(repeats * LAYER_STEP))
    return tuple(sorted({max(1, repeats - step), repeats, repeats + step}))


@dataclass(frozen=True)
class StageChoice:
    """One stage's decisions; `se` is ignored (always off) for a fused block."""

    block: str
    kernel: int
    expand: int
    layers: int
    se: bool

    def row(self, base: Stage) -> Stage:
        se = SE_RATIO if self.se and self.block == "mbconv" else 0.0
        return Stage(self.block, self.kernel, base.stride, self.expand, base.out, self.layers, se=se)


def stage_options(base: Stage) -> list[StageChoice]:
    """Every distinct choice for one stage (SE only on MBConv)."""
    out = []
    for block, k, e, n in itertools.product(BLOCKS, KERNELS, EXPANDS, layer_choices(base.repeats)):
        for se in ((False, True) if block == "mbconv" else (False,)):
            out.append(StageChoice(block, k, e, n, se))
    return out


def spec_key(spec: NetSpec) -> str:
    """A short hash of what makes the network: stem, stage rows, head, activation (not its name,
    dropout or preprocessing), so duplicates are recognised by architecture."""
    rows = {"stem": [spec.stem.out, spec.stem.kernel, spec.stem.stride, spec.stem.kind],
            "stages": [[s.block, s.kernel, s.stride, float(s.expand), s.out, s.repeats, float(s.se)]
                       for s in spec.stages],
            "head": spec.head, "act": spec.act}
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SearchSpace:
    name: str
    base: NetSpec  # channels, strides, stem, head come from here

    def __post_init__(self) -> None:
        bad = [s.block for s in self.base.stages if s.block not in BLOCKS]
        if bad:
            raise UserError(f"{self.base.name}: the NAS space searches MBConv/Fused-MBConv stages; "
                            f"this backbone has {bad[0]} blocks")

    @property
    def options(self) -> list[list[StageChoice]]:
        return [stage_options(s) for s in self.base.stages]

    @property
    def size(self) -> int:
        return math.prod(len(o) for o in self.options)

    def build(self, choices: list[StageChoice]) -> NetSpec:
        if len(choices) != len(self.base.stages):
            raise ValueError(f"{len(choices)} stage choices for {len(self.base.stages)} stages")
        stages = tuple(c.row(b) for c, b in zip(choices, self.base.stages, strict=True))
        spec = self.base.with_(stages=stages)
        return spec.with_(name=f"nas-{self.name}-{spec_key(spec)[:8]}")

    def enumerate(self) -> Iterator[NetSpec]:
        """Every candidate, lazily (the full spaces hold ~1e10; enumerate small ones)."""
        for choices in itertools.product(*self.options):
            yield self.build(list(choices))

    def sample(self, rng: random.Random) -> NetSpec:
        """A uniform draw over each stage's options (the paper's random search)."""
        return self.build([rng.choice(o) for o in self.options])

    def choices_from_params(self, params: dict) -> list[StageChoice]:
        """Stage choices from an Optuna trial's parameters (see `suggest`)."""
        return [StageChoice(params[f"s{i}_block"], int(params[f"s{i}_kernel"]),
                            int(params[f"s{i}_expand"]), int(params[f"s{i}_layers"]),
                            bool(params.get(f"s{i}_se", False)))
                for i in range(1, len(self.base.stages) + 1)]

    def suggest(self, trial) -> NetSpec:
        """Ask an Optuna trial for every stage's choices; SE is asked only of MBConv stages
        (a conditional parameter), so no two parameter sets name the same network."""
        for i, st in enumerate(self.base.stages, start=1):
            block = trial.suggest_categorical(f"s{i}_block", list(BLOCKS))
            trial.suggest_categorical(f"s{i}_kernel", list(KERNELS))
            trial.suggest_categorical(f"s{i}_expand", list(EXPANDS))
            trial.suggest_categorical(f"s{i}_layers", list(layer_choices(st.repeats)))
            if block == "mbconv":
                trial.suggest_categorical(f"s{i}_se", [False, True])
        return self.build(self.choices_from_params(trial.params))

    def check(self, spec: NetSpec) -> None:
        """Raise ValueError unless `spec` is a candidate of this space."""
        b = self.base
        if (spec.stem, spec.head, spec.act, len(spec.stages)) != (b.stem, b.head, b.act,
                                                                 len(b.stages)):
            raise ValueError("stem, head, activation or stage count differ from the backbone")
        for i, (s, base) in enumerate(zip(spec.stages, b.stages, strict=True), start=1):
            why = ""
            if s.block not in BLOCKS:
                why = f"block {s.block}"
            elif s.kernel not in KERNELS or s.expand not in EXPANDS:
                why = f"kernel {s.kernel} / expansion {s.expand:g} not searched"
            elif s.repeats not in layer_choices(base.repeats):
                why = f"{s.repeats} layers not in {layer_choices(base.repeats)}"
            elif (s.out, s.stride) != (base.out, base.stride):
                why = "channels or stride differ from the backbone"
            elif s.se not in ((0.0, SE_RATIO) if s.block == "mbconv" else (0.0,)):
                why = f"SE {s.se:g} on a {s.block} block"
            if why:
                raise ValueError(f"stage {i}: {why}")


def make_space(name: str, base: NetSpec) -> SearchSpace:
    if name not in SPACES:
        raise UserError(f"unknown search space {name!r}; choose one of {', '.join(SPACES)}")
    return SearchSpace(name, base)
