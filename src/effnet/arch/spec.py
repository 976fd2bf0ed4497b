"""Architectures as plain data: one typed row per stage, exactly as the paper tables print them.

Nothing here imports torch. A `NetSpec` is built into a module by `effnet.nn.model`; scaling
(`effnet.arch.scaling`) maps a spec to a spec, so a scaled network can be printed, compared and
counted before any weight exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ..tables import text_table


@dataclass(frozen=True)
class BlockKind:
    """What a stage row's `block` names. The module for it is the nn class registered under `name`
    (effnet.nn.blocks.block_kind); weight files map it by `name` too (effnet.weights.sources)."""

    name: str
    display: str  # operator name as the paper tables print it
    short: str  # one letter for compact architecture codes (NAS reports)
    # what a row's `expand` is a ratio of, as the kind's paper prints it: "mid/in" (MobileNetV2's
    # expansion: the inner width is in * expand) or "out/mid" (ResNet's: the output is expand
    # times the inner width). The table's `e` column says it; the block builds from `mid_width`.
    expand_ratio: str

    def __post_init__(self) -> None:
        if self.expand_ratio not in EXPAND_RATIOS:
            raise ValueError(f"expand_ratio must be one of {EXPAND_RATIOS}, got {self.expand_ratio!r}")

    def mid_width(self, in_ch: int, out_ch: int, expand: float) -> int:
        """The block's inner width for a row's `expand`."""
        return int(round(in_ch * expand if self.expand_ratio == "mid/in" else out_ch / expand))


EXPAND_RATIOS = ("mid/in", "out/mid")

# adding a block kind: one row here, one registered class in nn/blocks.py, and key-map rows in
# weights/sources.py only if some library publishes weights for it
BLOCK_KINDS: dict[str, BlockKind] = {k.name: k for k in (
    BlockKind("mbconv", "MBConv", "M", expand_ratio="mid/in"),
    BlockKind("fused", "Fused-MBConv", "F", expand_ratio="mid/in"),
    BlockKind("bottleneck", "Bottleneck", "B", expand_ratio="out/mid"),
)}
ACTIVATIONS = ("silu", "relu6", "relu")


@dataclass(frozen=True)
class Stage:
    """One stage row: `repeats` blocks, the first with `stride`, the rest stride 1 and out -> out."""

    block: str  # one of BLOCK_KINDS
    kernel: int
    stride: int
    expand: float  # a ratio of widths: which, its kind's `expand_ratio` says (mid/in, out/mid)
    out: int  # output channels
    repeats: int
    se: float = 0.0  # squeeze-excite ratio of the *block input* width; 0 = no SE

    def __post_init__(self) -> None:
        if self.block not in BLOCK_KINDS:
            raise ValueError(f"unknown block kind {self.block!r}; expected one of {tuple(BLOCK_KINDS)}")
        if self.repeats < 1 or self.out < 1 or self.kernel < 1 or self.stride not in (1, 2):
            raise ValueError(f"invalid stage row {self}")


@dataclass(frozen=True)
class Rounding:
    """How a family rounds when scaled (SPEC A.4, B, C.5)."""

    divisor: int = 8
    ten_percent_guard: bool = True  # V1/Lite: add a divisor if rounding lost > 10 %; V2: no
    fixed_stem_head: bool = False  # Lite: stem and head keep their base widths
    fixed_end_repeats: bool = False  # Lite: first and last stage keep their base repeats


@dataclass(frozen=True)
class Stem:
    """The input layer. `kind="conv"`: k x k conv stride 2; `"resnet"`: 7x7/2 conv + 3x3/2 max pool."""

    out: int
    kernel: int = 3
    stride: int = 2
    kind: str = "conv"

    def __post_init__(self) -> None:
        if self.kind not in STEM_POOL_STRIDE:
            raise ValueError(f"unknown stem kind {self.kind!r}; expected one of "
                             f"{tuple(STEM_POOL_STRIDE)}")

    @property
    def pool_stride(self) -> int:
        """Stride of the 3x3 max pool after the conv (1: no pool)."""
        return STEM_POOL_STRIDE[self.kind]


STEM_POOL_STRIDE = {"conv": 1, "resnet": 2}  # stem kind -> its max pool's stride


@dataclass(frozen=True)
class NetSpec:
    """A whole network: stem -> stages -> 1x1 head -> pool -> dropout -> classifier."""

    name: str
    stem: Stem
    stages: tuple[Stage, ...]
    head: int  # width of the 1x1 head conv; 0 = no head conv (pool the last stage directly)
    act: str = "silu"
    dropout: float = 0.2
    drop_path: float = 0.2  # stochastic depth rate reached (almost) at the last block, SPEC A.6
    rounding: Rounding = field(default_factory=Rounding)

    def __post_init__(self) -> None:
        if self.act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.act!r}; expected one of {ACTIVATIONS}")

    @property
    def num_blocks(self) -> int:
        return sum(s.repeats for s in self.stages)

    @property
    def num_features(self) -> int:
        """Width of the pooled feature vector fed to the classifier."""
        return self.head or self.stages[-1].out

    def with_(self, **changes) -> NetSpec:
        return replace(self, **changes)

    def table(self, size: int = 224) -> str:
        """The spec as the paper prints it: one row per stage with its input resolution for
        `size` px images (the spec has no size of its own: that belongs to the weights). The `e`
        column's heading says what the expansion is a ratio of (a line under the table does when
        the stages' block kinds mean different ratios)."""
        ratios: dict[str, list[str]] = {}  # expand_ratio -> the operators that mean it
        for st in self.stages:
            kind = BLOCK_KINDS[st.block]
            ops = ratios.setdefault(kind.expand_ratio, [])
            if kind.display not in ops:
                ops.append(kind.display)
        e = f"e={next(iter(ratios))}" if len(ratios) == 1 else "e"
        rows = [("stage", "operator", "k", "s", e, "in", "out", "layers", "SE", "input res")]
        rows.append(("0", f"Conv{self.stem.kernel}x{self.stem.kernel} stem", str(self.stem.kernel),
                     str(self.stem.stride), "-", "3", str(self.stem.out), "1", "-", f"{size}x{size}"))
        size = math.ceil(math.ceil(size / self.stem.stride) / self.stem.pool_stride)
        width = self.stem.out
        for i, st in enumerate(self.stages, start=1):
            op = BLOCK_KINDS[st.block].display
            rows.append((str(i), f"{op}{_fmt(st.expand)} k{st.kernel}x{st.kernel}", str(st.kernel),
                         str(st.stride), _fmt(st.expand), str(width), str(st.out), str(st.repeats),
                         _fmt(st.se) if st.se else "-", f"{size}x{size}"))
            size = math.ceil(size / st.stride)
            width = st.out
        if self.head:
            rows.append((str(len(self.stages) + 1), "Conv1x1 + pool + FC", "1", "1", "-",
                         str(width), str(self.head), "1", "-", f"{size}x{size}"))
        out = text_table(rows[0], rows[1:])
        if len(ratios) > 1:
            out += "\ne: " + "; ".join(f"{r} for {', '.join(ops)}" for r, ops in ratios.items())
        return out


