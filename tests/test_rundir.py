"""The run directory object (effnet/rundir.py): the names it gives a run's files, a new run's
refusal of a non-empty directory, checkpoints published and linked as last/best, the weights a
user wants, the resume policy, and a run directory written by hand in the layout earlier versions
wrote (their runs must still resume and load)."""

import json
import os
from pathlib import Path

import pytest
import yaml

from effnet.errors import UserError
from effnet.rundir import EMA_FILE, MODEL_FILE, RESUMABLE_OPTIONS, STATE_FILE, RunDir, ema_twin, link_name

SRC = Path(__file__).resolve().parents[1] / "src" / "effnet"


def test_the_names_of_a_runs_files_are_those_earlier_runs_have(tmp_path):
    run = RunDir(tmp_path)
    assert str(run) == str(tmp_path) and Path(run) == tmp_path
    named = {run.config_file: "config.yaml", run.spec_file: "spec.json",
             run.summary_file: "summary.json", run.metrics_file: "metrics.csv",
             run.stages_file: "progressive.csv", run.tensorboard_dir: "tensorboard",
             run.checkpoints_dir: "checkpoints", run.plot("loss"): "loss.png",
             run.plot("accuracy"): "accuracy.png", run.plot("lr"): "lr.png",
             run.link("best"): "best.safetensors", run.link("best", ema=True): "best_ema.safetensors",
             run.link("last"): "last.safetensors", run.link("last", ema=True): "last_ema.safetensors",
             run.export_file(".onnx"): "model.onnx", run.export_file("_int8.pt2"): "model_int8.pt2"}
    for path, name in named.items():
        assert path == tmp_path / name
    assert (MODEL_FILE, EMA_FILE, STATE_FILE) == ("model.safetensors", "ema.safetensors", "state.pt")
    with pytest.raises(ValueError, match="loss, accuracy, lr"):
        run.plot("top1")
    assert run.saved_files(ema=False) == ["best.safetensors", "last.safetensors", "spec.json",
                                          "config.yaml", "metrics.csv", "*.png"]
    assert run.saved_files(ema=True)[:4] == ["best.safetensors", "best_ema.safetensors",
                                             "last.safetensors", "last_ema.safetensors"]


def test_a_new_run_refuses_a_non_empty_directory(tmp_path):
    assert RunDir.new(str(tmp_path / "a")).path == tmp_path / "a"
    (tmp_path / "empty").mkdir()
    assert RunDir.new(tmp_path / "empty").path == tmp_path / "empty"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("")
    message = (f"output directory {tmp_path / 'b'} already exists and is not empty; use --resume "
               f"{tmp_path / 'b'} to continue it, or another --output")
    with pytest.raises(UserError) as e:
        RunDir.new(tmp_path / "b")
    assert str(e.value) == message
    (tmp_path / "f").write_text("a file")
    with pytest.raises(UserError, match="already exists"):
        RunDir.new(tmp_path / "f")
    with pytest.raises(UserError, match=f"cannot create the run directory {tmp_path / 'f' / 'run'}"):
        RunDir(tmp_path / "f" / "run").mkdir()
    auto = Path(RunDir.default_path("efficientnet_b0"))
    assert auto.parent.name == "runs" and auto.name.endswith("-efficientnet_b0")


def _fill(tag: bytes, ema: bool = True):
    def fill(d: Path) -> None:
        (d / MODEL_FILE).write_bytes(b"model " + tag)
        if ema:
            (d / EMA_FILE).write_bytes(b"ema " + tag)
        (d / STATE_FILE).write_bytes(b"state " + tag)
    return fill


def test_checkpoints_are_published_linked_and_pruned(tmp_path):
    run = RunDir(tmp_path / "run")
    run.mkdir()
    assert not run.has_checkpoint()
    first = run.save_checkpoint(2, 1, _fill(b"1"), best=True)
    assert first == run.checkpoints_dir / "step-00000002" and run.latest_checkpoint() == first
    assert json.loads((run.checkpoints_dir / "LATEST").read_text()) == {
        "dir": "step-00000002", "global_step": 2, "epoch": 1}
    for kind in ("last", "best"):  # links: the checkpoint's very files
        assert run.link(kind).samefile(first / MODEL_FILE)
        assert run.link(kind, ema=True).read_bytes() == b"ema 1"
    (run.checkpoints_dir / ".tmp-step-00000004-99999").mkdir()  # left by a killed writer
    second = run.save_checkpoint(4, 2, _fill(b"2"))  # not the best: best stays at step 2
    assert run.latest_checkpoint() == second and not first.exists()
    assert run.link("last").read_bytes() == b"model 2" and run.link("best").read_bytes() == b"model 1"
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["LATEST", "step-00000004"]
    again = run.save_checkpoint(4, 2, _fill(b"3"))  # the same step saved twice
    assert again.name == "step-00000004-1" and run.latest_checkpoint() == again

    def dies(d: Path) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="cannot write checkpoint step-00000006 .No space left on "
                       "device.; the last saved checkpoint is kept in"):
        run.save_checkpoint(6, 3, dies)
    assert run.latest_checkpoint() == again and run.link("last").read_bytes() == b"model 3"
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["LATEST", "step-00000004-1"]


