"""Progressive learning with adaptive regularization (EfficientNetV2 Algorithm 1) as data.

Training runs in M stages; stage i trains at image size S_i with regularization Phi_i (dropout,
RandAugment magnitude, Mixup alpha, CutMix alpha), all interpolated linearly from (S_0, Phi_0) to
(S_e, Phi_e); the last stage uses exactly S_e and Phi_e, and weights carry over between stages.

Two conventions (SPEC D.2):
- "paper": stage i of M uses t = i / (M - 1), so the first stage starts at S_0 itself.
- "code": the released AML code. Image size uses t = (i + 1) / M truncated to an int (so the first
  stage is already above S_0), while RandAugment and mixup/cutmix use linspace(start, end, M)[i],
  i.e. t = i / (M - 1); the per-model dropout is held fixed (the code builds a dropout schedule
  and then deletes it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from ..tables import text_table

CONVENTIONS = ("paper", "code")


@dataclass(frozen=True)
class ProgressivePlan:
    """The inputs of Algorithm 1. Each regularizer is a (start, end) pair."""

    name: str
    stages: int
    # image sizes in pixels, or both in (0, 1]: fractions of the eval size of the model trained
    # (fine-tuning presets, which meet models of every size); `at_eval_size` turns them into pixels
    size: tuple[float, float]
    randaug: tuple[float, float]
    mixup: tuple[float, float] = (0.0, 0.0)
    cutmix: tuple[float, float] = (0.0, 0.0)
    dropout: tuple[float, float] = (0.2, 0.2)
    convention: str = "paper"
    size_divisor: int | None = 8  # intermediate sizes round to a multiple; None: as computed

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {self.convention!r}")
        if self.stages < 1:
            raise ValueError(f"stages must be >= 1, got {self.stages}")
        if not (min(self.size) >= 8 or min(self.size) > 0 and max(self.size) <= 1):
            raise ValueError(f"image sizes must be pixels >= 8 or both fractions of the eval size "
                             f"in (0, 1], got {self.size}")

    @property
    def relative(self) -> bool:
        return max(self.size) <= 1

    def at_eval_size(self, eval_size: int) -> ProgressivePlan:
        """The plan in pixels for a model evaluated at `eval_size` (fractions rounded to the size
        divisor; a plan in pixels as it is)."""
        if not self.relative:
            return self
        d = self.size_divisor or 1
        return replace(self, size=tuple(max(8, round(f * eval_size / d) * d) for f in self.size))


@dataclass(frozen=True)
class StageSetting:
    """What stage `index` trains with. Stages are whole epochs: the stage runs every epoch that
    ends within the fraction (start, end] of the run's epochs (`stage_of_progress`, the rule the
    trainer follows), so of E epochs it runs epochs floor(start * E) to floor(end * E) - 1,
    0-based (`stage_epochs`), none when E < M leaves it no epoch end."""

    index: int
    start: float
    end: float
    size: int
    randaug: float
    mixup: float
    cutmix: float
    dropout: float


def _lerp(pair: tuple[float, float], t: float) -> float:
    return pair[0] + (pair[1] - pair[0]) * t


def schedule(plan: ProgressivePlan) -> list[StageSetting]:
    if plan.relative:
        raise ValueError("a plan in fractions of the eval size needs the size: plan.at_eval_size(n)")
    m = plan.stages
    out = []
    for i in range(m):
        t_reg = i / (m - 1) if m > 1 else 1.0
        if plan.convention == "paper":
            size = _lerp(plan.size, t_reg)
            dropout = _lerp(plan.dropout, t_reg)
        else:
            size = int(_lerp(plan.size, (i + 1) / m))
            dropout = plan.dropout[1]
        if i == m - 1:
            size = plan.size[1]  # the last stage is exactly the target, whatever the rounding
        elif size == plan.size[0]:
            pass  # the paper's first stage is S_0 as given
        elif plan.size_divisor:
            size = max(plan.size_divisor, round(size / plan.size_divisor) * plan.size_divisor)
        out.append(StageSetting(
            index=i, start=i / m, end=(i + 1) / m, size=int(round(size)),
            randaug=_lerp(plan.randaug, t_reg), mixup=_lerp(plan.mixup, t_reg),
            cutmix=_lerp(plan.cutmix, t_reg), dropout=dropout,
        ))
    return out


def stage_of_progress(stages: list[StageSetting], done: float) -> StageSetting:
    """The stage of an epoch at whose end the fraction `done` of the run's epochs is done: the
    first stage whose end is not before it. The one rule; the trainer asks it before each epoch
    (with a resumed run's fraction, train/plan.py)."""
    return next((st for st in stages if done <= st.end), stages[-1])


def stage_epochs(stages: list[StageSetting], epochs: int) -> list[range]:
    """The epochs (0-based) each stage runs in a run of `epochs` epochs, by `stage_of_progress`."""
    runs: list[list[int]] = [[] for _ in stages]
    for e in range(epochs):
        runs[stage_of_progress(stages, (e + 1) / epochs).index].append(e)
    return [range(r[0], r[-1] + 1) if r else range(0) for r in runs]


def _epoch_cell(epochs: range) -> str:
    """1-based, as the run prints its epochs: "3-5", "4", or "-" for a stage with none."""
    if not epochs:
        return "-"
    first, last = epochs[0] + 1, epochs[-1] + 1
    return str(first) if first == last else f"{first}-{last}"


def table(plan: ProgressivePlan, epochs: int | None = None, eval_size: int | None = None) -> str:
    """The schedule; with `epochs`, each stage's epochs as a run of that length trains them,
    otherwise each stage's share of the run's epochs. A plan in fractions of the eval size needs
    `eval_size`."""
    if plan.relative and eval_size is None:
        raise ValueError(f"the sizes {plan.size[0]:g}:{plan.size[1]:g} are fractions of the eval "
                         f"size: give the eval size")
    stages = schedule(plan.at_eval_size(eval_size) if plan.relative else plan)
    spans = ([_epoch_cell(r) for r in stage_epochs(stages, epochs)] if epochs else
             [f"{s.start:.0%}-{s.end:.0%}" for s in stages])
    rows = [("stage", "epochs", "size", "RandAug M", "mixup a", "cutmix a", "dropout")]
    for s, span in zip(stages, spans, strict=True):
        rows.append((str(s.index + 1), span, str(s.size), f"{s.randaug:.2f}",
                     f"{s.mixup:.3f}", f"{s.cutmix:.3f}", f"{s.dropout:.3f}"))
    head = (f"{plan.name}: {plan.stages} stages, {plan.convention} convention, "
            f"size rounding {plan.size_divisor or 'off'}"
            + (f", {epochs} epochs" if epochs else "; an epoch trains in the stage it ends in"))
    return head + "\n" + text_table(rows[0], rows[1:])


def plan_to_dict(plan: ProgressivePlan) -> dict:
    return asdict(plan)


def plan_from_dict(d: dict) -> ProgressivePlan:
    d = dict(d)
    for k in ("size", "randaug", "mixup", "cutmix", "dropout"):
        d[k] = tuple(d[k])
    return ProgressivePlan(**d)


# V2 paper Table 6 (min -> max), 4 stages; the V2 code's values are AML efficientnetv2_params
# (train size, RandAugment, mixup = cutmix alpha, fixed dropout), SPEC C.3 and D.2.
_PAPER = {  # size, randaug, mixup, dropout
    "s": ((128, 300), (5, 15), (0.0, 0.0), (0.1, 0.3)),
    "m": ((128, 380), (5, 20), (0.0, 0.2), (0.1, 0.4)),
    "l": ((128, 380), (5, 25), (0.0, 0.4), (0.1, 0.5)),
}
_CODE = {  # final train size, final randaug, final mixup (= cutmix), fixed dropout
    "s": (300, 10, 0.0, 0.2), "m": (384, 15, 0.2, 0.3), "l": (384, 20, 0.5, 0.4),
    "xl": (384, 20, 0.5, 0.4), "b0": (192, 5, 0.0, 0.2), "b1": (192, 5, 0.0, 0.2),
    "b2": (208, 5, 0.0, 0.3), "b3": (240, 5, 0.0, 0.3),
}


def _presets() -> dict[str, ProgressivePlan]:
    out = {}
    for k, (size, ra, mix, drop) in _PAPER.items():
        out[f"v2-{k}"] = ProgressivePlan(f"v2-{k}", 4, size, ra, mixup=mix, dropout=drop)
    for k, (size, ra, mix, drop) in _CODE.items():
        # B0-B3 use AutoAugment in the code, so their RandAugment list is unused (magnitude 5 flat)
        out[f"v2-{k}-code"] = ProgressivePlan(
            f"v2-{k}-code", 4, (128, size), (5, ra), mixup=(0.0, mix), cutmix=(0.0, mix),
            dropout=(drop, drop), convention="code", size_divisor=None)
    return out


PRESETS: dict[str, ProgressivePlan] = _presets()


def _pair(text: str, cast=float, key: str = "value") -> tuple:
    """'START:END' (or one value for both) as two finite numbers."""
    parts = text.split(":")
    if len(parts) == 1:
        parts = parts * 2
    try:
        start, end = (cast(v) for v in parts)
    except ValueError:
        raise ValueError(f"{key}: expected START:END numbers, got {text!r}") from None
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"{key}: expected finite numbers, got {text!r}")
    return start, end


