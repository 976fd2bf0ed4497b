"""Small building blocks: conv + BN + activation, TF "same" padding, squeeze-and-excitation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class NormConfig:
    """BatchNorm settings. They follow the weights' source: PyTorch-trained weights (timm,
    torchvision V1) use eps 1e-5 / momentum 0.1, TF-trained ones eps 1e-3 / momentum 0.01 (SPEC G.1;
    the model config carries them, effnet.arch.conventions decides them per name)."""

    eps: float = 1e-5
    momentum: float = 0.1


def make_act(name: str) -> nn.Module:
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    raise ValueError(f"unknown activation {name!r}")


def tf_same_pad(size, kernel: int, stride: int, dilation: int = 1) -> tuple:
    """TensorFlow 'SAME': output ceil(size/stride), the odd pixel of padding goes bottom/right.

    Written with integer floor division instead of math.ceil / max on `size`: with a symbolic
    `size` (torch.export with a dynamic height/width) the pad is then one expression the
    exporter can carry and simplify (the conv's output size reduces to ceil(size/stride))
    instead of a guard on the size, which is what lets tf_ models export with dynamic shapes.
    With an int it is TF's formula."""
    out = (size + stride - 1) // stride
    total = (out - 1) * stride + (kernel - 1) * dilation + 1 - size
    if (kernel - 1) * dilation + 1 < stride:  # kernel narrower than its stride: TF clamps at 0
        total = torch.sym_max(total, 0)
    return total // 2, total - total // 2


class ConvNormAct(nn.Module):
    """conv (no bias) -> BatchNorm -> optional activation.

    With `tf_padding` a strided conv pads as TensorFlow does, from the actual input size at each
    call (asymmetric for even sizes), so TF-trained weights give TF's numbers at any resolution.
    Stride-1 odd kernels pad symmetrically in both conventions, so they keep the static padding.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: str | None = "silu", norm: NormConfig = NormConfig(), tf_padding: bool = False):
        super().__init__()
        self.dynamic_pad = tf_padding and (stride > 1 or kernel % 2 == 0)
        self.kernel, self.stride = kernel, stride
        self.depthwise = groups == in_ch == out_ch > 1 and kernel % 2 == 1 and kernel > 1
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding=0 if self.dynamic_pad else kernel // 2,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=norm.eps, momentum=norm.momentum)
        self.act = make_act(act) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.depthwise and self.training and torch.is_grad_enabled() and x.shape[-2] == x.shape[-1] == 1:
            # On a 1 x 1 map a depthwise k x k conv sees zero padding around its centre tap in
            # both padding conventions and at any stride, so it is exactly that tap times the input.
            # PyTorch's CPU depthwise backward is slow exactly there (V2-B0 at phi -4, 32 px images,
            # batch 64: three such convs of 768 channels took 24 of a 73 ms backward pass). Only in
            # training: an eval-mode module (inference, torch.export, int8 quantization, which
            # finds its convolutions in the exported graph) keeps the plain convolution.
            centre = self.conv.weight[:, :, self.kernel // 2, self.kernel // 2]
            return self.act(self.bn(x * centre.view(1, -1, 1, 1)))
        if self.dynamic_pad:
            top, bottom = tf_same_pad(x.shape[-2], self.kernel, self.stride)
            left, right = tf_same_pad(x.shape[-1], self.kernel, self.stride)
            x = F.pad(x, (left, right, top, bottom))
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Channel gate: mean over space -> 1x1 reduce (bias) -> act -> 1x1 expand (bias) -> sigmoid."""

    def __init__(self, channels: int, reduced: int, act: str = "silu"):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = make_act(act)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.expand(self.act(self.reduce(s)))
        return x * s.sigmoid()


class DropPath(nn.Module):
    """Stochastic depth (SPEC A.6): in training, each sample's residual branch is dropped with
    probability `p` and the kept ones are scaled by 1 / (1 - p). The same draws as
    torchvision.ops.StochasticDepth(p, "row"), whose import would double the time of `import
    effnet` (torchvision.ops loads its detection ops)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        noise = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
        noise.bernoulli_(keep)
        if keep > 0.0:
            noise.div_(keep)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}"

