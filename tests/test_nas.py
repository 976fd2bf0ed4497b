"""Training-aware NAS: the space holds exactly the valid candidates (and the published V2-S and B0),
the rewards match hand-computed values, a 3-trial search writes a best.json that `effnet train`
trains, and bad input ends in one line with exit 2."""

import contextlib
import csv
import json
import math
import random

import pytest
import torch

from effnet import create_model
from effnet.arch.spec import NetSpec, Rounding, Stage, Stem
from effnet.cli import main
from effnet.models import build, get_spec
from effnet.search.reward import Objective, mnas_reward, v2_reward
from effnet.search.space import SPACES, SearchSpace, layer_choices, make_space, spec_key
from effnet.tools.profile import count_params

# b0 space on B0 shrunk by phi=-6, 32 px, digits: seconds per candidate
FAST = ["--space", "b0", "--base-phi", "-6", "--base-size", "32", "--budget-epochs", "1",
        "--train-subset", "128", "--val-subset", "64", "--batch-size", "32", "--time-batch", "8",
        "--no-progress"]


def tiny_space() -> SearchSpace:
    base = NetSpec("tiny", Stem(8), (Stage("mbconv", 3, 1, 1, 8, 1, se=0.25),
                                     Stage("mbconv", 3, 2, 6, 16, 2, se=0.25)),
                   head=32, rounding=Rounding())
    return SearchSpace("b0", base)


def test_small_space_enumerates_every_valid_candidate_once():
    space = tiny_space()
    # per stage: MBConv 2 kernels x 3 expansions x layers x SE on/off + Fused without SE
    per_stage = [(2 * 3 * 2 + 2 * 3) * len(layer_choices(s.repeats)) for s in space.base.stages]
    assert layer_choices(1) == (1, 2) and layer_choices(2) == (1, 2, 3)
    assert layer_choices(15) == (11, 15, 19)
    assert space.size == math.prod(per_stage) == 36 * 54
    specs = list(space.enumerate())
    assert len(specs) == space.size
    assert len({spec_key(s) for s in specs}) == space.size  # no two name the same network
    for s in specs:
        space.check(s)
        for st, b in zip(s.stages, space.base.stages, strict=True):
            assert (st.out, st.stride) == (b.out, b.stride)
            assert st.se == 0 or st.block == "mbconv"
    rng = random.Random(0)
    for s in rng.sample(specs, 12):  # every candidate is a network that runs
        model = build(s, num_classes=3).eval()
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 3)


def test_samples_are_valid_seeded_and_the_published_networks_are_in_their_spaces():
    for name, backbone in SPACES.items():
        base = get_spec(backbone)
        space = make_space(name, base)
        a = [space.sample(random.Random(7)) for _ in range(3)]
        assert len({spec_key(s) for s in a}) == 1  # same seed, same candidate
        draws = [space.sample(random.Random(i)) for i in range(15)]
        assert len({spec_key(s) for s in draws}) == 15
        for s in draws:
            space.check(s)
        assert count_params(draws[0]) > 0  # builds (on meta)
        assert {st.block for s in draws for st in s.stages} == {"mbconv", "fused"}
        space.check(base)  # V2-S (all 3x3, Fused early, SE on MBConv) and B0 are candidates
    assert get_spec("efficientnetv2_s").table().count("Fused-MBConv") == 3


def test_check_rejects_what_the_space_does_not_hold_and_keys_ignore_names():
    space = tiny_space()
    s = space.sample(random.Random(1))
    first = s.stages[0]
    bad = {"SE on a fused block": s.with_(stages=(Stage("fused", 3, 1, 4, 8, 1, se=0.25),
                                                  *s.stages[1:])),
           "kernel": s.with_(stages=(Stage(first.block, 7, 1, 4, 8, 1), *s.stages[1:])),
           "channels": s.with_(stages=(Stage(first.block, 3, 1, 4, 24, 1), *s.stages[1:])),
           "layers": s.with_(stages=(Stage(first.block, 3, 1, 4, 8, 5), *s.stages[1:]))}
    for what, spec in bad.items():
        with pytest.raises(ValueError):
            space.check(spec)
        assert spec_key(spec) != spec_key(s), what
    assert spec_key(s.with_(name="other", dropout=0.5)) == spec_key(s)


