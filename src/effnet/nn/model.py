"""EfficientNet (and any stage-row network): stem -> stages -> 1x1 head -> pool -> dropout -> FC."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..arch.config import ModelConfig
from ..arch.preprocess import Preprocess
from ..arch.spec import NetSpec
from .blocks import BLOCKS, ResidualBlock
from .layers import ConvNormAct, NormConfig
from .recompute import MODES, run_block


class EfficientNet(nn.Module):
    """Built from a `NetSpec`. Feature maps at strides 2/4/8/16/32 are exposed for dense tasks."""

    # CPU forward passes run channels_last whatever layout the input has (see `_layout`)
    cpu_channels_last: bool = True

    def __init__(self, spec: NetSpec, num_classes: int = 1000, in_chans: int = 3,
                 drop_rate: float | None = None, drop_path_rate: float | None = None,
                 norm: NormConfig = NormConfig(), tf_padding: bool = False,
                 preprocess: Preprocess | None = None):
        super().__init__()
        self.spec = spec
        self.preprocess = preprocess  # what its weights expect (see effnet.arch.config)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.norm = norm
        self.tf_padding = tf_padding
        self.recompute = "off"  # what training recomputes in the backward pass (nn/recompute.py)
        self.frozen_stages = 0  # the stem and this many stages are frozen (set_frozen_stages)
        act = spec.act
        self.drop_path_rate = spec.drop_path if drop_path_rate is None else drop_path_rate

        st = spec.stem
        stem_conv = ConvNormAct(in_chans, st.out, st.kernel, st.stride, act=act, norm=norm,
                                tf_padding=tf_padding)
        if st.pool_stride > 1:  # ResNet: 7x7/2 conv then 3x3/2 max pool
            self.stem = nn.Sequential(stem_conv, nn.MaxPool2d(3, st.pool_stride, 1))
        else:
            self.stem = stem_conv

        width, stride, index = st.out, st.stride * st.pool_stride, 0
        stages = []
        self.feature_info: list[dict] = []
        for s_idx, row in enumerate(spec.stages):
            blocks = []
            for r in range(row.repeats):
                blocks.append(BLOCKS[row.block](
                    width, row.out, row.kernel, row.stride if r == 0 else 1, row.expand,
                    se=row.se, act=act, norm=norm, tf_padding=tf_padding,
                    drop_path=self._block_drop_path(index, self.drop_path_rate)))
                width, index = row.out, index + 1
            stride *= row.stride
            stages.append(nn.Sequential(*blocks))
            info = {"stage": s_idx, "num_chs": width, "reduction": stride}
            # keep the last stage at each stride: those are the multi-scale feature maps
            if self.feature_info and self.feature_info[-1]["reduction"] == stride:
                self.feature_info[-1] = info
            else:
                self.feature_info.append(info)
        self.stages = nn.Sequential(*stages)

        self.num_features = spec.num_features
        self.head = ConvNormAct(width, spec.head, 1, act=act, norm=norm) if spec.head else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(spec.dropout if drop_rate is None else drop_rate)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        self.init_weights()

    @classmethod
    def from_config(cls, config: ModelConfig, **overrides) -> EfficientNet:
        """The network a `ModelConfig` describes; overrides: drop_rate, drop_path_rate."""
        return cls(config.spec, num_classes=config.num_classes, in_chans=config.in_chans,
                   norm=NormConfig(config.bn_eps, config.bn_momentum),
                   tf_padding=config.tf_padding, preprocess=config.preprocess, **overrides)

    @property
    def config(self) -> ModelConfig:
        """Everything needed to rebuild this network (see `effnet.arch.config`)."""
        return ModelConfig(self.spec, num_classes=self.num_classes, in_chans=self.in_chans,
                           bn_eps=self.norm.eps, bn_momentum=self.norm.momentum,
                           tf_padding=self.tf_padding, preprocess=self.preprocess)

    def set_bn_eps(self, eps: float) -> None:
        """BatchNorm eps of every layer, e.g. to match the convention of loaded weights."""
        self.norm = NormConfig(eps, self.norm.momentum)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = eps

    # --- construction helpers -------------------------------------------------------------
    def _block_drop_path(self, index: int, rate: float) -> float:
        # TPU schedule: block i of N gets rate * i / N (block 0 never dropped), SPEC A.6
        return rate * index / self.spec.num_blocks

    def blocks(self) -> list[ResidualBlock]:
        return [b for stage in self.stages for b in stage]

    @torch.no_grad()
    def init_weights(self) -> None:
        """TF initialisers (SPEC A.7): conv normal(0, sqrt(2/fan_out)) with a depthwise kernel's
        fan_out = k*k (TF's [k,k,C,1] shape), dense uniform(+-1/sqrt(num_classes))."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                kh, kw = m.kernel_size
                fan_out = kh * kw * (m.out_channels // m.groups)
                m.weight.normal_(0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                m.weight.uniform_(-bound, bound)
                m.bias.zero_()

    # --- knobs used by training (progressive learning changes these between stages) -----------
    def set_dropout(self, rate: float) -> None:
        self.head_drop.p = rate

    def set_drop_path(self, rate: float) -> None:
        self.drop_path_rate = rate
        for i, block in enumerate(self.blocks()):
            block.set_drop_path(self._block_drop_path(i, rate))

    @property
    def grad_checkpointing(self) -> bool:
        return self.recompute == "blocks"

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass (timm's name): least activation memory, a
        second forward pass of the blocks."""
        self.set_recompute("blocks" if enable else "off")

    def set_recompute(self, mode: str) -> None:
        """"activations": keep only convolution outputs and recompute BatchNorm, activations and
        squeeze-excite in the backward pass (about half the activation memory, a few % more
        time); "blocks": recompute whole blocks; "off". Numerically identical (nn/recompute.py)."""
        if mode not in MODES:
            raise ValueError(f"recompute must be one of {MODES}, got {mode!r}")
        self.recompute = mode
        # a recomputed activation is recomputed from its input: it must not overwrite that input
        for m in self.modules():
            if isinstance(m, nn.SiLU | nn.ReLU6 | nn.ReLU):
                m.inplace = mode == "off"

    def set_frozen_stages(self, n: int) -> None:
        """Freeze the stem and the first `n` stages (0: none): their parameters take no gradient,
        so the backward pass stops before the high-resolution layers, and their BatchNorm keeps
        its statistics (eval mode, also under `.train()`), as a fine-tune of pretrained weights
        that leaves its first layers alone expects."""
        if not 0 <= n <= len(self.stages):
            raise ValueError(f"frozen stages must be 0 to {len(self.stages)} (got {n})")
        self.frozen_stages = n
        for i, part in enumerate([self.stem, *self.stages]):
            part.requires_grad_(not (n and i <= n))
        self.train(self.training)

    def train(self, mode: bool = True) -> EfficientNet:
        super().train(mode)
        if mode and self.frozen_stages:
            self.stem.eval()
            self.stages[: self.frozen_stages].eval()
        return self

    def reset_classifier(self, num_classes: int) -> None:
        """A new classifier (TF init) on the model's device and dtype; 0 removes it."""
        ref = next(self.parameters())  # the stem's conv: where and in what dtype the model lives
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        if num_classes:
            self.classifier.to(device=ref.device, dtype=ref.dtype)
            bound = 1.0 / math.sqrt(num_classes)
            nn.init.uniform_(self.classifier.weight, -bound, bound)
            nn.init.zeros_(self.classifier.bias)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    # --- forward ----------------------------------------------------------------------------
    def _run_stage(self, stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if self.recompute == "off" or not torch.is_grad_enabled() or not (
                x.requires_grad or any(p.requires_grad for p in stage.parameters())):
            return stage(x)  # nothing to recompute: no backward pass reaches a frozen stage
        for block in stage:
            x = run_block(block, x, self.recompute)
        return x

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        # oneDNN runs these convs 1.2-1.5x faster on NHWC than on NCHW, which it would otherwise
        # reorder at every layer; the result differs only by float rounding (BENCHMARKS.md)
        if self.cpu_channels_last and x.device.type == "cpu" and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self._layout(x))
        for stage in self.stages:
            x = self._run_stage(stage, x)
        return self.head(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's feature map, in the memory format of `x` (the CPU layout is internal)."""
        y = self._features(x)
        return y if x.is_contiguous(memory_format=torch.channels_last) else y.contiguous()

    def forward_feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Maps at strides 2, 4, 8, 16, 32 (see `feature_info`), for detection/segmentation."""
        wanted = {info["stage"] for info in self.feature_info}
        maps = []
        x = self.stem(self._layout(x))
        for i, stage in enumerate(self.stages):
            x = self._run_stage(stage, x)
            if i in wanted:
                maps.append(x)
        return maps

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.pool(x).flatten(1))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self._features(x))
