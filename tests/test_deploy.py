"""`effnet deploy RUN --int8`, and `eval` / `predict` of what it writes: each file exists and is what
it says (ONNX with dynamic batch and size and its classes and preprocessing in metadata_props;
int8 files quantized), deploy.json's top-1 of each file equals `effnet eval` of that file on the
same split, `predict --csv` streams a folder of 1,000 images a batch at a time, and `eval --data`
of a folder of class folders scores every image, matched to the model's classes by name."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import warnings
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from effnet.cli import main
from test_report import CLASSES, VAL_SPLIT, train_colours

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_colours(tmp_path_factory.mktemp("deploy"))


@pytest.fixture(scope="module")
def deployed(trained):
    """(run, data, RUN/deploy, deploy.json, stderr) of `effnet deploy RUN --int8`."""
    pytest.importorskip("torchao")
    run, data = trained
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["deploy", str(run), "--int8", "--calib-images", "32", "--reps", "2"])
    assert rc == 0, err.getvalue()
    out = run / "deploy"
    return run, data, out, json.loads((out / "deploy.json").read_text()), err.getvalue()


def _eval(capsys, *argv) -> dict[str, tuple[float, int, float]]:
    """`effnet eval ARGV`: file -> (top-1, images, loss) of each row it prints."""
    capsys.readouterr()
    assert main(["eval", *map(str, argv)]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines()[3:]:
        _, file, top1, _, loss, images = line.split()
        rows[file] = (float(top1), int(images), float(loss))
    return rows


def _one_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("effnet: error: "), err
    return err[0]


def _val_split(data: Path):
    from effnet.data import load_data

    with warnings.catch_warnings():  # the colour tree's broken.png
        warnings.simplefilter("ignore")
        return load_data(data, val_split=float(VAL_SPLIT), seed=0)


# --- deploy -----------------------------------------------------------------------------------

def test_deploy_writes_each_file_as_described(deployed):
    import onnx

    from effnet.data.config import resolve_data_config
    from effnet.inference import load_for_inference
    from effnet.rundir import RunDir
    from effnet.tools.export import load_program

    run, _, out, summary, _ = deployed
    names = [Path(f["file"]).name for f in summary["files"]]
    assert names == [RunDir(run).best_weights().name, "model.onnx", "model_int8.pt2", "model_int8.onnx"]
    for f in summary["files"]:
        assert Path(f["file"]).stat().st_size == f["bytes"] > 0
        assert f["latency_ms"]["1"] > 0 and f["latency_ms"]["32"] > 0
        assert f["images"] == summary["val"]["images"] == 24  # ceil(0.25 * 95 readable images)
    assert (out / "deploy.md").read_text().count("\n| ") == 1 + 4  # header and a row per file

    model, _ = load_for_inference(None, RunDir(run).best_weights())
    pre = resolve_data_config(model)
    fp32 = onnx.load(str(out / "model.onnx"))
    props = {p.key: p.value for p in fp32.metadata_props}
    assert json.loads(props["effnet.classes"]) == list(CLASSES)
    shown = json.loads(props["effnet.preprocess"])
    for key in ("eval_size", "crop_pct", "interpolation", "crop_mode"):
        assert shown[key] == getattr(pre, key), key
    assert shown["mean"] == list(pre.mean) and shown["std"] == list(pre.std)
    dims = fp32.graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True] and dims[1].dim_value == 3

    int8 = onnx.load(str(out / "model_int8.onnx"))
    props8 = {p.key: p.value for p in int8.metadata_props}
    assert json.loads(props8["effnet.classes"]) == list(CLASSES) and "QOperator" in props8["effnet.quantized"]
    assert props8["effnet.calib_images"] == "32"
    assert summary["calibration_images"] == 32 and summary["calibration_seed"] == 0
    scales = {i.name: i for i in int8.graph.initializer}
    convs = [n for n in int8.graph.node if n.op_type == "QLinearConv"]
    assert convs  # QLinearConv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, ...)
    for n in convs:  # U8S8: uint8 activations, int8 weights, one weight scale per output channel
        x_zp, w, w_scale = scales[n.input[2]], scales[n.input[3]], scales[n.input[4]]
        assert x_zp.data_type == onnx.TensorProto.UINT8 and w.data_type == onnx.TensorProto.INT8, n.name
        assert list(w_scale.dims) == [w.dims[0]] and w.dims[0] > 1, n.name
    assert not any(n.op_type == "Conv" for n in int8.graph.node)  # every conv runs in int8

    exported, classes = load_program(out / "model_int8.pt2")
    assert classes == list(CLASSES) and "int8" in exported.meta["effnet.quantized"]

    from effnet.inference import load_exported

    onnx_model, _ = load_exported(out / "model.onnx")  # dynamic: another batch and size
    x = torch.randn(3, 3, 48, 40)
    with torch.no_grad():
        assert (onnx_model(x) - model(x)).abs().max() < 1e-4


def test_deploy_top1_of_each_file_equals_effnet_eval_of_it(deployed, capsys):
    run, data, _, summary, _ = deployed
    top1 = {f["file"]: f["top1"] for f in summary["files"]}
    assert top1[str(run / "deploy" / "model.onnx")] == pytest.approx(summary["files"][0]["top1"], abs=1e-9)
    for f in summary["files"]:
        rows = _eval(capsys, "--weights", f["file"], "--data", data, "--val-split", VAL_SPLIT)
        got, images, loss = rows[f["file"]]
        assert abs(got - f["top1"]) <= 0.5, (f["file"], got, f["top1"])
        assert images == f["images"] and loss == pytest.approx(f["loss"], abs=1e-4)


def test_an_int8_file_that_loses_more_than_a_point_is_one_warning_line(deployed):
    from effnet.tools.deploy import Scored, compare_to_fp32

    *_, summary, err = deployed
    rows = [Scored(f["name"], f["file"], f["bytes"], top1=f["top1"]) for f in summary["files"]]
    expected = [f"effnet: warning: {line}" for line in compare_to_fp32(rows)]
    warned = [ln for ln in err.splitlines() if ln.startswith("effnet: warning:")]
    assert [ln for ln in warned if "unreadable image" not in ln] == expected  # the colours' broken.png aside


def test_calibration_draws_its_sample_with_the_seed(trained):
    """deploy's calibration images: the same seed, the same images; another seed, others (the
    benchmark's calibration seeds); the int8 files record how many."""
    from effnet.tools.deploy import calibration, load_run_model

    run, _ = trained
    with warnings.catch_warnings():  # the colour tree's broken.png
        warnings.simplefilter("ignore")
        rm = load_run_model(run, need_train=True)

    def images(seed):
        n, batches = calibration(rm.train_set, rm.pre, rm.pre.eval_size, 8, seed)
        return n, torch.cat(list(batches()))

    (n0, a), (_, again), (n1, b) = images(0), images(0), images(1)
    assert n0 == n1 == 8 < len(rm.train_set) and a.shape[0] == 8
    assert torch.equal(a, again) and not torch.equal(a, b)


