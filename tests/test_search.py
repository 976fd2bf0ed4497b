"""Compound-scaling grid search: the FLOPs filter against measured MACs, the paper's
coefficients, an end-to-end CPU search, and one-line errors."""

import csv
import json

import pytest

from effnet.arch.scaling import scale_compound
from effnet.cli import main
from effnet.models import get_spec
from effnet.search.compound import prepare_base
from effnet.search.grid import GridPoint, MacCounter, base_spec, candidates, grid_axes, measure, prefilter
from effnet.search.proxy import Proxy
from effnet.tools.profile import count_macs

# a CPU-sized base: B0 shrunk by phi=-4 (as the quick recipe trains it) at 16 px
TINY = ("efficientnet_b0", -4.0, 16)
FAST = ["--base", "efficientnet_b0", "--base-phi", "-4", "--base-size", "16", "--budget-epochs",
        "1", "--train-subset", "64", "--val-subset", "32", "--batch-size", "32", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_base():
    return prepare_base(*TINY, Proxy())


def test_grid_axes_bounds_and_prefilter():
    a, b, g = grid_axes(0.05, 0.1)
    # alpha <= 2 * (1 + 2t) = 2.4, beta, gamma <= sqrt(2.4) = 1.549
    assert a[0] == b[0] == g[0] == 1.0 and a[-1] == 2.4 and b[-1] == g[-1] == 1.5
    assert len(a) == 29 and len(b) == 11
    pts = prefilter(0.05, 0.1)
    assert GridPoint(1.2, 1.1, 1.15) in pts
    assert all(abs(p.formula / 2 - 1) <= 0.2 for p in pts)
    assert GridPoint(1.0, 1.0, 1.0) not in pts and GridPoint(2.4, 1.5, 1.5) not in pts


def test_grid_keeps_only_candidates_within_measured_tolerance(tiny_base):
    tol = 0.1
    base_macs, measured, trained = candidates(tiny_base, 1.0, 0.1, tol, MacCounter(1000))
    assert base_macs == count_macs(tiny_base.spec, 16)
    inside = [c for c in measured if abs(c.ratio / 2 - 1) <= tol]
    outside = [c for c in measured if abs(c.ratio / 2 - 1) > tol]
    # rounding of 8-channel widths and 1-block stages makes the formula a poor guide here
    assert len(outside) > len(inside) > len(trained) > 3
    for c in trained:  # recount independently: the ratio the filter used is the real one
        scaled, m = scale_compound(tiny_base.spec, 1.0, c.point.alpha, c.point.beta, c.point.gamma)
        macs = count_macs(scaled, m.scaled_size(16))
        assert macs == c.macs and m.scaled_size(16) == c.resolution
        assert abs(macs / base_macs / 2 - 1) <= tol
    kept = {c.key for c in trained}
    assert not kept & {c.key for c in outside}
    # every in-tolerance point is trained itself or names the identical trained network
    for c in inside:
        assert c.key in kept or (c.same_as in kept and c.spec.with_(name="") ==
                                 next(t for t in trained if t.key == c.same_as).spec.with_(name=""))


def test_paper_coefficients_fall_inside_ten_percent():
    base = base_spec(get_spec("efficientnet_b0"), 224)
    base_macs, (cand,) = measure(base, [GridPoint(1.2, 1.1, 1.15)], 1.0, MacCounter(1000))
    assert cand.resolution == 258 and cand.spec.num_blocks == 19
    assert base_macs == count_macs("efficientnet_b0", 224)
    assert cand.ratio == pytest.approx(2.05, abs=0.01)  # `effnet scale --phi 1`: +2.5 %
    assert abs(cand.off_target) <= 0.10
    assert cand.point.formula == pytest.approx(1.920, abs=5e-4)


def test_cli_three_candidate_search_writes_best_json(tmp_path, capsys):
    out = tmp_path / "search"
    code = main(["search", "compound", *FAST, "--grid-step", "0.15", "--tolerance", "0.05",
                 "--output", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert "3 distinct networks" in text
    best = json.loads((out / "best.json").read_text())
    assert {"alpha", "beta", "gamma", "accuracy", "macs", "ratio"} <= set(best)
    assert best["candidates_done"] == best["candidates"] == 3 and best["complete"]
    assert abs(best["ratio"] / 2 - 1) <= 0.05 and min(best["alpha"], best["beta"], best["gamma"]) >= 1
    rows = list(csv.DictReader((out / "candidates.csv").open()))
    done = [r for r in rows if r["state"] == "done" and not r["same_network_as"]]
    assert len(done) == 3
    assert max(float(r["top1"]) for r in done) == best["accuracy"]
    top = next(r for r in done if float(r["top1"]) == best["accuracy"])
    assert int(top["macs"]) <= best["macs"] or float(top["top1"]) == best["accuracy"]
    assert (out / "accuracy_vs_macs.png").read_bytes()[:4] == b"\x89PNG"
    for d in (out / "trials").iterdir():
        if d.is_dir():
            assert (d / "summary.json").is_file()  # trained by effnet.train
    # the coefficients feed `effnet scale` as they are
    assert main(["scale", "--base", "efficientnet_b0", "--phi", "1", "--coeffs",
                 str(out / "best.json")]) == 0


@pytest.mark.parametrize("argv, message", [
    (["--base", "efficientnet_b99"], "unknown model 'efficientnet_b99'"),
    (["--base", "efficientnet_b0", "--tolerance", "0"], "--tolerance must be > 0"),
    (["--base", "efficientnet_b0", "--tolerance", "-0.1"], "--tolerance must be > 0"),
    (["--base", "efficientnet_b0", "--grid-step", "0"], "--grid-step must be > 0"),
    (["--base", "efficientnet_b0", "--grid-step", "-1"], "--grid-step must be > 0"),
    (["--base", "efficientnet_b0", "--storage", "sqlite:////no/such/dir/study.db"],
     "cannot open study storage sqlite:////no/such/dir/study.db"),
    (["--base", "efficientnet_b0", "--storage", "nosuchdb://host/x"],
     "cannot open study storage nosuchdb://host/x"),
    (["--base", "efficientnet_b0", "--budget-epochs", "0"], "--budget-epochs: must be >= 1"),
])
def test_bad_input_is_one_line_exit_2(argv, message, capsys, tmp_path):
    code = main(["search", "compound", *argv, "--output", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("effnet: error: ") and message in err


def test_every_trial_failing_records_errors_and_exits_2(tmp_path, capsys):
    out = tmp_path / "fail"
    # a batch larger than the training subset: the trainer refuses every candidate
    argv = [a if a != "32" else "128" for a in FAST]
    code = main(["search", "compound", *argv, "--grid-step", "0.15", "--tolerance", "0.05",
                 "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "all 3 candidates failed" in err and "fewer than one global batch" in err
    import optuna

    study = optuna.load_study(study_name="compound-efficientnet_b0-phi1",
                              storage=f"sqlite:///{out / 'study.db'}")
    trials = study.get_trials()
    assert len(trials) == 3  # each tried once, none retried
    assert all(t.state.name == "FAIL" and "fewer than one global batch" in t.user_attrs["error"]
               for t in trials)
