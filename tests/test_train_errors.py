"""Bad input to `effnet train` / `effnet eval`: one line on stderr, exit 2, nothing written."""

import os
from pathlib import Path

import numpy as np
from PIL import Image

from effnet.cli import main

TINY = ["--phi", "-6", "--train-subset", "64", "-b", "32", "--epochs", "1", "--no-progress",
        "--no-tensorboard"]


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")} if root.exists() else {}


def _fails(capsys, argv, *expected, untouched: Path | None = None):
    before = _snapshot(untouched) if untouched else None
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("effnet: error: "), err
    for text in expected:
        assert text in err[0], err[0]
    if untouched is not None:
        assert _snapshot(untouched) == before
    return err[0]


def _image_folder(root: Path, classes=("a", "b"), per_class=4) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(
                root / c / f"{i}.png")
    return root


def test_missing_data_dir(tmp_path, capsys):
    out = tmp_path / "out"
    _fails(capsys, ["train", *TINY, "--data", str(tmp_path / "nope"), "--output", str(out)],
           "not found", str(tmp_path / "nope"))
    assert not out.exists()


def test_empty_class_folder(tmp_path, capsys):
    data = _image_folder(tmp_path / "data")
    (data / "c").mkdir()
    out = tmp_path / "out"
    _fails(capsys, ["train", *TINY, "--data", str(data), "--val-split", "0.25", "--output",
                    str(out)], "no images", str(data / "c"), untouched=data)
    assert not out.exists()


def test_corrupt_image_with_strict(tmp_path, capsys):
    data = _image_folder(tmp_path / "data")
    (data / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = tmp_path / "out"
    _fails(capsys, ["train", *TINY, "--data", str(data), "--val-split", "0.25", "--strict",
                    "--output", str(out)], "broken.png", untouched=data)
    assert not out.exists()


def test_resume_of_a_foreign_directory(tmp_path, capsys):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "config.yaml").write_text("not: a run\n")
    (foreign / "holiday.txt").write_text("keep me")
    _fails(capsys, ["train", "--resume", str(foreign)], "cannot resume", str(foreign),
           untouched=foreign)
    _fails(capsys, ["train", "--resume", str(tmp_path / "missing")], "not an effnet run")


def test_batch_size_zero_and_unknown_recipe(tmp_path, capsys):
    out = tmp_path / "out"
    _fails(capsys, ["train", *TINY, "-b", "0", "--output", str(out)], "batch size must be >= 1")
    _fails(capsys, ["train", "--recipe", "paper-v9", "--output", str(out)],
           "unknown recipe 'paper-v9'", "paper-v1")
    _fails(capsys, ["train", "--set", "epoch=3", "--output", str(out)], "did you mean 'epochs'")
    assert not out.exists()


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _fails(capsys, ["train", *TINY, "--output", str(out)], "already exists", "--resume",
           untouched=out)


def test_more_batches_than_images_and_bad_model(tmp_path, capsys):
    out = tmp_path / "out"
    _fails(capsys, ["train", "--phi", "-6", "--train-subset", "16", "-b", "32", "--output",
                    str(out)], "fewer than one global batch")
    _fails(capsys, ["train", "--model", "efficientnet_b9", "--output", str(out)],
           "unknown model")
    assert not out.exists()


def test_resume_refuses_a_changed_recipe_and_eval_checks_its_input(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--val-subset", "32", "--output", str(run)]) == 0
    capsys.readouterr()
    _fails(capsys, ["train", "--resume", str(run), "--lr", "0.1"], "cannot change", "lr",
           untouched=run)
    _fails(capsys, ["eval", "--weights", str(tmp_path / "none.safetensors")], "no such weights")
    (tmp_path / "junk.safetensors").write_bytes(os.urandom(64))
    _fails(capsys, ["eval", "--model", "efficientnet_b0", "--weights",
                    str(tmp_path / "junk.safetensors")], "junk.safetensors")