def test_the_int8_warning_rule():
    from effnet.tools.deploy import Scored, compare_to_fp32

    rows = [Scored("fp32 PyTorch", "best.safetensors", 1, top1=90.0),
            Scored("ONNX fp32", "model.onnx", 1, top1=80.0),  # not int8: no warning (a wrong export shows in the table)
            Scored("int8 PT2E (.pt2)", "model_int8.pt2", 1, top1=88.5),
            Scored("int8 ONNX Runtime", "model_int8.onnx", 1, top1=89.0)]  # exactly one point: no warning
    assert compare_to_fp32(rows) == [
        "int8 PT2E (.pt2) (model_int8.pt2) loses 1.50 points of top-1 against fp32 (88.50 % vs 90.00 %)"]
    assert [r.top1_vs_fp32 for r in rows[1:]] == [-10.0, -1.5, -1.0]


def test_onnx_int8_without_calibration_batches_is_a_user_error(deployed, tmp_path):
    """Checked before onnxruntime's calibrator, which raises a ValueError of its own half-way."""
    from effnet.errors import UserError
    from effnet.tools.onnx_int8 import quantize_onnx_int8

    _, _, out, _, _ = deployed
    with pytest.raises(UserError, match="no calibration images"):
        quantize_onnx_int8(out / "model.onnx", tmp_path / "int8.onnx", iter([]), {})
    assert not list(tmp_path.iterdir())


