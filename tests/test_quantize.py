"""effnet quantize: a digits model trained here, calibrated on a handful of real digit images, gives
an int8 .pt2 that `effnet eval` and `effnet predict` run and whose predictions agree with fp32."""

from __future__ import annotations

import re

import pytest
import torch

from effnet.cli import main
from effnet.data import Transformed, eval_transform, load_data
from effnet.data.config import resolve_data_config
from effnet.inference import load_for_inference
from effnet.tools.quantize import calibration_batches, find_images, quantize_int8

pytest.importorskip("torchao")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A 3-epoch quick-recipe run on the built-in digits (~85-90 % val top-1), and a folder of 16
    of its training images as PNGs for calibration."""
    root = tmp_path_factory.mktemp("q")
    torch.set_num_threads(1)
    run = root / "run"
    assert main(["train", "--epochs", "3", "--output", str(run), "--no-progress", "--no-tensorboard"]) == 0
    calib = root / "calib"
    splits = load_data(None)
    for i in range(16):
        image, label = splits.train[i]
        (calib / str(label)).mkdir(parents=True, exist_ok=True)
        image.save(calib / str(label) / f"{i}.png")
    return run, calib, splits


@pytest.fixture(scope="module")
def int8_file(digits_run):
    run, calib, _ = digits_run
    assert main(["quantize", str(run), "--calib", str(calib), "--images", "16"]) == 0
    return run / "model_int8.pt2"


def _val_predictions(model, splits) -> torch.Tensor:
    pre = resolve_data_config(model)
    data = Transformed(splits.val, eval_transform(pre, pre.eval_size))
    x = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        return model(x).argmax(-1)


@pytest.mark.slow  # shares a digits training run + quantization (~30 s on one free core)
def test_int8_predictions_agree_with_fp32_on_digits(digits_run, int8_file):
    run, _, splits = digits_run
    fp32, _ = load_for_inference(None, run / "best.safetensors")
    int8, classes = load_for_inference(None, int8_file)
    assert classes == [str(i) for i in range(10)]
    a, b = _val_predictions(fp32, splits), _val_predictions(int8, splits)
    labels = torch.tensor([splits.val[i][1] for i in range(len(splits.val))])
    assert (a == labels).float().mean() > 0.7  # the fp32 model learned: agreement means something
    agree = (a == b).float().mean().item()
    assert agree >= 0.9, f"int8 agrees with fp32 on only {agree:.1%} of {len(a)} val digits"


@pytest.mark.slow  # shares a digits training run + quantization (~30 s on one free core)
def test_eval_and_predict_run_the_int8_file(digits_run, int8_file, capsys, tmp_path):
    run, _, splits = digits_run
    capsys.readouterr()
    assert main(["eval", "--weights", str(run / "best.safetensors")]) == 0
    assert main(["eval", "--weights", str(int8_file)]) == 0
    out = capsys.readouterr().out
    top1 = [float(m) for m in re.findall(r"\.(?:safetensors|pt2)\s+([\d.]+)", out)]
    assert len(top1) == 3  # fp32, its EMA, int8
    assert abs(top1[2] - top1[0]) <= 5.0, out
    image, label = splits.val[0]
    path = tmp_path / "digit.png"
    image.save(path)
    assert main(["predict", str(path), "--weights", str(int8_file), "--topk", "1"]) == 0
    assert re.search(r"1\.\s+\d\s+\d", capsys.readouterr().out)


@pytest.mark.slow  # shares a digits training run + quantization (~30 s on one free core)
def test_keeping_se_in_float_leaves_its_convs_unquantized(digits_run):
    """--keep-float se: the squeeze-excite 1x1 convs keep float weights (fewer int8 weights)."""
    run, calib, _ = digits_run
    fp32, _ = load_for_inference(None, run / "best.safetensors")
    files = find_images(calib, 4)

    def int8_weights(keep):
        m = quantize_int8(fp32, calibration_batches(files, resolve_data_config(fp32), 32), 32, keep)
        return sum(1 for n in m.graph.nodes if "dequantize_per_channel" in str(n.target))

    n_se = sum(1 for b in fp32.blocks() if hasattr(b.se, "reduce"))
    assert n_se > 0
    assert int8_weights(()) - int8_weights(("se",)) == 2 * n_se  # reduce + expand per block


def test_the_int8_file_holds_int8_weights_and_runs_as_the_converted_module(tmp_path):
    """Lite0 (3.4 M weights, 13.7 MB in fp32): every conv/linear weight the .pt2 stores is int8,
    none also in float32 (convert_pt2e leaves the float weights it folded registered, and
    torch.export saved them too: the file was 1.3x the fp32 one), so the file is under a third of
    the fp32 weights file; loaded back it gives the converted module's logits."""
    import json
    import zipfile

    import effnet
    from effnet.tools.export import load_program
    from effnet.tools.quantize import save_int8
    from effnet.weights import save_weights

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = effnet.create_model("tf_efficientnet_lite0", num_classes=10).eval()
    converted = quantize_int8(model, [torch.randn(8, 3, 32, 32)], 32)
    pt2, fp32 = save_int8(converted, model, None, 32, tmp_path / "m.pt2"), tmp_path / "m.safetensors"
    save_weights(model, fp32)
    with zipfile.ZipFile(pt2) as zf:
        name = next(n for n in zf.namelist() if n.endswith("weights_config.json"))
        stored = json.loads(zf.read(name))["config"]
    float32, int8 = 7, 2  # torch._export.serde.schema.ScalarType
    kernels = {k: v["tensor_meta"]["dtype"] for k, v in stored.items()
               if len(v["tensor_meta"]["sizes"]) > 1}  # 4-d conv and 2-d linear weights
    assert len(kernels) == sum(1 for n, p in model.named_parameters() if p.dim() > 1) == 50
    assert set(kernels.values()) == {int8}
    assert not any(d == float32 and k.endswith(".weight") for k, d in kernels.items())
    ratio = pt2.stat().st_size / fp32.stat().st_size
    assert ratio < 0.35, f"int8 .pt2 is {ratio:.2f}x the fp32 weights file"
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_program(pt2)[0](x), converted(x))


