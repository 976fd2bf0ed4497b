"""The config of the network that holds a published row's weights, for the model factory
(effnet.models) and for converting a fetched file (hub.py) alike."""

from __future__ import annotations

from ..arch.config import ModelConfig
from ..arch.conventions import zoo_config
from .table import PretrainedWeights


def row_config(row: PretrainedWeights) -> ModelConfig:
    """The config of the network holding a row's weights: its model's conventions, the BatchNorm
    eps of the row's source (effnet.weights decides it per source), its class count and the
    preprocessing the weights were trained with."""
    # effnet.weights imports torch, which listing or finding rows does not need
    from ..weights import source_bn_eps

    config = zoo_config(row.model)
    eps = source_bn_eps(row.key_map, config.spec, {})
    return config.with_(num_classes=row.num_classes, preprocess=row.preprocess,
                        bn_eps=config.bn_eps if eps is None else eps)