def test_latest_checkpoint_says_why_there_is_none(tmp_path):
    def refused(path, message):
        with pytest.raises(UserError) as e:
            RunDir(path).latest_checkpoint()
        assert str(e.value) == message

    refused(tmp_path / "missing", f"cannot resume: no such run directory: {tmp_path / 'missing'}")
    refused(tmp_path, f"cannot resume: {tmp_path} is not an effnet run directory with a "
                      f"checkpoint (no checkpoints/LATEST)")
    pointer = tmp_path / "checkpoints" / "LATEST"
    pointer.parent.mkdir()
    pointer.write_text("{not json")
    refused(tmp_path, f"cannot resume: {pointer} is damaged")
    pointer.write_text('{"dir": "../../etc"}')
    refused(tmp_path, f"cannot resume: {pointer} names a checkpoint that is missing: ../../etc")
    assert RunDir(tmp_path).has_checkpoint()  # published, but it does not load


def test_best_weights_are_the_ema_only_when_the_ema_scored_best(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(UserError, match=f"^{tmp_path} is not an effnet run directory .no best.safetensors.$"):
        run.best_weights()
    run.save_checkpoint(2, 1, _fill(b"1"), best=True)
    assert run.best_weights() == tmp_path / "best.safetensors"  # unfinished: no summary.json
    run.write_summary({"best": {"top1": 50.0, "epoch": 1, "weights": link_name("best", ema=True)}})
    assert run.best_weights() == tmp_path / "best_ema.safetensors"
    run.write_summary({"best": {"top1": 50.0, "epoch": 1, "weights": "best.safetensors"}})
    assert run.best_weights() == tmp_path / "best.safetensors"
    run.write_summary({"best": {"weights": "../../secret.safetensors"}})  # only the run's own links
    assert run.best_weights() == tmp_path / "best.safetensors"
    run.summary_file.write_text("{damaged")
    assert run.summary() is None and run.best_weights() == tmp_path / "best.safetensors"
    assert ema_twin(run.link("best")) == run.link("best", ema=True)
    assert ema_twin(run.link("best", ema=True)) is None


def test_a_resume_may_lengthen_and_move_a_run_but_not_change_what_it_learns(tmp_path):
    from effnet.train.options import RunOptions

    names = set(RESUMABLE_OPTIONS)
    assert {"device", "amp", "threads", "workers", "progress", "ckpt_every_steps"} <= names
    # these change what is trained: a resumed run must keep them
    assert not names & {"data", "val_split", "weights", "pretrained", "adapt", "num_classes",
                        "train_subset", "val_subset", "output", "resume"}
    assert names <= set(RunOptions.__dataclass_fields__)  # a renamed option is not silently fixed

    run = RunDir(tmp_path)
    run.check_resume({"epochs": 9, "steps": 0}, {"device": "cpu", "threads": 1, "resume": str(run)})
    with pytest.raises(UserError) as e:
        run.check_resume({"epochs": 9, "lr": 0.1}, {"device": "cpu", "data": "x"}, "recipe")
    assert str(e.value) == "--resume continues the saved recipe; these cannot change: lr, data, recipe"

    saved = {"model": "efficientnet_b0", "lr": 0.006, "epochs": 2, "steps": 0}
    run.check_recipe(saved, {**saved, "epochs": 4})
    with pytest.raises(UserError) as e:
        run.check_recipe(saved, {**saved, "epochs": 4, "lr": 0.1, "seed": 1})
    assert str(e.value) == f"cannot resume {tmp_path} with a different recipe (changed: lr, seed)"


def test_saved_config_of_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(UserError) as e:
        RunDir(tmp_path).saved_config()
    assert str(e.value) == f"cannot resume: {tmp_path} is not an effnet run directory (no config.yaml)"
    (tmp_path / "config.yaml").write_text("not: a run\n")
    with pytest.raises(UserError) as e:
        RunDir(tmp_path).saved_config()
    assert str(e.value) == f"cannot resume: {tmp_path / 'config.yaml'} is damaged"


def _previous_layout(run: Path, spec_json: dict) -> None:
    """A finished run with EMA as effnet wrote it before RunDir, file by file, spelled by hand."""
    import torch

    import effnet
    from effnet.train.presets import get_recipe
    from effnet.weights import save_weights

    step = run / "checkpoints" / "step-00000004"
    step.mkdir(parents=True)
    recipe = get_recipe("quick").to_dict()
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"recipe": recipe, "runtime": {"output": str(run), "threads": 1, "train_subset": 64},
         "world_size": 1, "global_batch": 32, "peak_lr": 0.006, "steps_per_epoch": 2,
         "total_steps": 4, "torch": str(torch.__version__), "command": ["effnet", "train"]},
        sort_keys=False))
    (run / "spec.json").write_text(json.dumps(spec_json, indent=1))
    torch.manual_seed(0)
    save_weights(effnet.create_model("efficientnet_lite0", num_classes=3), step / "model.safetensors")
    save_weights(effnet.create_model("efficientnet_lite0", num_classes=3), step / "ema.safetensors")
    (step / "state.pt").write_bytes(b"(a training state)")
    (run / "checkpoints" / "LATEST").write_text(json.dumps(
        {"dir": "step-00000004", "global_step": 4, "epoch": 2}))
    for kind in ("last", "best"):
        os.link(step / "model.safetensors", run / f"{kind}.safetensors")
        os.link(step / "ema.safetensors", run / f"{kind}_ema.safetensors")
    (run / "summary.json").write_text(json.dumps(
        {"run_dir": str(run), "best": {"top1": 60.0, "epoch": 2, "weights": "best_ema.safetensors"}}))