def _fmt(x: float) -> str:
    return f"{x:g}"


def round_channels(channels: float, multiplier: float, rounding: Rounding) -> int:
    """Scale a width and round it to the nearest multiple of the divisor (halves up, never below it).

    With `ten_percent_guard` (V1, Lite) a result more than 10 % below the exact product gets one more
    divisor, as TPU `round_filters` does; AML's V2 version has no such guard (SPEC A.4, C.5).
    """
    if multiplier == 1.0:
        return int(channels)
    d = rounding.divisor
    exact = channels * multiplier
    new = max(d, int(exact + d / 2) // d * d)
    if rounding.ten_percent_guard and new < 0.9 * exact:
        new += d
    return int(new)


DEPTH_ROUNDINGS = ("ceil", "round")


def round_repeats(repeats: int, multiplier: float, mode: str = "ceil") -> int:
    """Depth scaling per stage. The released variants use the ceiling (SPEC A.4); "round" (nearest,
    at least 1) keeps a compound-scaled network's total depth closest to d * L, see scale_compound."""
    if mode == "ceil":
        return int(math.ceil(multiplier * repeats))
    if mode == "round":
        return max(1, int(math.floor(multiplier * repeats + 0.5)))
    raise ValueError(f"depth rounding must be one of {DEPTH_ROUNDINGS}, got {mode!r}")


def spec_to_dict(spec: NetSpec) -> dict:
    """A JSON-ready dict; `spec_from_dict` rebuilds the identical spec (saved with every run)."""
    from dataclasses import asdict

    return asdict(spec)


def spec_from_dict(d: dict) -> NetSpec:
    """The spec `spec_to_dict` wrote. Files of earlier versions hold the preprocessing inside the
    spec: it is not part of it (`effnet.arch.config` reads it from there)."""
    return NetSpec(
        name=d["name"], stem=Stem(**d["stem"]), stages=tuple(Stage(**s) for s in d["stages"]),
        head=d["head"], act=d["act"], dropout=d["dropout"], drop_path=d["drop_path"],
        rounding=Rounding(**d["rounding"]),
    )
