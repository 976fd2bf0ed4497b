"""The search study survives interruptions and shares work: restart after k trials, two worker
processes on one SQLite study training at the same time, and a worker killed mid-trial (trials
are slowed by EFFNET_TEST_TRIAL_DELAY_S so that overlap and the kill are certain, not lucky)."""

import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

import procs
from effnet.search.compound import TRIAL_DELAY_ENV, SearchConfig, run_search
from effnet.search.proxy import Proxy

STUDY = "compound-efficientnet_b0-phi1"
# B0 shrunk by phi=-4 at 16 px; grid step 0.2, tolerance 0.1: four distinct candidate networks
GRID = dict(base="efficientnet_b0", base_phi=-4.0, base_size=16, grid_step=0.2, tolerance=0.1)
PROXY = Proxy(epochs=1, train_subset=64, val_subset=32, batch_size=32)
N = 4


def cli_args(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "effnet", "search", "compound", "--base", "efficientnet_b0",
            "--base-phi", "-4", "--base-size", "16", "--grid-step", "0.2", "--tolerance", "0.1",
            "--budget-epochs", "1", "--train-subset", "64", "--val-subset", "32",
            "--batch-size", "32", "--no-progress", "--output", str(out), *extra]


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{out / 'study.db'}")


def trainings(out: Path) -> Counter:
    """How many times each grid point's network was trained (the trainer's header, per log)."""
    return Counter({log.stem: log.read_text().count("effnet train: training ")
                    for log in (out / "trials").glob("*.log")})


def complete(study) -> list:
    return [t for t in study.get_trials() if t.state.name == "COMPLETE"]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def test_interrupted_study_resumes_with_exactly_the_remaining_trials(tmp_path):
    out = tmp_path / "s"
    first = run_search(SearchConfig(**GRID, proxy=PROXY, trials=2, output=str(out), progress=False))
    assert not first.complete and len(first.trained) == N
    done_before = {t.params["candidate"]: t.value for t in complete(load(out))}
    assert len(done_before) == 2
    second = run_search(SearchConfig(**GRID, proxy=PROXY, output=str(out), progress=False))
    assert second.complete
    study = load(out)
    trials = study.get_trials()
    assert len(trials) == N and all(t.state.name == "COMPLETE" for t in trials)
    assert sorted(t.params["candidate"] for t in trials) == sorted(c.key for c in second.trained)
    for key, value in done_before.items():  # the first run's results are kept, not redone
        assert next(t.value for t in trials if t.params["candidate"] == key) == value
    assert set(trainings(out).values()) == {1} and len(trainings(out)) == N
    assert second.best.result["top1"] == max(t.value for t in trials)


def _intervals_overlap(a, b) -> bool:
    return a.datetime_start < b.datetime_complete and b.datetime_start < a.datetime_complete


@pytest.mark.slow
def test_two_workers_share_the_grid_concurrently_and_never_train_the_same_point(tmp_path):
    out = tmp_path / "shared"
    out.mkdir()
    # each claimed trial lasts >= 4 s, so a worker that starts a few seconds late still gets work
    slow = {**env(), TRIAL_DELAY_ENV: "4"}
    workers = [procs.popen(cli_args(out), env=slow, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True) for _ in range(2)]
    results, codes = procs.finish_all(workers)
    assert codes == [0, 0], results
    study = load(out)
    done = complete(study)
    assert sorted(t.params["candidate"] for t in done) == sorted({t.params["candidate"] for t in done})
    assert len(done) == N
    counts = trainings(out)
    assert len(counts) == N and set(counts.values()) == {1}, counts
    with sqlite3.connect(out / "study.db") as db:
        claims = db.execute("select candidate, attempt from effnet_claims").fetchall()
    assert len(claims) == N and len({c for c, _ in claims}) == N
    # both workers trained, and at some moment both were training (timestamps from the storage)
    pids = {f":{p.pid}" for p in workers}
    by_worker = {pid: [t for t in done if t.user_attrs["worker"].endswith(pid)] for pid in pids}
    assert all(by_worker.values()), {k: len(v) for k, v in by_worker.items()}
    a, b = by_worker.values()
    assert any(_intervals_overlap(x, y) for x in a for y in b), [
        (t.user_attrs["worker"], t.datetime_start, t.datetime_complete) for t in done]
    for _, err in results:  # both workers print the finished ranking
        assert "Traceback" not in err
    assert all("best: alpha=" in o for o, _ in results)


@pytest.mark.slow
def test_killed_worker_trial_is_retried_once_and_nothing_is_lost(tmp_path):
    out = tmp_path / "killed"
    out.mkdir()
    # a trial lasts >= 30 s: the kill lands while the second trial is running, every time
    worker = procs.popen(cli_args(out, "--heartbeat", "1"), env={**env(), TRIAL_DELAY_ENV: "30"},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = out / "study.db"
    deadline = time.time() + 120
    victim = None
    try:
        while time.time() < deadline and victim is None:
            time.sleep(0.2)
            if not db.exists():
                continue
            try:
                with sqlite3.connect(db, timeout=5) as con:
                    rows = con.execute("select trial from effnet_claims").fetchall()
            except sqlite3.OperationalError:  # table not created yet
                continue
            if rows:  # the first trial is claimed and waiting to train
                victim = max(r[0] for r in rows)
    finally:
        procs.kill_group(worker)
    assert victim is not None, "the worker never claimed a trial"
    study = load(out)
    killed = next(t for t in study.get_trials() if t.number == victim)
    assert killed.state.name == "RUNNING"  # killed mid-trial: the heartbeat is what finds it
    key = killed.params["candidate"]
    result = run_search(SearchConfig(**GRID, proxy=PROXY, output=str(out), heartbeat=1,
                                     progress=False))
    assert result.complete and all(c.result["state"] == "done" for c in result.trained)
    study = load(out)
    trials = study.get_trials()
    by_state = Counter(t.state.name for t in trials)
    assert by_state == {"COMPLETE": N, "FAIL": 1}
    failed = next(t for t in trials if t.state.name == "FAIL")
    assert failed.number == victim
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == victim)
    assert retry.state.name == "COMPLETE" and retry.params["candidate"] == key
    assert sorted(t.params["candidate"] for t in complete(study)) == sorted(c.key for c in result.trained)