@pytest.mark.parametrize("spec_format", ["config", "0.1.0"])
def test_a_run_directory_of_the_previous_layout_reads_and_loads(tmp_path, spec_format):
    import effnet
    from effnet.arch.spec import spec_to_dict
    from effnet.inference import load_for_inference

    m = effnet.create_model("efficientnet_lite0", num_classes=3)
    spec_json = ({"model": "efficientnet_lite0", "config": m.config.to_dict(), "classes": ["a", "b", "c"]}
                 if spec_format == "config" else  # effnet 0.1.0: the spec, no model config
                 {"spec": spec_to_dict(m.spec), "num_classes": 3, "classes": ["a", "b", "c"]})
    _previous_layout(tmp_path, spec_json)
    run = RunDir(tmp_path)
    recipe, runtime = run.saved_config()
    assert recipe["name"] == "quick" and runtime["train_subset"] == 64
    assert run.model_config().layers() == m.config.layers() and run.classes() == ["a", "b", "c"]
    assert run.latest_checkpoint() == tmp_path / "checkpoints" / "step-00000004"
    assert run.has_checkpoint() and run.summary()["best"]["epoch"] == 2
    assert run.best_weights() == tmp_path / "best_ema.safetensors"
    model, classes = load_for_inference(None, run.best_weights())
    assert classes == ["a", "b", "c"] and model.num_classes == 3
    # a resume of it may lengthen it: the recipe it saved is the one it compares with
    run.check_recipe(recipe, {**recipe, "epochs": recipe["epochs"] + 2})


def test_predict_and_the_deploy_commands_take_a_run_directory_and_its_best_scoring_weights(tmp_path, capsys):
    import torch
    from PIL import Image
    from safetensors.torch import load_file

    import effnet
    from effnet.cli import main
    from effnet.cli.deploy_cmds import load_source

    m = effnet.create_model("efficientnet_lite0", num_classes=3)
    _previous_layout(tmp_path / "run", {"config": m.config.to_dict(), "classes": ["a", "b", "c"]})
    model, classes, run = load_source(str(tmp_path / "run"), None, None)
    ema = load_file(str(tmp_path / "run" / "best_ema.safetensors"))  # summary.json: the EMA won
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items() if k in ema)
    assert classes == ["a", "b", "c"] and run.export_file(".onnx") == tmp_path / "run" / "model.onnx"
    image = tmp_path / "x.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(image)
    capsys.readouterr()
    assert main(["predict", str(image), "--weights", str(tmp_path / "run"), "--topk", "1"]) == 0
    assert capsys.readouterr().out.split()[3] in ("a", "b", "c")  # "x.png: 1. <index> <class> <p>"
