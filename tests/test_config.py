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


# --- files of earlier versions, written while the spec held the preprocessing ------------------------
# the published Lite0's preprocessing as those files hold it (JSON lists), where the zoo's is bilinear
OLD_PREPROCESS = {"train_size": 224, "eval_size": 224, "crop_pct": 0.875, "interpolation": "bicubic",
                  "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop_mode": "center"}


def _old_spec(name: str) -> dict:
    return {**spec_to_dict(effnet.get_spec(name)), "preprocess": OLD_PREPROCESS}


def test_files_of_earlier_versions_rebuild_the_network_and_its_preprocessing(tmp_path):
    from safetensors.torch import save_file

    from effnet.arch.preprocess import HALF, Preprocess
    from effnet.data.config import resolve_data_config
    from effnet.inference import load_for_inference

    name = "tf_efficientnet_lite0"
    expect = Preprocess(224, 224, crop_pct=0.875, interpolation="bicubic", mean=HALF, std=HALF)
    model = effnet.create_model(name, num_classes=3).eval()
    config_1 = {"format": "effnet-model-config/1", "spec": _old_spec(name), "num_classes": 3,
                "in_chans": 3, "bn_eps": 1e-3, "bn_momentum": 0.01, "tf_padding": True}
    forms = {  # a 0.1.0 run, a run of the config's first format, a searched spec
        "v010": {"model": name, "spec": _old_spec(name), "num_classes": 3, "in_chans": 3, "tf": True,
                 "classes": ["a", "b", "c"]},
        "config1": {"model": name, "config": config_1, "classes": ["a", "b", "c"]},
    }
    x = torch.randn(1, 3, 64, 64)
    for form, content in forms.items():
        run = tmp_path / form
        run.mkdir()
        (run / "spec.json").write_text(json.dumps(content))
        save_file(model.state_dict(), str(run / "best.safetensors"))
        config = read_config_file(run / "spec.json")
        assert (config.spec, config.preprocess, config.bn_eps) == (model.spec, expect, 1e-3), form
        rebuilt, classes = load_for_inference(None, run / "best.safetensors")
        assert classes == ["a", "b", "c"] and resolve_data_config(rebuilt) == expect, form
        with torch.no_grad():
            assert torch.equal(model(x), rebuilt(x)), form
    (tmp_path / "best.json").write_text(json.dumps(_old_spec(name)))
    assert read_config_file(tmp_path / "best.json").preprocess == expect
    # the config an older effnet wrote into a safetensors file
    path = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(path), metadata={"format": "effnet", "config": json.dumps(config_1)})
    rebuilt, _ = load_for_inference(None, path)
    assert rebuilt.config.preprocess == expect and rebuilt.config.bn_eps == 1e-3


def test_files_written_now_keep_the_form_earlier_versions_read():
    model = effnet.create_model("tf_efficientnet_lite0.in1k", num_classes=3)
    d = model.config.to_dict()
    assert d["format"] == "effnet-model-config/1" and "preprocess" not in d
    assert d["spec"]["preprocess"]["interpolation"] == "bicubic"  # inside the spec, as before
    assert ModelConfig.from_dict(d) == model.config
