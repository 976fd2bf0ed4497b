"""A fine-tune keeps the conventions of the weights it started from: BN eps 1e-3 of torchvision's
V2 weights survives a resume (it used to come back as the architecture's 1e-5), the resumed run
ends bit-identical to an uninterrupted one, and `effnet eval` of the run reproduces its accuracy
without a warning."""

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from effnet.cli import main
from effnet.train import RunOptions, build_model, train
from effnet.train.presets import get_recipe
from effnet.train.recipe import override
from effnet.weights import module_map

# a V2-B0 shrunk by phi = -6 (fused and MBConv stages, so torchvision's V2 eps applies) on digits
RECIPE = {"model": "efficientnetv2_b0", "phi": -6, "batch_size": 32, "sched": "constant",
          "warmup_epochs": 0}


def _torchvision_file(tmp_path):
    """A torchvision-layout state dict for the run's network (what torchvision would save)."""
    torch.manual_seed(1)
    model = build_model(override(get_recipe("finetune"), RECIPE), num_classes=10)
    mmap = module_map(model, "torchvision")
    sd = {}
    for key, value in model.state_dict().items():
        module, _, leaf = key.rpartition(".")
        sd[f"{mmap[module]}.{leaf}"] = value + 0.01 * torch.rand_like(value) if value.is_floating_point() \
            else value
    path = tmp_path / "tv.pth"
    torch.save(sd, path)
    return path


def _run(tmp_path, name, epochs, weights=None, resume=None, samples=0):
    recipe = override(get_recipe("finetune"), {**RECIPE, "epochs": epochs})
    opts = RunOptions(output=str(tmp_path / name), weights=weights and str(weights), resume=resume,
                      train_subset=256, progress=False, tensorboard=False,
                      deterministic=True, threads=1, save_samples=samples)
    return train(recipe, opts)


@pytest.mark.slow
def test_resumed_finetune_keeps_torchvision_bn_eps_and_is_exact(tmp_path, capsys):
    weights = _torchvision_file(tmp_path)
    with pytest.warns(UserWarning, match="BatchNorm eps 0.001"):
        _run(tmp_path, "ref", epochs=2, weights=weights)
    with pytest.warns(UserWarning, match="BatchNorm eps 0.001"):
        _run(tmp_path, "run", epochs=1, weights=weights, samples=1)
    config = json.loads((tmp_path / "run" / "spec.json").read_text())["config"]
    assert config["bn_eps"] == 1e-3

    _run(tmp_path, "run", epochs=2, resume=str(tmp_path / "run"))  # lengthened to 2 epochs
    ref, run = (load_file(str(tmp_path / d / "last.safetensors")) for d in ("ref", "run"))
    assert ref.keys() == run.keys()
    assert all(torch.equal(ref[k], run[k]) for k in ref), "resumed run differs from the reference"

    # eval rebuilds the same network from the run's config: no eps warning, the logged accuracy
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    logged = next(r for r in csv.DictReader((tmp_path / "run" / "metrics.csv").open())
                  if int(r["epoch"]) == summary["best"]["epoch"])
    capsys.readouterr()
    assert main(["eval", "--weights", str(tmp_path / "run" / "best.safetensors")]) == 0
    image = next((tmp_path / "run" / "samples").glob("*.png"))
    assert main(["predict", str(image), "--weights", str(tmp_path / "run" / "best.safetensors"),
                 "--topk", "1"]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err  # the CLI shows effnet's warnings as `effnet: warning: ...` lines
    assert f" {float(logged['top1']):.2f} " in out
    assert image.name in out
