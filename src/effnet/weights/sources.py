"""Per-source rows: for each library whose EfficientNet weights effnet reads, how it names the
modules and what conventions its weights were trained with (BatchNorm eps, TF "same" padding).

Key maps are written out per source and per block layout (`ResidualBlock.layout`: the arch block
kind, with a 1 appended where expansion 1 leaves a conv out, as the papers write MBConv1), so a
reader can check each line against the source's module names; nothing is matched by shape or order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from ..arch.spec import NetSpec
from ..errors import UserError
from .files import saved_config

# BatchNorm eps the source's weights were trained with (SPEC G.1); timm and effnet files do not say,
# the model name (tf_ or not) does
LUKEMELAS_BN_EPS = 1e-3  # TF ports: V1 and Lite
TORCHVISION_V1_BN_EPS = 1e-5
TORCHVISION_V2_BN_EPS = 1e-3
# torchvision builds B5-B7 with eps 1e-3 too: their weights are lukemelas' TF ports
TORCHVISION_EPS_1E3_V1 = ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7")

Meta = Mapping[str, str]  # a safetensors file's metadata (empty for other files)


@dataclass(frozen=True)
class Source:
    """One library's layout. `top` and `block_prefix` are format strings: {head} is the head's
    index (torchvision), {stage}/{block} a block's place, {index} its number across stages."""

    name: str
    top: Mapping[str, str] = field(default_factory=dict)  # effnet module -> source module
    block_prefix: str = ""
    blocks: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # layout -> key map
    bn_eps: Callable[[NetSpec, Meta], float | None] = lambda spec, meta: None
    tf_padding: Callable[[Meta], bool] = lambda meta: False

    def top_map(self, num_stages: int) -> dict[str, str]:
        return {ours: theirs.format(head=num_stages + 1) for ours, theirs in self.top.items()}

    def prefix(self, stage: int, block: int, index: int) -> str:
        return self.block_prefix.format(stage=stage, stage1=stage + 1, block=block, index=index)


def _effnet_bn_eps(spec: NetSpec, meta: Meta) -> float | None:
    if "config" in meta:
        return saved_config(meta).bn_eps
    return float(meta["bn_eps"]) if "bn_eps" in meta else None  # files from before the config


def _effnet_tf_padding(meta: Meta) -> bool:
    return meta.get("tf_padding") == "true" or ("config" in meta and saved_config(meta).tf_padding)


def _torchvision_bn_eps(spec: NetSpec, meta: Meta) -> float:
    if any(s.block == "fused" for s in spec.stages) or (
            spec.name.removeprefix("tf_") in TORCHVISION_EPS_1E3_V1):
        return TORCHVISION_V2_BN_EPS
    return TORCHVISION_V1_BN_EPS


# effnet's own files need no map: their keys are the model's
EFFNET = Source("effnet", bn_eps=_effnet_bn_eps, tf_padding=_effnet_tf_padding)

# bn_eps None: tf_ weights use 1e-3, others 1e-5; only the model name tells
TIMM = Source(
    "timm",
    top={"stem.conv": "conv_stem", "stem.bn": "bn1", "head.conv": "conv_head", "head.bn": "bn2",
         "classifier": "classifier"},
    block_prefix="blocks.{stage}.{block}",
    blocks={
        "mbconv": {"expand.conv": "conv_pw", "expand.bn": "bn1", "dw.conv": "conv_dw", "dw.bn": "bn2",
                   "se.reduce": "se.conv_reduce", "se.expand": "se.conv_expand",
                   "project.conv": "conv_pwl", "project.bn": "bn3"},  # InvertedResidual
        "mbconv1": {"dw.conv": "conv_dw", "dw.bn": "bn1",
                       "se.reduce": "se.conv_reduce", "se.expand": "se.conv_expand",
                       "project.conv": "conv_pw", "project.bn": "bn2"},  # DepthwiseSeparableConv
        "fused": {"conv.conv": "conv_exp", "conv.bn": "bn1",
                  "se.reduce": "se.conv_reduce", "se.expand": "se.conv_expand",
                  "project.conv": "conv_pwl", "project.bn": "bn2"},  # EdgeResidual
        "fused1": {"conv.conv": "conv", "conv.bn": "bn1"},  # ConvBnAct
    })

