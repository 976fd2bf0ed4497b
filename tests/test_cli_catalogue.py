"""A catalogue of bad input to every command: each case ends with exactly one line on stderr naming
the problem, exit code 2, within a time bound, and leaves every existing file as it was (hashed
before and after) and nothing new in the working directory.

Flag errors run the real executable (the `effnet` console script beside this Python, else
`python -m effnet`); they never import torch (~0.2 s). Cases past the flag parser need torch, whose
import costs 4-12 s per process on a busy 2-core machine: they run in a fork of one process that
imported effnet once ("zygote", `_Zygote`); each case is still its own process, running
`effnet.cli.main` (all that the executable runs) with its own working directory, stdout, stderr and
exit status. A fixed sample of them that reaches every command (`REAL_SAMPLE`) also runs through
the real executable in a fresh process (`test_real_executable_refuses_too`), so nothing a fork
inherits from the zygote can hide a difference.
"""

import hashlib
import json
import os
import selectors
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import procs
from crafted import png_header_only

TIME_LIMIT_S = 90  # a hang detector, not a speed test: a refused input must not run for minutes
B0 = ["--model", "efficientnet_b0"]


class _RunsCode:
    """Unpickling this calls open(marker, "w"): the file appears only if the pickle ran code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Every bad input, made once; the tests below must leave all of it untouched."""
    import torch
    import yaml
    from safetensors.torch import save_file

    import effnet
    from effnet.train.presets import get_recipe

    d = tmp_path_factory.mktemp("catalogue")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(d / "ok.png")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 10)
    full = (d / "ok.png").read_bytes()
    big = d / "big.png"
    Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(big)
    (d / "truncated.png").write_bytes(big.read_bytes()[: len(big.read_bytes()) // 2])
    big.unlink()
    (d / "empty.jpg").write_bytes(b"")
    png_header_only(d / "bomb.png", 100_000, 100_000)  # 10 Gpx: PIL's error range
    png_header_only(d / "bomb_warn.png", 10_000, 10_000)  # 100 Mpx: PIL only warns here
    (d / "text.png").write_text("just text\n")
    assert full

    (d / "markers").mkdir()
    torch.save({"state_dict": _RunsCode(d / "markers" / "pwned")}, d / "evil.pth")
    # pickle protocols other than 2: torch's weights-only reader warns before it refuses (3: the
    # function it would call; 4: its FRAME opcode), which must not reach the user as more lines
    for protocol in (3, 4):
        torch.save({"state_dict": _RunsCode(d / "markers" / "pwned")}, d / f"evil{protocol}.pth",
                   pickle_protocol=protocol)
    evil_run = d / "evil_run"  # an effnet run whose training state would run code
    (evil_run / "checkpoints" / "step-00000001").mkdir(parents=True)
    (evil_run / "config.yaml").write_text(yaml.safe_dump(
        {"recipe": get_recipe("quick").to_dict(), "runtime": {}}))
    (evil_run / "checkpoints" / "LATEST").write_text('{"dir": "step-00000001"}')
    torch.save({"format": "effnet-train-state", "x": _RunsCode(d / "markers" / "pwned")},
               evil_run / "checkpoints" / "step-00000001" / "state.pt")

    sd = effnet.create_model("efficientnet_b0").state_dict()
    stem = "stem.conv.weight" if "stem.conv.weight" in sd else next(iter(sd))
    save_file({**sd, stem: torch.zeros(7, 3, 3, 3)}, str(d / "wrong_shape.safetensors"))
    save_file({k: v.to(torch.int32) if v.is_floating_point() else v for k, v in sd.items()},
              str(d / "wrong_dtype.safetensors"))
    # effnet-saved weights name their network: lite0's, and TF-padded B0's (B0's very shapes)
    from effnet.weights import save_weights

    save_weights(effnet.create_model("efficientnet_lite0", num_classes=2), d / "lite0.safetensors")
    save_weights(effnet.create_model("tf_efficientnet_b0", num_classes=2), d / "tf_b0.safetensors")
    (d / "lite0_run").mkdir()  # a run of lite0: spec.json beside its weights
    os.link(d / "lite0.safetensors", d / "lite0_run" / "best.safetensors")
    (d / "lite0_run" / "spec.json").write_text(json.dumps(
        {"config": effnet.create_model("efficientnet_lite0", num_classes=2).config.to_dict(),
         "classes": ["a", "b"]}))
    (d / "huge_header.safetensors").write_bytes(struct.pack("<Q", 10**12) + b"{")
    (d / "bad_header.safetensors").write_bytes(struct.pack("<Q", 16) + b"not json at all!")
    small = d / "small.safetensors"
    save_file({"a": torch.zeros(1000)}, str(small))
    (d / "truncated.safetensors").write_bytes(small.read_bytes()[:200])
    small.unlink()
    (d / "random.pth").write_bytes(os.urandom(2048))

    lightning = d / "lightning_logs" / "version_0"
    (lightning / "checkpoints").mkdir(parents=True)
    (lightning / "hparams.yaml").write_text("lr: 0.1\nbatch_size: 32\n")
    (lightning / "checkpoints" / "epoch=0-step=10.ckpt").write_bytes(os.urandom(512))
    timm_out = d / "timm_run"
    timm_out.mkdir()
    (timm_out / "args.yaml").write_text("model: efficientnet_b0\nepochs: 3\n")
    (timm_out / "summary.csv").write_text("epoch,train_loss\n0,6.9\n")
    (timm_out / "last.pth.tar").write_bytes(os.urandom(512))
    half_run = d / "half_run"  # an effnet-looking dir whose pointer names nothing
    (half_run / "checkpoints").mkdir(parents=True)
    (half_run / "config.yaml").write_text("recipe: {}\nruntime: {}\n")
    (half_run / "checkpoints" / "LATEST").write_text('{"dir": "../../etc"}')

    (d / "a_file.txt").write_text("a file where a directory is expected\n")
    (d / "bad.yaml").write_text("lr: [unclosed\n")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "coeffs_bad.json").write_text('{"alpha": 1.2}')
    (d / "coeffs_nan.json").write_text('{"alpha": NaN, "beta": 1.1, "gamma": 1.1}')
    (d / "data").mkdir()
    for c in ("a", "b"):
        (d / "data" / c).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(d / "data" / c / f"{i}.png")
    (d / "data_odd" / "c").mkdir(parents=True)  # a class folder lite0_run's model does not know
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(d / "data_odd" / "c" / "0.png")
    (d / "no_images" / "sub").mkdir(parents=True)  # a folder (and sub-folder) without images
    (d / "no_images" / "notes.txt").write_text("not an image\n")
    for c in ("a", "b"):  # class folders, all empty
        (d / "empty_classes" / c).mkdir(parents=True)
    (d / "corrupt.onnx").write_bytes(b"not an onnx model at all " * 12)
    for name, runtime, weights in (("no_weights_run", {}, False),  # stopped before its first epoch
                                   ("gone_data_run", {"data": str(d / "gone")}, True)):
        (d / name).mkdir()
        (d / name / "config.yaml").write_text(yaml.safe_dump(
            {"recipe": get_recipe("quick").to_dict(), "runtime": runtime}))
        (d / name / "spec.json").write_bytes((d / "lite0_run" / "spec.json").read_bytes())
        if weights:
            os.link(d / "lite0.safetensors", d / name / "best.safetensors")
    (d / "one_class" / "cat").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(d / "one_class" / "cat" / f"{i}.png")
    return d


# (argv with {ws} for the workspace, words the one stderr line must contain)
NO_TORCH = [
    (["frobnicate"], ["invalid choice", "frobnicate"]),
    ([], ["required", "command"]),
    (["models", "--bogus"], ["unrecognized arguments", "--bogus"]),
    (["scale", "--phi", "nan"], ["--phi", "finite"]),
    (["scale", "--phi", "inf"], ["--phi", "finite"]),
    (["scale", "--phi", "1", "--alpha=-inf"], ["--alpha", "finite"]),
    (["scale", "--phi", "1e999"], ["--phi", "finite"]),
    (["scale"], ["required", "--phi"]),
    (["profile", "efficientnet_b0", "--batch", "-1"], ["--batch", ">= 1"]),
    (["profile", "efficientnet_b0", "--size", "0"], ["--size", ">= 1"]),
    (["predict", "{ws}/ok.png", "--topk", "0"], ["--topk", ">= 1"]),
    (["predict", "{ws}/ok.png", *B0, "--num-classes", "0"], ["--num-classes", ">= 1"]),
    (["predict", "{ws}/ok.png", *B0, "--num-classes", "-3"], ["--num-classes", ">= 1"]),
    (["train", "--lr", "nan"], ["--lr", "finite"]),
    (["train", "--drop-path", "inf"], ["--drop-path", "finite"]),
    (["train", "--img-size", "-5"], ["--img-size", ">= 1"]),
    (["train", "--threads", "0"], ["--threads", ">= 1"]),
    (["train", "--amp", "fp8"], ["--amp", "invalid choice"]),
    (["eval", "--weights", "{ws}/ok.png", "-b", "0"], ["--batch-size", ">= 1"]),
    (["eval"], ["required", "--weights"]),
    (["schedule", "--stages", "0"], ["--stages", ">= 1"]),
    (["search", "compound", "--base", "efficientnet_b0", "--phi", "nan"], ["--phi", "finite"]),
    (["search", "compound", "--base", "efficientnet_b0", "--trials", "-1"], ["--trials", ">= 1"]),
    (["search"], ["required", "search_kind"]),
    (["experiment", "scaling", "--base", "efficientnet_b0", "--target-flops-ratio", "2",
      "--budget-epochs", "-1"], ["--budget-epochs", ">= 1"]),
]

WITH_TORCH = [
    # models, scale, profile
    (["models", "nothing*"], ["no model matches"]),
    (["scale", "--phi", "40"], ["too large to build", "blocks"]),
    (["scale", "--phi", "1", "--base", "efficientnet_b9"], ["unknown model", "efficientnet_b9"]),
    (["scale", "--phi", "1", "--coeffs", "{ws}"], ["is a directory", "{ws}"]),
    (["scale", "--phi", "1", "--coeffs", "{ws}/coeffs_bad.json"], ["coeffs_bad.json", "alpha, beta, gamma"]),
    (["scale", "--phi", "1", "--coeffs", "{ws}/coeffs_nan.json"], ["coeffs_nan.json", "finite"]),
    (["scale", "--phi", "1", "--coeffs", "{ws}/ok.png"], ["ok.png", "alpha, beta, gamma"]),
    (["profile", "efficientnet_b0", "--device", "bogus"], ["--device", "bogus"]),
    (["profile", "efficientnet_b0", "--size", "100000"], ["100000", "px"]),
    (["profile", "efficientnet_b0", "--batch", "100000000"], ["lower --batch"]),
    # predict: images
    (["predict", "{ws}/corrupt.jpg", *B0], ["cannot read image", "corrupt.jpg"]),
    (["predict", "{ws}/truncated.png", *B0], ["cannot read image", "truncated.png"]),
    (["predict", "{ws}/empty.jpg", *B0], ["cannot read image", "empty.jpg"]),
    (["predict", "{ws}/text.png", *B0], ["cannot read image", "text.png"]),
    (["predict", "{ws}/bomb.png", *B0], ["cannot read image", "bomb.png", "pixels"]),
    (["predict", "{ws}/bomb_warn.png", *B0], ["cannot read image", "bomb_warn.png", "pixels"]),
    (["predict", "{ws}/no_images", *B0], ["no images in", "no_images"]),
    (["predict", "{ws}/missing.png", *B0], ["no such image", "missing.png"]),
    # predict: weights
    (["predict", "{ws}/ok.png", *B0, "--weights", "{ws}/evil.pth"], ["refusing to load", "evil.pth"]),
    (["predict", "{ws}/ok.png", *B0, "--weights", "{ws}/evil3.pth"], ["refusing to load", "evil3.pth"]),
    (["predict", "{ws}/ok.png", *B0, "--weights", "{ws}/evil4.pth"], ["cannot read weights", "evil4.pth"]),
    (["predict", "{ws}/ok.png", *B0, "--weights", "{ws}/random.pth"], ["cannot read weights", "random.pth"]),
    (["predict", "{ws}/ok.png", *B0, "--weights", "{ws}/wrong_shape.safetensors"],
     ["do not fit", "shape", "(7, 3, 3, 3)"]),
    (["predict", "{ws}/ok.png", *B0, "--weights", "{ws}/wrong_dtype.safetensors"],
     ["do not fit", "torch.int32", "floating-point"]),
    (["predict", "{ws}/ok.png", *B0, "--weights", "{ws}/huge_header.safetensors"],
     ["cannot read weights", "huge_header.safetensors"]),
    (["predict", "{ws}/ok.png", *B0, "--weights", "{ws}/bad_header.safetensors"],
     ["cannot read weights", "bad_header.safetensors"]),
    (["predict", "{ws}/ok.png", *B0, "--weights", "{ws}/truncated.safetensors"],
     ["cannot read weights", "truncated.safetensors"]),
    (["predict", "{ws}/ok.png", *B0, "--weights", "{ws}/timm_run"], ["timm_run"]),
    (["predict", "{ws}/ok.png", *B0, "--weights", "{ws}/lite0.safetensors"],
     ["--model efficientnet_b0 is not the network of {ws}/lite0.safetensors", "efficientnet_lite0"]),
    (["predict", "{ws}/ok.png", *B0, "--weights", "{ws}/tf_b0.safetensors"],
     ["--model efficientnet_b0 is not the network", "tf_efficientnet_b0"]),
    (["predict", "{ws}/ok.png", "--weights", "{ws}/corrupt.onnx"], ["cannot load", "corrupt.onnx"]),
    # train
    (["train", "--resume", "{ws}/lightning_logs/version_0"], ["cannot resume", "version_0"]),
    (["train", "--resume", "{ws}/timm_run"], ["cannot resume", "timm_run"]),
    (["train", "--resume", "{ws}/half_run"], ["cannot resume", "half_run"]),
    (["train", "--resume", "{ws}/a_file.txt"], ["cannot resume", "a_file.txt"]),
    (["train", "--phi", "-6", "--data", "{ws}/data", "--val-split", "0.5", "-b", "2",
      "--output", "{ws}/a_file.txt"], ["already exists", "a_file.txt"]),
    (["train", "--phi", "-6", "--data", "{ws}/data", "--val-split", "0.5", "-b", "2",
      "--output", "{ws}/a_file.txt/run"], ["cannot create the run directory", "a_file.txt/run",
                                            "Not a directory"]),
    (["train", "--phi", "-6", "--data", "{ws}/data", "--val-split", "0.5", "-b", "2",
      "--output", "/proc/effnet-run"], ["cannot create the run directory /proc/effnet-run"]),
    (["train", "--data", "{ws}/a_file.txt"], ["must be a directory", "a_file.txt"]),
    (["train", "--phi", "40"], ["too large to build"]),
    (["train", "--img-size", "100000"], ["img_size", "100000"]),
    (["train", "--set", "lr=nan"], ["lr", "finite"]),
    (["train", "--set", "epochs=-2"], ["epochs"]),
    (["train", "--config", "{ws}/bad.yaml"], ["cannot parse config", "bad.yaml"]),
    (["train", "--config", "{ws}/list.yaml"], ["list.yaml", "mapping"]),
    (["train", "--config", "{ws}"], ["{ws}"]),
    (["train", "--phi", "-6", "--data", "{ws}/one_class", "--val-split", "0.5", "-b", "2"],
     ["{ws}/one_class", "single class", "'cat'"]),
    (["train", "--device", "bogus", "--phi", "-6", "--data", "{ws}/data", "--val-split", "0.5"],
     ["--device", "bogus"]),
    # eval
    (["eval", *B0, "--weights", "{ws}/lightning_logs/version_0"], ["no such weights file", "version_0"]),
    (["eval", *B0, "--weights", "{ws}/evil.pth", "--data", "{ws}/data", "--val-split", "0.5"],
     ["refusing to load", "evil.pth"]),
    (["eval", *B0, "--weights", "{ws}/lite0_run", "--data", "{ws}/data", "--val-split", "0.5"],
     ["--model efficientnet_b0 is not the network", "lite0_run/spec.json", "efficientnet_lite0"]),
    (["eval", *B0, "--weights", "{ws}/evil3.pth", "--data", "{ws}/data", "--val-split", "0.5"],
     ["refusing to load", "evil3.pth"]),
    (["eval", *B0, "--weights", "{ws}/wrong_shape.safetensors", "--data", "{ws}/data",
      "--val-split", "0.5"], ["do not fit"]),
    (["eval", "--data", "{ws}/one_class", "--val-split", "0.5", *B0, "--weights",
      "{ws}/wrong_shape.safetensors"], ["{ws}/one_class", "single class", "'cat'"]),
    (["eval", "--weights", "{ws}/corrupt.onnx", "--data", "{ws}/data"], ["cannot load", "corrupt.onnx"]),
    (["eval", "--weights", "{ws}/lite0_run", "--data", "{ws}/data_odd"],
     ["{ws}/data_odd has class folder(s) that {ws}/lite0_run/best.safetensors does not know: c"]),
    (["eval", "--weights", "{ws}/lite0_run", "--data", "{ws}/empty_classes"],
     ["no images found under", "empty_classes"]),
    # deploy
    (["deploy", "{ws}/no_weights_run"], ["cannot deploy", "no_weights_run has no weights yet"]),
    (["deploy", "{ws}/gone_data_run", "--int8"],
     ["cannot deploy --int8: no calibration images", "data directory not found: {ws}/gone"]),
    (["deploy", "{ws}/lite0_run"], ["cannot deploy", "lite0_run is not an effnet run directory"]),
    (["deploy", "{ws}/a_file.txt"], ["cannot deploy", "a_file.txt is not an effnet run directory"]),
    # schedule
    (["schedule", "--size", "300:x"], ["size", "300:x"]),
    (["schedule", "v2-s", "--size", "-1:10"], ["size"]),
    (["schedule", "--size", "128:300", "--dropout", "nan:0.3"], ["dropout"]),
    # search and experiment
    (["search", "compound", "--base", "efficientnet_b0", "--output", "{ws}/a_file.txt"], ["a_file.txt"]),
    (["search", "compound", "--base", "efficientnet_b0", "--output", "{ws}/s",
      "--storage", "sqlite:///{ws}/a_file.txt/study.db"], ["cannot open study storage"]),
    (["experiment", "scaling", "--base", "efficientnet_b0", "--target-flops-ratio", "2",
      "--coeffs", "{ws}"], ["is a directory"]),
    (["experiment", "scaling", "--base", "efficientnet_b0", "--target-flops-ratio", "nan"],
     ["--target-flops-ratio"]),
    (["experiment", "scaling", "--base", "efficientnet_b0", "--target-flops-ratio", "2",
      "--base-phi", "-4", "--base-size", "16", "--output", "{ws}/a_file.txt"], ["a_file.txt"]),
]


def _command(case) -> str:
    argv = case[0]
    return " ".join(argv[:2]) if argv[0] in ("search", "experiment") else argv[0]


def _real_sample() -> list:
    """The first case of every command, and the image in PIL's warning range (refused through a
    warning filter: process state a fork shares)."""
    first = {}
    for case in WITH_TORCH:
        first.setdefault(_command(case), case)
    return [*first.values(), next(c for c in WITH_TORCH if "{ws}/bomb_warn.png" in c[0])]


REAL_SAMPLE = _real_sample()


def _state(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


_ZYGOTE = r"""
import json, os, sys, traceback
from effnet.cli import main
import effnet.inference, effnet.weights, effnet.tools.profile, effnet.train.trainer, effnet.data
import effnet.search.compound, effnet.search.experiment
proto = os.fdopen(os.dup(1), "w")
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(req["cwd"])
            for fd, name in ((1, "out"), (2, "err")):
                f = os.open(req[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(f, fd)
                os.close(f)
            sys.argv = ["effnet", *req["argv"]]
            code = main(req["argv"])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    proto.write(json.dumps({"pid": pid}) + "\n")
    proto.flush()
    _, status = os.waitpid(pid, 0)
    proto.write(json.dumps({"exit": os.waitstatus_to_exitcode(status)}) + "\n")
    proto.flush()
"""


class _Zygote:
    """One process that imported effnet; each `run` forks a fresh process for one command."""

    def __init__(self):
        self.proc = procs.popen([sys.executable, "-c", _ZYGOTE], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=_env())
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)

    def _reply(self, timeout: float) -> dict:
        if not self.sel.select(timeout):
            raise TimeoutError
        line = self.proc.stdout.readline()
        assert line, "the zygote died"
        return json.loads(line)

    def run(self, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
        out, err = cwd.parent / f"{cwd.name}.out", cwd.parent / f"{cwd.name}.err"
        self.proc.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd), "out": str(out),
                                          "err": str(err)}) + "\n")
        self.proc.stdin.flush()
        pid = self._reply(TIME_LIMIT_S)["pid"]
        try:
            code = self._reply(TIME_LIMIT_S)["exit"]
        except TimeoutError:
            os.kill(pid, 9)
            self._reply(TIME_LIMIT_S)
            raise AssertionError(f"effnet {' '.join(argv)} ran past {TIME_LIMIT_S} s") from None
        return subprocess.CompletedProcess(argv, code, out.read_text(), err.read_text())

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        finally:
            procs.kill_group(self.proc)


