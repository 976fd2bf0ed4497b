"""The model config value: it rebuilds the same network from every file form it is stored in."""

import json

import torch

import effnet
from effnet.arch.config import ModelConfig, read_config_file
from effnet.arch.spec import spec_to_dict


def test_config_round_trips_and_rebuilds_the_network(tmp_path):
    model = effnet.create_model("tf_efficientnetv2_b0", num_classes=7, in_chans=1).eval()
    config = model.config
    assert (config.num_classes, config.in_chans, config.bn_eps, config.tf_padding) == (7, 1, 1e-3, True)
    assert ModelConfig.from_json(config.to_json()) == config
    forms = {  # a config file, a run's spec.json, a bare spec (a searched architecture)
        "config.json": config.to_dict(),
        "spec.json": {"model": "x", "config": config.to_dict(), "classes": list("abcdefg")},
        "best.json": spec_to_dict(config.spec),
    }
    for name, content in forms.items():
        (tmp_path / name).write_text(json.dumps(content))
    assert read_config_file(tmp_path / "config.json") == config
    assert read_config_file(tmp_path / "spec.json") == config
    assert read_config_file(tmp_path / "best.json") == ModelConfig(config.spec)
    rebuilt = effnet.create_model(str(tmp_path / "spec.json")).eval()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))


def test_a_spec_json_of_effnet_0_1_0_still_reads(tmp_path):
    spec = effnet.get_spec("tf_efficientnet_lite0")
    (tmp_path / "spec.json").write_text(json.dumps(
        {"model": "tf_efficientnet_lite0", "spec": spec_to_dict(spec), "num_classes": 3,
         "in_chans": 3, "tf": True, "classes": ["a", "b", "c"]}))
    config = read_config_file(tmp_path / "spec.json")
    assert (config.spec, config.num_classes, config.bn_eps, config.tf_padding) == (spec, 3, 1e-3, True)
