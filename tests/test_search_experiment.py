"""`effnet experiment scaling`: single-dimension and compound scaling solved to matched measured
FLOPs, trained with the same proxy recipe."""

import csv

import pytest

from effnet.cli import main
from effnet.search.compound import prepare_base
from effnet.search.experiment import matched
from effnet.search.grid import MacCounter
from effnet.search.proxy import Proxy

FAST = ["--base", "efficientnet_b0", "--base-phi", "-4", "--base-size", "16", "--budget-epochs",
        "1", "--train-subset", "64", "--val-subset", "32", "--batch-size", "32", "--no-progress"]


@pytest.fixture(scope="module")
def tiny():
    return prepare_base("efficientnet_b0", -4.0, 16, Proxy())


def test_each_method_reaches_the_target_flops_changing_only_its_dimension(tiny):
    counter = MacCounter(10)
    base_macs = counter(tiny.spec, 16)
    pts = {p.method: p for p in matched(tiny, 2.0, counter)}
    assert set(pts) == {"depth", "width", "resolution", "compound"}
    widths = [s.out for s in tiny.spec.stages]
    for p in pts.values():
        assert p.macs == counter(p.spec, p.resolution) and p.ratio == p.macs / base_macs
        assert abs(p.ratio / 2 - 1) < 0.05, (p.method, p.ratio)
    d, w, r = pts["depth"], pts["width"], pts["resolution"]
    assert d.resolution == 16 and [s.out for s in d.spec.stages] == widths
    assert d.spec.num_blocks > tiny.spec.num_blocks
    assert w.resolution == 16 and w.spec.num_blocks == tiny.spec.num_blocks
    assert w.spec.stages[-1].out > tiny.spec.stages[-1].out
    assert r.spec.stages == tiny.spec.stages and r.resolution > 16
    # the solved resolution is the integer size whose MACs lie closest to 2x (in log ratio)
    import math

    dist = {s: abs(math.log(counter(tiny.spec, s) / base_macs / 2))
            for s in (r.resolution - 1, r.resolution, r.resolution + 1)}
    assert dist[r.resolution] == min(dist.values())


def test_cli_scaling_experiment_writes_table_and_plot(tmp_path, capsys):
    out = tmp_path / "exp"
    code = main(["experiment", "scaling", *FAST, "--target-flops-ratio", "2", "--output", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    rows = list(csv.DictReader((out / "scaling.csv").open()))
    assert [r["method"] for r in rows] == ["baseline", "depth", "width", "resolution", "compound"]
    for r in rows:
        assert 0.0 <= float(r["top1"]) <= 100.0
        assert abs(float(r["ratio"]) / float(r["target_ratio"]) - 1) < 0.05
    md = (out / "scaling.md").read_text()
    assert "| 2 | compound phi=" in md and "at 2x FLOPs compound" in md
    assert "at 2x FLOPs compound" in text
    assert (out / "accuracy_vs_flops.png").read_bytes()[:4] == b"\x89PNG"
    assert all((out / "runs" / t / "summary.json").is_file()
               for t in ("baseline", "depth-x2", "width-x2", "resolution-x2", "compound-x2"))


@pytest.mark.parametrize("extra, message", [
    (["--target-flops-ratio", "1"], "--target-flops-ratio must be > 1"),
    (["--target-flops-ratio", "two"], "--target-flops-ratio expects numbers"),
    (["--target-flops-ratio", "2", "--coeffs", "/no/such/best.json"], "no such file"),
    (["--target-flops-ratio", "2", "--base", "resnet5"], "unknown model 'resnet5'"),
])
def test_experiment_bad_input_one_line_exit_2(extra, message, capsys, tmp_path):
    code = main(["experiment", "scaling", *FAST, *extra, "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err
