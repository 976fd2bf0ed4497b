"""The residual blocks a stage row can name: MBConv, Fused-MBConv and the ResNet bottleneck."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..arch.spec import BLOCK_KINDS
from .layers import ConvNormAct, DropPath, NormConfig, SqueezeExcite, make_act

BLOCKS: dict[str, type[ResidualBlock]] = {}  # arch block kind -> its class, filled by @block_kind


def block_kind(kind: str):
    """Class decorator: build stage rows of `kind` (a row of arch.spec.BLOCK_KINDS) with this class."""

    def register(cls: type[ResidualBlock]) -> type[ResidualBlock]:
        if kind not in BLOCK_KINDS or kind in BLOCKS:
            raise ValueError(f"block kind {kind!r} is not in arch.spec.BLOCK_KINDS or is taken")
        cls.kind = kind
        BLOCKS[kind] = cls
        return cls

    return register


def squeeze_excite(channels: int, in_ch: int, ratio: float, act: str) -> nn.Module:
    """SE on `channels`, its squeeze width from the block's *input* channels (SPEC A.3); none at 0."""
    return SqueezeExcite(channels, max(1, int(in_ch * ratio)), act) if ratio > 0 else nn.Identity()


class ResidualBlock(nn.Module):
    """Shared tail: a residual add, with per-sample stochastic depth on the branch (SPEC A.6)."""

    kind: ClassVar[str]  # set by @block_kind
    expansion_part: ClassVar[str | None] = None  # the module expansion 1 leaves out (an Identity)
    has_skip: bool

    @property
    def layout(self) -> str:
        """Which modules this block has, as weight files tell them apart: its kind, with a 1 appended
        (the papers' MBConv1) where expansion 1 leaves a conv out and libraries name the rest
        differently."""
        left_out = self.expansion_part is not None and not isinstance(
            getattr(self, self.expansion_part), ConvNormAct)
        return f"{self.kind}1" if left_out else self.kind

    def set_drop_path(self, rate: float) -> None:
        self.drop_path = DropPath(rate) if (rate > 0 and self.has_skip) else nn.Identity()

    def add_skip(self, branch: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path(branch) + x if self.has_skip else branch


@block_kind("mbconv")
class MBConv(ResidualBlock):
    """Inverted bottleneck: [1x1 expand] -> k x k depthwise -> [SE] -> 1x1 project (no act).

    The SE width comes from the block's *input* channels, not the expanded ones (SPEC A.3).
    """

    expansion_part = "expand"

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: float,
                 se: float = 0.0, act: str = "silu", norm: NormConfig = NormConfig(),
                 tf_padding: bool = False, drop_path: float = 0.0):
        super().__init__()
        mid = BLOCK_KINDS[self.kind].mid_width(in_ch, out_ch, expand)
        self.has_skip = stride == 1 and in_ch == out_ch
        self.expand = ConvNormAct(in_ch, mid, 1, act=act, norm=norm) if expand != 1 else nn.Identity()
        self.dw = ConvNormAct(mid, mid, kernel, stride, groups=mid, act=act, norm=norm,
                              tf_padding=tf_padding)
        self.se = squeeze_excite(mid, in_ch, se, act)
        self.project = ConvNormAct(mid, out_ch, 1, act=None, norm=norm)
        self.set_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.add_skip(self.project(self.se(self.dw(self.expand(x)))), x)


@block_kind("fused")
class FusedMBConv(ResidualBlock):
    """Fused-MBConv (V2): a regular k x k conv replaces expand + depthwise: k x k conv -> [SE] ->
    1x1 project (no act).

    With expansion 1 the single k x k conv maps straight to the output and keeps its activation;
    there is no 1x1 projection then (SPEC C.1), and an SE, if the row asks for one, gates the
    block's input before that conv.
    """

    expansion_part = "project"

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: float,
                 se: float = 0.0, act: str = "silu", norm: NormConfig = NormConfig(),
                 tf_padding: bool = False, drop_path: float = 0.0):
        super().__init__()
        self.has_skip = stride == 1 and in_ch == out_ch
        # No published network and no NAS candidate (search/space.py) puts SE on a fused block,
        # but a spec row may, and AML's FusedMBConvBlock defines what it means for either
        # expansion: its SE sits between the conv whose width is in * expand and the conv that
        # maps to `out`. With expansion 1 there is no first conv, so the SE gates the block input
        # (in channels, squeezed to in * se) and the single k x k conv follows. Built so rather
        # than refused: every row AML can build builds here, with AML's parameter count.
        self.se_first = expand == 1
        if expand == 1:
            self.se = squeeze_excite(in_ch, in_ch, se, act)
            self.conv = ConvNormAct(in_ch, out_ch, kernel, stride, act=act, norm=norm,
                                    tf_padding=tf_padding)
            self.project = nn.Identity()
        else:
            mid = BLOCK_KINDS[self.kind].mid_width(in_ch, out_ch, expand)
            self.conv = ConvNormAct(in_ch, mid, kernel, stride, act=act, norm=norm,
                                    tf_padding=tf_padding)
            self.se = squeeze_excite(mid, in_ch, se, act)
            self.project = ConvNormAct(mid, out_ch, 1, act=None, norm=norm)
        self.set_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.conv(self.se(x)) if self.se_first else self.project(self.se(self.conv(x)))
        return self.add_skip(branch, x)


@block_kind("bottleneck")
class Bottleneck(ResidualBlock):
    """ResNet v1.5 bottleneck: 1x1 reduce -> k x k (stride here) -> 1x1 expand, act after the add.

    `out` is the block's output width and `expand` the ratio out/mid (4 in ResNet-50, the kind's
    `expand_ratio`). A projection shortcut (1x1 conv + BN, strided) is used whenever the shape
    changes.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: float,
                 se: float = 0.0, act: str = "relu", norm: NormConfig = NormConfig(),
                 tf_padding: bool = False, drop_path: float = 0.0):
        super().__init__()
        mid = BLOCK_KINDS[self.kind].mid_width(in_ch, out_ch, expand)
        self.has_skip = True  # the shortcut always exists; it is projected when shapes differ
        self.reduce = ConvNormAct(in_ch, mid, 1, act=act, norm=norm)
        self.conv = ConvNormAct(mid, mid, kernel, stride, act=act, norm=norm, tf_padding=tf_padding)
        self.se = squeeze_excite(mid, in_ch, se, act)
        self.project = ConvNormAct(mid, out_ch, 1, act=None, norm=norm)
        self.shortcut = (ConvNormAct(in_ch, out_ch, 1, stride, act=None, norm=norm)
                         if (stride != 1 or in_ch != out_ch) else nn.Identity())
        self.out_act = make_act(act)
        self.set_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.project(self.se(self.conv(self.reduce(x))))
        return self.out_act(self.add_skip(branch, self.shortcut(x)))