def _moved_run(run: Path, tmp_path: Path, data: str) -> Path:
    """A copy of the run whose config names `data` (a folder that is gone)."""
    moved = tmp_path / "run"
    shutil.copytree(run, moved, ignore=shutil.ignore_patterns("deploy"))
    config = yaml.safe_load((moved / "config.yaml").read_text())
    config["runtime"]["data"] = data
    (moved / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return moved


def test_deploy_of_a_run_whose_data_is_gone(trained, tmp_path, capsys):
    run, _ = trained
    gone = str(tmp_path / "gone")
    moved = _moved_run(run, tmp_path, gone)
    # int8 needs the training images to calibrate on: refused before anything is written
    assert main(["deploy", str(moved), "--int8"]) == 2
    line = _one_error_line(capsys)
    assert "no calibration images" in line and f"data directory not found: {gone}" in line
    assert not (moved / "deploy").exists()
    # without int8 the files, sizes and latencies come, then one line says top-1 is missing
    assert main(["deploy", str(moved), "--reps", "1"]) == 2
    line = _one_error_line(capsys)
    assert f"data directory not found: {gone}" in line and "without top-1" in line
    summary = json.loads((moved / "deploy" / "deploy.json").read_text())
    assert [f["top1"] for f in summary["files"]] == [None, None]
    assert (moved / "deploy" / "model.onnx").is_file() and summary["files"][1]["latency_ms"]["1"] > 0


def test_deploy_of_a_run_without_weights_is_one_line(trained, tmp_path, capsys):
    run, _ = trained
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.yaml", "spec.json"):
        shutil.copy(run / name, unfinished / name)
    assert main(["deploy", str(unfinished)]) == 2
    assert "cannot deploy" in _one_error_line(capsys)
    assert sorted(p.name for p in unfinished.iterdir()) == ["config.yaml", "spec.json"]


# --- predict ----------------------------------------------------------------------------------

def _many_images(root: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(1)
    files = []
    for i in range(n):
        sub = root / f"part{i // 100}" / ("deeper" if i % 2 else "")
        sub.mkdir(parents=True, exist_ok=True)
        files.append(sub / f"{i:04d}.png")
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(files[-1])
    return files


def test_predict_csv_streams_a_folder_a_batch_at_a_time(deployed, tmp_path, capsys, monkeypatch):
    import effnet.inference
    from effnet.data.config import resolve_data_config
    from effnet.inference import load_exported

    onnx_file = deployed[2] / "model.onnx"
    files = _many_images(tmp_path / "photos", 1000)
    (tmp_path / "photos" / "part3" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "photos" / "notes.txt").write_text("not an image")

    # every image the predict path decodes and preprocesses, alive until its tensor is freed
    live = {"now": 0, "peak": 0}
    real = effnet.inference.preprocess_image

    def counted(*args, **kwargs):
        t = real(*args, **kwargs)
        live["now"] += 1
        live["peak"] = max(live["peak"], live["now"])
        weakref.finalize(t, lambda: live.__setitem__("now", live["now"] - 1))
        return t

    monkeypatch.setattr(effnet.inference, "preprocess_image", counted)
    model, classes = load_exported(onnx_file)
    pre = resolve_data_config(model)
    held = [counted(f, pre) for f in files[:40]]  # the counter sees images that are kept
    assert live["peak"] == 40
    del held
    assert live["now"] == 0
    live["peak"] = 0

    out = tmp_path / "answers.csv"
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "photos"), "--weights", str(onnx_file), "--csv", str(out),
                 "-b", "16", "--topk", "2"]) == 0
    got = capsys.readouterr()
    assert live["peak"] <= 16, f"{live['peak']} decoded images alive at once: not streamed a batch at a time"
    assert "img" in got.err  # the progress bar
    assert [ln for ln in got.err.splitlines() if ln.startswith("effnet: warning:")] == [
        f"effnet: warning: skipped 1 unreadable image(s) of 1001 (first: cannot read image "
        f"{tmp_path / 'photos' / 'part3' / 'broken.png'}: cannot identify image file "
        f"'{tmp_path / 'photos' / 'part3' / 'broken.png'}')"]
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == sorted(str(p) for p in files)  # every image once, walk order
    assert list(rows[0]) == ["path", "label_1", "prob_1", "label_2", "prob_2"]
    first = next(r for r in rows if r["path"] == str(files[7]))
    with torch.no_grad():
        p, idx = model(real(files[7], pre)[None]).softmax(-1)[0].topk(2)
    assert [first["label_1"], first["label_2"]] == [classes[i] for i in idx.tolist()]
    assert [float(first["prob_1"]), float(first["prob_2"])] == pytest.approx(p.tolist(), abs=2e-6)


