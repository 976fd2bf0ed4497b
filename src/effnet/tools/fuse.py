"""Inference-time conv + BatchNorm folding.

In eval mode a BatchNorm is a fixed per-channel affine map, so it can be folded into the weights
and a bias of the convolution before it: the network then skips one full pass over every
activation map. The fused model gives the same logits up to float rounding (~1e-6) but has no
BatchNorm left, so it is for inference and export only; train the unfused model.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..nn.layers import ConvNormAct


def fuse_conv_bn(model: nn.Module, inplace: bool = False) -> nn.Module:
    """An eval-mode copy of `model` (or `model` itself with `inplace`) with every `ConvNormAct`'s
    BatchNorm folded into its convolution; returns it. Modules without a BatchNorm are left alone."""
    target = model if inplace else copy.deepcopy(model)
    target.eval()
    for m in target.modules():
        if isinstance(m, ConvNormAct) and isinstance(m.bn, nn.BatchNorm2d):
            m.conv = fuse_conv_bn_eval(m.conv, m.bn)
            m.bn = nn.Identity()
    return target
