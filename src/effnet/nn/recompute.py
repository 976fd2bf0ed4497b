"""Trading compute for memory in training, block by block, with torch.utils.checkpoint.

Two modes, both numerically identical to a plain backward pass:

* "activations": a block keeps only its input and its convolutions' outputs; BatchNorm, the
  activations, the squeeze-excite gate and the residual add are recomputed from them in the
  backward pass (selective activation checkpointing). Those are cheap elementwise passes, while
  a plain pass keeps every one of their outputs: an MBConv saves 7 tensors of its expanded width,
  this keeps 3.
* "blocks": a block keeps only its input and recomputes everything (timm's and torch's gradient
  checkpointing): least memory, a second forward pass of the blocks.

A BatchNorm layer in training mode updates its running statistics on every call, so a recomputed
one would update them twice (a known flaw of gradient checkpointing, timm's included). Here the
recomputation runs with momentum 0: the layer normalises by the same batch statistics and leaves
its running statistics exactly as the first call left them.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

MODES = ("off", "activations", "blocks")

_aten = torch.ops.aten
# what "activations" keeps: the outputs of the convolutions and linear layers (everything else in a
# block is recomputed from them); convolution ops as CPU and CUDA dispatch them
_SAVED_OPS = frozenset({
    _aten.convolution.default, _aten._convolution.default, _aten.mkldnn_convolution.default,
    _aten.cudnn_convolution.default, _aten.addmm.default, _aten.mm.default,
})


def _keep_convolutions(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    return CheckpointPolicy.MUST_SAVE if op in _SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE


@contextlib.contextmanager
def running_stats_frozen(module: nn.Module) -> Iterator[None]:
    """BatchNorm layers below `module` normalise as in training but leave their running mean and
    variance as they are (momentum 0), for the duration."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum


@contextlib.contextmanager
def _recomputing(recompute_ctx, block: nn.Module) -> Iterator[None]:
    with recompute_ctx, running_stats_frozen(block):
        yield


def _contexts(block: nn.Module, selective: bool):
    """(forward context, recompute context) of one checkpointed call of `block`."""
    forward_ctx, recompute_ctx = (create_selective_checkpoint_contexts(_keep_convolutions)
                                  if selective else (contextlib.nullcontext(), contextlib.nullcontext()))
    return forward_ctx, _recomputing(recompute_ctx, block)


def run_block(block: nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    """`block(x)`, keeping for the backward pass what `mode` says (see the module docstring)."""
    if mode == "off" or not torch.is_grad_enabled():
        return block(x)
    return checkpoint(block, x, use_reentrant=False,
                      context_fn=functools.partial(_contexts, block, mode == "activations"))