@pytest.mark.parametrize("argv, message", [
    (["quantize", "efficientnet_b0", "--calib", "{empty}"], "no images in"),
    (["quantize", "efficientnet_b0", "--calib", "/nonexistent-dir"], "no such directory"),
    (["quantize", "efficientnet_b0", "--calib", "{empty}", "--keep-float", "head"], "unknown part 'head'"),
    (["quantize", "efficientnet_b0", "--calib", "{empty}", "--images", "0"], "--images must be >= 1"),
])
def test_quantize_user_errors_are_one_line_exit_2(capsys, tmp_path, argv, message):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    argv = [a.replace("{empty}", str(tmp_path / "empty")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow  # shares a digits training run + quantization (~30 s on one free core)
def test_train_refuses_an_int8_file_as_weights(int8_file, capsys, tmp_path):
    capsys.readouterr()
    assert main(["train", "--weights", str(int8_file), "--epochs", "1", "--output", str(tmp_path / "r"),
                 "--no-progress", "--no-tensorboard"]) == 2
    err = capsys.readouterr().err
    assert "not weights" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow  # shares a digits training run + quantization (~30 s on one free core)
def test_eval_at_a_size_the_int8_file_was_not_made_for_is_one_line(int8_file, capsys):
    capsys.readouterr()
    assert main(["eval", "--weights", str(int8_file), "--img-size", "48"]) == 2
    err = capsys.readouterr().err
    assert "exported for 32 px" in err and len(err.strip().splitlines()) == 1


def test_running_an_int8_file_prints_no_other_librarys_log_lines(digits_run, int8_file):
    """Loading torchao logs a torch deprecation warning about torchao's code (register_constant
    on an Enum); in a fresh process, `effnet predict` of the int8 file prints its answer and
    nothing on stderr."""
    import sys

    import procs

    run, calib, _ = digits_run
    image = next(calib.rglob("*.png"))
    done = procs.run([sys.executable, "-m", "effnet", "predict", str(image), "--weights",
                      str(int8_file), "--topk", "1"], timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    assert done.stdout.strip()