def test_rewards_match_hand_computed_values():
    # V2: 0.8 * 1.2^-0.07 * 0.9^-0.05 = 0.8 * exp(-0.07 ln 1.2) * exp(-0.05 ln 0.9)
    #   = 0.8 * 0.9873186 * 1.0052819 = 0.7940268
    assert v2_reward(0.8, 1.2, 0.9) == pytest.approx(0.7940268, abs=1e-7)
    assert v2_reward(0.8, 1.0, 1.0) == 0.8  # the backbone scores its accuracy
    # MnasNet / B0: 0.75 * (600M / 400M)^-0.07 = 0.75 * 0.972016
    assert mnas_reward(0.75, 600e6, 400e6) == pytest.approx(0.729012, abs=1e-6)
    assert v2_reward(0.8, 2.0, 1.0, w=-0.5) == pytest.approx(0.8 / math.sqrt(2))
    base = {"step_s": 0.05, "params": 2_000_000, "macs": 400_000_000}
    r = Objective().rewards(80.0, 0.06, 1_800_000, 600_000_000, base)
    assert r["S"] == pytest.approx(1.2) and r["P"] == pytest.approx(0.9)
    assert r["reward"] == r["reward_v2"] == pytest.approx(0.7940268, abs=1e-7)
    assert r["reward_mnas"] == pytest.approx(0.8 * 0.972016, abs=1e-6)
    assert Objective("mnas").rewards(80.0, 0.06, 1_800_000, 600_000_000, base)["reward"] == \
        r["reward_mnas"]


def test_three_trial_search_writes_best_json_that_effnet_train_trains(tmp_path, capsys):
    out = tmp_path / "nas"
    assert main(["search", "nas", *FAST, "--trials", "3", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3/3 trained" in text and "MBConv" in text  # the best spec as its stage table
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 3 and len({r["key"] for r in rows}) == 3
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "nas.json").read_text())
    best_row = max(rows, key=lambda r: float(r["reward"]))
    assert summary["best"]["key"] == best_row["key"] == rows[0]["key"]
    for r in rows:  # the reward is recomputed from what the trial measured
        base = summary["base_stats"]
        expect = (float(r["top1"]) / 100 * (float(r["step_s"]) / base["step_s"]) ** -0.07
                  * (float(r["params"]) / base["params"]) ** -0.05)
        assert float(r["reward"]) == pytest.approx(expect, rel=1e-9)
    best = out / "best.json"
    model = create_model(str(best), num_classes=10)
    assert spec_key(model.spec) == best_row["key"]
    assert sum(p.numel() for p in model.parameters()) == int(best_row["params"])
    run = tmp_path / "train-best"
    assert main(["train", "--model", str(best), "--epochs", "3", "--train-subset", "512",
                 "--val-subset", "256", "-b", "32", "--output", str(run), "--no-progress",
                 "--no-tensorboard"]) == 0
    trained = json.loads((run / "summary.json").read_text())
    assert trained["best"]["top1"] > 50  # digits, 10 classes: it learns
    saved = json.loads((run / "spec.json").read_text())
    assert saved  # the run records the searched network
    assert spec_key(create_model(str(run / "spec.json")).spec) == best_row["key"]


@pytest.mark.parametrize("argv, message", [
    (["--space", "v7"], "unknown search space 'v7'"),
    (["--trials", "0"], "--trials must be >= 1"),
    (["--storage", "postgresql://nobody@127.0.0.1:9/none"], "cannot open study storage"),
    (["--sampler", "grid"], "invalid choice: 'grid'"),
])
def test_bad_input_is_one_line_exit_2(argv, message, capsys, tmp_path):
    try:
        code = main(["search", "nas", *FAST, *argv, "--output", str(tmp_path / "o")])
    except SystemExit as e:  # a bad flag value: argparse exits (with the same one line)
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("effnet: error: ") and message in err


def test_one_class_data_is_one_line_exit_2(capsys, tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        (tmp_path / "d" / split / "cat").mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "d" / split / "cat" / f"{i}.png")
    code = main(["search", "nas", *FAST, "--data", str(tmp_path / "d"), "--output",
                 str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "at least 2 classes" in err


def test_pareto_front_keeps_the_undominated_candidates():
    from effnet.search.nas_report import pareto

    pts = [(80.0, 1.0, 1.0), (79.0, 1.1, 1.1), (85.0, 1.5, 0.9), (80.0, 1.0, 1.0), (70.0, 0.5, 2.0)]
    # (79, 1.1, 1.1) is worse than (80, 1.0, 1.0) in all three; equal points keep each other
    assert pareto(pts) == [True, False, True, True, True]


def test_an_output_dir_with_url_characters_holds_its_study(tmp_path, capsys):
    # ?, #, % and {} mean something in a URL (and to optuna, which formats the URL): the default
    # storage must still be the study.db inside --output, and nothing may appear beside it
    out = tmp_path / "runs" / "a?b#c%41{x} d"
    assert main(["search", "nas", *FAST, "--trials", "1", "--output", str(out)]) == 0
    assert (out / "study.db").is_file()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [out.name]
    import sqlite3

    with contextlib.closing(sqlite3.connect(out / "study.db")) as db:  # the search's own study
        assert db.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone() == (1,)