# torchvision: `features` holds the stem, one entry per stage, the head conv; blocks are `block`
# Sequentials of Conv2dNormActivation (.0 conv, .1 bn) and SqueezeExcitation (fc1, fc2); its MBConv
# always has SE and its FusedMBConv never does
TORCHVISION = Source(
    "torchvision",
    top={"stem.conv": "features.0.0", "stem.bn": "features.0.1", "head.conv": "features.{head}.0",
         "head.bn": "features.{head}.1", "classifier": "classifier.1"},
    block_prefix="features.{stage1}.{block}",
    blocks={
        "mbconv": {"expand.conv": "block.0.0", "expand.bn": "block.0.1",
                   "dw.conv": "block.1.0", "dw.bn": "block.1.1",
                   "se.reduce": "block.2.fc1", "se.expand": "block.2.fc2",
                   "project.conv": "block.3.0", "project.bn": "block.3.1"},
        "mbconv1": {"dw.conv": "block.0.0", "dw.bn": "block.0.1",
                       "se.reduce": "block.1.fc1", "se.expand": "block.1.fc2",
                       "project.conv": "block.2.0", "project.bn": "block.2.1"},
        "fused": {"conv.conv": "block.0.0", "conv.bn": "block.0.1",
                  "project.conv": "block.1.0", "project.bn": "block.1.1"},
        "fused1": {"conv.conv": "block.0.0", "conv.bn": "block.0.1"},
    },
    bn_eps=_torchvision_bn_eps)

# lukemelas' efficientnet-pytorch: TF ports (V1 and Lite), blocks numbered across stages
LUKEMELAS = Source(
    "lukemelas",
    top={"stem.conv": "_conv_stem", "stem.bn": "_bn0", "head.conv": "_conv_head",
         "head.bn": "_bn1", "classifier": "_fc"},
    block_prefix="_blocks.{index}",
    blocks={
        "mbconv": {"expand.conv": "_expand_conv", "expand.bn": "_bn0",
                   "dw.conv": "_depthwise_conv", "dw.bn": "_bn1",
                   "se.reduce": "_se_reduce", "se.expand": "_se_expand",
                   "project.conv": "_project_conv", "project.bn": "_bn2"},
        "mbconv1": {"dw.conv": "_depthwise_conv", "dw.bn": "_bn1",
                       "se.reduce": "_se_reduce", "se.expand": "_se_expand",
                       "project.conv": "_project_conv", "project.bn": "_bn2"},
    },
    bn_eps=lambda spec, meta: LUKEMELAS_BN_EPS,
    tf_padding=lambda meta: True)

SOURCES: dict[str, Source] = {s.name: s for s in (EFFNET, TIMM, TORCHVISION, LUKEMELAS)}
FORMATS = tuple(SOURCES)


def source(fmt: str) -> Source:
    if fmt not in SOURCES:
        raise UserError(f"unknown weights format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return SOURCES[fmt]


def detect_format(sd: Mapping[str, torch.Tensor]) -> str:
    """Which library's key layout a state dict uses: one of FORMATS."""
    keys = list(sd)
    if any(k.startswith("stem.") for k in keys) and any(k.startswith("stages.") for k in keys):
        return "effnet"
    if "_conv_stem.weight" in sd or any(k.startswith("_blocks.") for k in keys):
        return "lukemelas"
    if "conv_stem.weight" in sd or any(k.startswith("blocks.") for k in keys):
        return "timm"
    if "features.0.0.weight" in sd or any(k.startswith("features.") for k in keys):
        return "torchvision"
    raise UserError(f"unrecognised weights layout (first keys: {', '.join(keys[:3])}); expected "
                    f"effnet, timm, torchvision or lukemelas EfficientNet weights")