def explicit_plan(stages: int, size: str, randaug: str = "5:15", mixup: str = "0:0",
                  cutmix: str = "0:0", dropout: str = "0.1:0.3", convention: str = "paper",
                  size_divisor: int | None = 8) -> ProgressivePlan:
    """A plan from 'start:end' strings, as the CLI takes them (`--size 128:300`)."""
    return ProgressivePlan("custom", stages, _sizes(size), _pair(randaug), _pair(mixup), _pair(cutmix),
                           _pair(dropout), convention=convention, size_divisor=size_divisor)


def _sizes(text: str) -> tuple[float, float]:
    """Image sizes START:END: whole pixels, or fractions of the eval size (both <= 1)."""
    pair = _pair(text, float, "size")
    if max(pair) <= 1:
        return pair
    if not all(v.is_integer() for v in pair):
        raise ValueError(f"size: expected whole pixels or fractions <= 1, got {text!r}")
    return int(pair[0]), int(pair[1])


_PAIR_KEYS = ("size", "randaug", "mixup", "cutmix", "dropout")


def plan_from_text(text: str) -> ProgressivePlan:
    """A preset name (`v2-s`), optionally followed by changes (`v2-s,stages=3`), or a whole plan
    as `stages=4,size=128:300,randaug=5:15,mixup=0:0,cutmix=0:0,dropout=0.1:0.3`."""
    head, *rest = [part.strip() for part in text.split(",") if part.strip()] or [""]
    if "=" in head:
        rest, plan = [head, *rest], explicit_plan(4, "128:300")
        plan = replace(plan, name="custom")
    elif head in PRESETS:
        plan = PRESETS[head]
    else:
        raise ValueError(f"unknown progressive schedule {head!r}; presets: {', '.join(PRESETS)}")
    changes: dict = {}
    for item in rest:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ValueError(f"expected KEY=VALUE in the schedule, got {item!r}")
        if key in _PAIR_KEYS:
            changes[key] = _sizes(value) if key == "size" else _pair(value, float, key)
        elif key in ("stages", "size_divisor"):
            try:
                n = int(value)
            except ValueError:
                raise ValueError(f"{key}: expected a whole number, got {value!r}") from None
            changes[key] = n if key == "stages" else (n or None)
        elif key == "convention":
            changes[key] = value
        else:
            raise ValueError(f"unknown schedule key {key!r}; use stages, {', '.join(_PAIR_KEYS)}, "
                             "convention, size_divisor")
    return replace(plan, **changes)