@pytest.fixture(scope="module")
def zygote():
    z = _Zygote()
    yield z
    z.close()


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _effnet() -> list[str]:
    """The command users run: the `effnet` console script installed beside this Python, or
    `python -m effnet` where the package is not installed."""
    script = Path(sys.executable).with_name("effnet")
    return [str(script)] if os.access(script, os.X_OK) else [sys.executable, "-m", "effnet"]


def _executable(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`effnet ARGV` in a fresh process."""
    return procs.run([*_effnet(), *argv], cwd=cwd, env=_env(), timeout=TIME_LIMIT_S)


def _refused(ws: Path, tmp_path: Path, argv: list[str], words: list[str], runner=_executable) -> None:
    argv = [a.replace("{ws}", str(ws)) for a in argv]
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    before = _state(ws)
    proc = runner(argv, cwd)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("effnet: error: "), proc.stderr[-2000:]
    for w in words:
        assert w.replace("{ws}", str(ws)) in lines[0], lines[0]
    assert _state(ws) == before  # inputs untouched, nothing written beside them
    assert not any(cwd.iterdir()), list(cwd.iterdir())  # no runs/ in the working dir


def _id(case) -> str:
    return " ".join(case[0]).replace("{ws}/", "")[:60]


@pytest.mark.timeout(2 * TIME_LIMIT_S)
@pytest.mark.parametrize("argv, words", NO_TORCH, ids=[_id(c) for c in NO_TORCH])
def test_flag_errors_refused_while_parsing(ws, tmp_path, argv, words):
    _refused(ws, tmp_path, argv, words)


@pytest.mark.timeout(2 * TIME_LIMIT_S)
@pytest.mark.parametrize("argv, words", WITH_TORCH, ids=[_id(c) for c in WITH_TORCH])
def test_bad_input_refused(ws, tmp_path, zygote, argv, words):
    _refused(ws, tmp_path, argv, words, runner=zygote.run)


@pytest.mark.timeout(2 * TIME_LIMIT_S)
@pytest.mark.parametrize("argv, words", REAL_SAMPLE, ids=[_id(c) for c in REAL_SAMPLE])
def test_real_executable_refuses_too(ws, tmp_path, argv, words):
    _refused(ws, tmp_path, argv, words)


def test_real_sample_reaches_every_command():
    assert {_command(c) for c in REAL_SAMPLE} == {_command(c) for c in WITH_TORCH}
    assert 8 <= len(REAL_SAMPLE) <= 12


def test_a_pickle_that_runs_code_is_refused_and_never_runs(ws, tmp_path, zygote):
    import torch

    marker = ws / "markers" / "pwned"
    for argv, runner in ((["predict", "{ws}/ok.png", *B0, "--weights", "{ws}/evil.pth"], _executable),
                         (["eval", *B0, "--weights", "{ws}/evil.pth", "--data", "{ws}/data",
                           "--val-split", "0.5"], zygote.run),
                         (["train", "--phi", "-6", "--data", "{ws}/data", "--val-split", "0.5", "-b", "2",
                           "--weights", "{ws}/evil.pth", "--output", str(tmp_path / "run")], zygote.run),
                         (["train", "--resume", "{ws}/evil_run"], zygote.run)):
        _refused(ws, tmp_path, argv, ["refusing to load", "evil", "pickled Python object (io.open)"], runner)
        assert not marker.exists() and not (tmp_path / "run").exists()
    # both files are really hostile: an unsafe load of either runs its code (the test could fail)
    for path in (ws / "evil.pth", ws / "evil_run" / "checkpoints" / "step-00000001" / "state.pt"):
        try:
            torch.load(path, weights_only=False)
            assert marker.exists(), path
        finally:
            marker.unlink(missing_ok=True)


def test_other_libraries_warnings_are_hidden_unless_python_is_asked(ws, tmp_path):
    # the refusal alone by default (the catalogue's evil3.pth cases); torch's own warning about
    # the pickle protocol comes back with Python's usual switch
    argv = ["predict", str(ws / "ok.png"), *B0, "--weights", str(ws / "evil3.pth")]
    proc = procs.run([sys.executable, "-m", "effnet", *argv], cwd=tmp_path, timeout=TIME_LIMIT_S,
                     env={**_env(), "PYTHONWARNINGS": "default"})
    assert proc.returncode == 2, proc.stderr
    assert "Detected pickle protocol 3" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("effnet: error: refusing to load")


def test_effnets_own_warning_is_one_line(ws, tmp_path, zygote):
    import shutil

    import effnet
    from effnet.weights import save_weights

    data = tmp_path / "data"
    shutil.copytree(ws / "data", data)
    (data / "a" / "broken.png").write_bytes(b"not an image")
    weights = tmp_path / "two.safetensors"
    save_weights(effnet.create_model("efficientnet_b0", num_classes=2), weights)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = zygote.run(["eval", "--weights", str(weights), "--data", str(data), "--val-split", "0.5"],
                      cwd)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"effnet: warning: skipped 1 unreadable image(s) of 7 under {data} (first: "
        f"{data / 'a' / 'broken.png'}: UnidentifiedImageError: cannot identify image file "
        f"'{data / 'a' / 'broken.png'}')"]


def test_predict_without_weights_says_the_answers_are_random(ws, tmp_path):
    proc = _executable(["predict", str(ws / "ok.png"), *B0, "--topk", "1"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "effnet: warning: no --weights given: these predictions come from random weights"]
    assert "1." in proc.stdout


def test_catalogue_is_large():
    assert len(NO_TORCH) + len(WITH_TORCH) >= 40
    assert {a[0][0] for a in NO_TORCH + WITH_TORCH if a[0]} >= {
        "models", "scale", "profile", "predict", "train", "eval", "schedule", "search", "experiment",
        "deploy"}
