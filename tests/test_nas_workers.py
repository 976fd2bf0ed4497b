"""The NAS study survives interruptions and shares work: a stopped search resumes with exactly the
remaining trials, two worker processes on one SQLite study both train and never train the same
spec, and a worker killed mid-training has its candidate resumed by the worker that retries it."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

import procs
from effnet.fileio import FAULT_ENV
from effnet.search.nas import NasConfig, run_nas
from effnet.search.proxy import Proxy
from test_train_faults import assert_same_run

STUDY = "nas-b0-efficientnet_b0-phi-6"
CFG = dict(space="b0", base="efficientnet_b0", base_phi=-6.0, base_size=32, time_batch=8,
           proxy=Proxy(epochs=1, train_subset=128, val_subset=64, batch_size=32), progress=False)
ARGS = ["--space", "b0", "--base", "efficientnet_b0", "--base-phi", "-6", "--base-size", "32",
        "--time-batch", "8", "--budget-epochs", "1", "--train-subset", "128", "--val-subset", "64",
        "--batch-size", "32", "--no-progress"]


def nas_cli(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "effnet", "search", "nas", *ARGS, "--output", str(out), *extra]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def trainings(*outs: Path) -> Counter:
    """How many times each spec key's network was trained (the trainer's header, per log)."""
    c: Counter = Counter()
    for out in outs:
        for log in (out / "trials").glob("*.log"):
            c[log.stem] += log.read_text().count("effnet train: training ")
    return c


def completed(study: optuna.Study) -> list:
    return [t for t in study.get_trials() if t.state.name == "COMPLETE"]


def test_stopped_search_resumes_with_exactly_the_remaining_trials(tmp_path):
    out = tmp_path / "s"
    first = run_nas(NasConfig(**CFG, trials=3, worker_trials=2, output=str(out)))
    assert not first.complete and len(first.trained) == 2
    kept = {c.key: c.reward for c in first.trained}
    second = run_nas(NasConfig(**CFG, trials=3, output=str(out)))
    assert second.complete and len(second.trained) == 3
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{out / 'study.db'}")
    done = completed(study)
    assert len(done) == 3 and len({t.user_attrs["candidate"] for t in done}) == 3
    for key, reward in kept.items():  # the first run's results are kept, not redone
        assert next(t.value for t in done if t.user_attrs["candidate"] == key) == reward
    assert trainings(out) == Counter({c.key: 1 for c in second.trained})
    # a third run of the finished search trains nothing
    third = run_nas(NasConfig(**CFG, trials=3, output=str(out)))
    assert [c.key for c in third.trained] == [c.key for c in second.trained]
    assert sum(trainings(out).values()) == 3
    assert second.best.reward == max(t.value for t in done)


@pytest.mark.slow
def test_two_sqlite_workers_both_train_and_never_train_the_same_spec(tmp_path):
    out = tmp_path / "shared"
    out.mkdir()
    results, codes = procs.finish_all(procs.popen(nas_cli(out, "--trials", "4"), env=env(),
                                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                  text=True) for _ in range(2))
    assert codes == [0, 0], results
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{out / 'study.db'}")
    done = completed(study)
    keys = [t.user_attrs["candidate"] for t in done]
    assert len(set(keys)) == len(keys) >= 4
    assert len({t.user_attrs["worker"] for t in done}) == 2  # both workers trained
    counts = trainings(out)
    assert set(counts.values()) == {1} and set(counts) == set(keys), counts
    with sqlite3.connect(out / "study.db") as db:
        claims = db.execute("select candidate, attempt from effnet_claims "
                            "where candidate not like '#%'").fetchall()
    assert sorted(c for c, _ in claims) == sorted(keys)
    for o, err in results:
        assert "Traceback" not in err and "best (reward" in o


@pytest.mark.slow
def test_ctrl_c_mid_trial_is_queued_again_and_the_search_ends_with_exactly_n(tmp_path):
    out = tmp_path / "ctrl-c"
    with procs.started(nas_cli(out, "--trials", "3"), env=env(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True) as p:
        deadline, claimed = time.time() + 180, []
        while time.time() < deadline and len(claimed) < 2 and p.poll() is None:
            time.sleep(0.3)
            try:
                with sqlite3.connect(out / "study.db", timeout=5) as db:
                    claimed = db.execute("select trial from effnet_claims "
                                         "where candidate not like '#%'").fetchall()
            except sqlite3.OperationalError:  # not created yet
                continue
        p.send_signal(signal.SIGINT)  # during the second candidate
        _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{out / 'study.db'}")
    stopped = [t for t in study.get_trials() if t.state.name == "FAIL"]
    assert len(stopped) == 1 and stopped[0].user_attrs["interrupted"]
    key = stopped[0].user_attrs["candidate"]
    first = {t.user_attrs["candidate"] for t in completed(study)}
    assert len(first) == 1
    res = run_nas(NasConfig(**CFG, trials=3, output=str(out)))
    assert res.complete and len(res.trained) == 3
    done = {t.user_attrs["candidate"] for t in completed(
        optuna.load_study(study_name=STUDY, storage=f"sqlite:///{out / 'study.db'}"))}
    assert first | {key} < done and len(done) == 3  # the stopped candidate was trained, not lost
    counts = trainings(out)
    assert counts[key] >= 1 and all(n == 1 for k, n in counts.items() if k != key)


@pytest.mark.slow
def test_worker_killed_mid_training_is_resumed_by_the_worker_that_retries_its_trial(tmp_path):
    out, ref = tmp_path / "shared", tmp_path / "ref"
    args = ("--trials", "1", "--heartbeat", "1", "--ckpt-every-steps", "1")  # 4 steps a candidate
    # worker A dies (SIGKILL) while publishing its candidate's step-2 checkpoint: mid-training,
    # every time, with the step-1 checkpoint published
    a = procs.run(nas_cli(out, *args), env={**env(), FAULT_ENV: "LATEST:2:5"})
    assert a.returncode == -signal.SIGKILL, a.stderr
    [run] = [p.parent.parent for p in (out / "trials").glob("*/checkpoints/LATEST")]
    assert json.loads((run / "checkpoints" / "LATEST").read_text())["global_step"] == 1
    assert not (run / "summary.json").exists()

    # worker B, on the same study and output directory (one machine), finds A's trial stale and
    # retries it: the run resumes from step 1 and ends as an uninterrupted run of the candidate
    b = procs.run(nas_cli(out, *args), env=env())
    assert b.returncode == 0, b.stderr
    trials = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{out / 'study.db'}").get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    killed, retry = trials
    assert retry.system_attrs["failed_trial"] == killed.number
    assert retry.user_attrs["candidate"] == killed.user_attrs["candidate"] == run.name
    log = (run.parent / f"{run.name}.log").read_text()
    assert log.count("effnet train: training ") == 1 and log.count("effnet train: resuming ") == 1
    uninterrupted = procs.run(nas_cli(ref, *args), env=env())
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    assert_same_run(ref / "trials" / run.name, run)