def test_predict_reads_each_file_deploy_writes(deployed, capsys):
    run, data, out, *_ = deployed
    image = data / "red" / "03.png"
    answers = {}
    for weights in (run, out / "model.onnx", out / "model_int8.pt2", out / "model_int8.onnx"):
        capsys.readouterr()
        assert main(["predict", str(image), "--weights", str(weights), "--topk", "1"]) == 0
        got = capsys.readouterr()
        assert got.err.strip() == "" or all(not ln.startswith("effnet:") for ln in got.err.splitlines())
        _, _, label, prob = got.out.splitlines()[1].split()
        assert label in CLASSES
        answers[weights.name] = (label, float(prob))
    assert answers["model.onnx"][0] == answers[run.name][0]
    assert answers["model.onnx"][1] == pytest.approx(answers[run.name][1], abs=1e-4)


def test_predict_csv_that_fails_half_way_keeps_the_previous_file(trained, tmp_path, capsys):
    run, data = trained
    out = tmp_path / "answers.csv"
    out.write_text("the previous answers\n")
    bad = tmp_path / "bad.jpg"  # named on the command line, after a folder: an error once rows were written
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["predict", str(data / "red"), str(bad), "--weights", str(run), "--csv", str(out),
                 "-b", "4", "--no-progress"]) == 2
    assert "cannot read image" in _one_error_line(capsys)
    assert out.read_text() == "the previous answers\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.csv", "bad.jpg"]  # no temporary left


def test_predict_of_a_folder_without_images_is_one_line(trained, tmp_path, capsys):
    run, _ = trained
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert main(["predict", str(tmp_path / "empty"), "--weights", str(run), "--csv", str(tmp_path / "o.csv")]) == 2
    assert "no images in" in _one_error_line(capsys)
    assert not (tmp_path / "o.csv").exists()


# --- eval of a folder of class folders --------------------------------------------------------

def test_eval_of_a_class_folder_equals_eval_of_the_same_images_via_the_split(trained, tmp_path, capsys):
    run, data = trained
    split = _val_split(data)
    tree = tmp_path / "val_only"
    for i in split.val.indices:  # the split's val images, copied into class folders
        path, label = split.val.base.samples[i]
        (tree / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tree / CLASSES[label] / Path(path).name)
    via_split = _eval(capsys, "--weights", run, "--data", data, "--val-split", VAL_SPLIT)
    whole = _eval(capsys, "--weights", run, "--data", tree)
    assert via_split.keys() == whole.keys() and len(whole) >= 1
    for file, (top1, images, loss) in whole.items():
        assert (top1, images) == via_split[file][:2] and images == len(split.val)
        assert loss == pytest.approx(via_split[file][2], abs=1e-4)


def test_eval_matches_class_folders_to_the_models_classes_by_name(trained, tmp_path, capsys):
    from effnet.data import Transformed, eval_transform
    from effnet.data.config import resolve_data_config
    from effnet.data.folders import scan_folder
    from effnet.inference import load_for_inference

    run, data = trained
    tree = tmp_path / "two"
    for c in ("yellow", "red"):  # a subset, and sorted they would be labels 0 and 1
        shutil.copytree(data / c, tree / c, ignore=shutil.ignore_patterns("broken.png"))
    model, classes = load_for_inference(None, run / "best.safetensors")
    pre = resolve_data_config(model)
    images = scan_folder(tree)  # the folders' own order: red 0, yellow 1
    x = Transformed(images, eval_transform(pre, pre.eval_size))
    with torch.no_grad():
        preds = torch.cat([model(torch.stack([x[i][0] for i in range(j, min(j + 16, len(x)))]))
                           for j in range(0, len(x), 16)]).argmax(1)
    by_name = torch.tensor([classes.index(images.classes[t]) for t in images.targets])
    by_order = torch.tensor(images.targets)
    expected = 100.0 * (preds == by_name).float().mean().item()
    assert expected != pytest.approx(100.0 * (preds == by_order).float().mean().item())  # the test tells them apart
    got = _eval(capsys, "--weights", run / "best.safetensors", "--data", tree)
    assert got[str(run / "best.safetensors")][:2] == (pytest.approx(expected, abs=0.005), len(images))


def test_eval_of_a_class_folder_the_model_does_not_know_is_one_line(trained, tmp_path, capsys):
    run, data = trained
    tree = tmp_path / "odd"
    shutil.copytree(data / "blue", tree / "blue")
    shutil.copytree(data / "red", tree / "purple")
    assert main(["eval", "--weights", str(run), "--data", str(tree)]) == 2
    line = _one_error_line(capsys)
    assert f"{tree} has class folder(s) that {run / 'best.safetensors'} does not know: purple" in line
    assert "blue, green, red, yellow" in line
