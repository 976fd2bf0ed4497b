"""A Ctrl-C is never lost: a search process signalled at any point of its life (importing,
creating the study, claiming a trial, training, evaluating, between trials, writing its report)
stops with exit code 130 and one line saying how to continue, and running the same search again
ends with exactly the requested number of distinct trained candidates.

Each signal is sent when the process shows it reached its point: a file or a row it writes, a
checkpoint pointer, its own CPU clock. Fractions of a reference run's time do not work here: the
CPU time of identical runs varies by 15 % on a shared machine, more than the report lasts."""

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna
import pytest

import procs
from effnet.search.nas import NasConfig, run_nas
from test_nas_workers import CFG, STUDY, completed, env, nas_cli

TRIALS = 2  # of 4 optimiser steps each, checkpointed after each (the pointer shows the step)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (proc(5): stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def claimed(out: Path, pid: int) -> bool:
    try:  # read-only: connecting must not create the file the search is about to create
        with sqlite3.connect(f"file:{out / 'study.db'}?mode=ro", uri=True, timeout=5) as db:
            return bool(db.execute("select 1 from effnet_claims where candidate not like '#%'")
                        .fetchall())
    except sqlite3.OperationalError:  # no file or no table yet
        return False


def checkpointed(step: int):
    def reached(out: Path, pid: int) -> bool:
        for pointer in out.glob("trials/*/checkpoints/LATEST"):
            try:
                if json.loads(pointer.read_text())["global_step"] >= step:
                    return True
            except (OSError, ValueError):  # replaced while we read it
                continue
        return False
    return reached


# name: (reached, the first run's trials (completed, interrupted) where the point decides them)
POINTS = {
    "start-up": (lambda out, pid: cpu_seconds(pid) >= 1.0, (0, 0)),  # it imports for ~4 CPU s
    "study": (lambda out, pid: (out / "study.db").exists(), (0, 0)),  # then times the backbone
    # then times the candidate: its trainer, sharing the flag set before it started, stops at
    # its first step (a handler of its own would forget the signal and finish the trial)
    "claim": (claimed, (0, 1)),
    "training": (checkpointed(1), None),
    "evaluation": (checkpointed(3), None),  # the last step, evaluation, the epoch's checkpoint
    "between-trials": (lambda out, pid: any(out.glob("trials/*/summary.json")), None),
    "report": (lambda out, pid: (out / "results.csv").exists(), None),  # plot, best.json, stdout
}


def trial_states(out: Path) -> tuple[int, int]:
    """(completed, interrupted) trials of the study, (0, 0) when there is none yet."""
    if not (out / "study.db").exists():
        return 0, 0
    try:
        trials = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{out / 'study.db'}"
                                   ).get_trials()
    except KeyError:  # the file, not yet the study
        return 0, 0
    return (sum(t.state.name == "COMPLETE" for t in trials),
            sum(t.state.name == "FAIL" and t.user_attrs.get("interrupted", False) for t in trials))


@pytest.mark.slow
@pytest.mark.parametrize("reached, first_run", POINTS.values(), ids=POINTS.keys())
def test_ctrl_c_at_any_point_exits_130_and_the_search_continues(tmp_path, reached, first_run):
    out = tmp_path / "s"
    cmd = nas_cli(out, "--trials", str(TRIALS), "--ckpt-every-steps", "1")
    with procs.started(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True) as p:
        while p.poll() is None and not reached(out, p.pid):
            time.sleep(0.01)
        assert p.poll() is None, "the search ended before it reached the point"
        p.send_signal(signal.SIGINT)
        stdout, err = p.communicate(timeout=180)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    if p.returncode == -signal.SIGINT:  # after its last line the search ends by the signal (cli.main)
        assert err == "" and "best (reward" in stdout, (stdout, err)
    else:
        assert p.returncode == 130, (p.returncode, err)
        [line] = err.splitlines()
        assert line.startswith("effnet: stopped by SIGINT") and "run the same command" in line, err
    if first_run is not None:
        assert trial_states(out) == first_run

    res = run_nas(NasConfig(**CFG, trials=TRIALS, output=str(out)))
    assert res.complete and len(res.trained) == TRIALS
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{out / 'study.db'}")
    done = completed(study)
    assert len(done) == len({t.user_attrs["candidate"] for t in done}) == TRIALS
    stopped = [t for t in study.get_trials() if t.state.name == "FAIL"]
    assert len(stopped) <= 1 and all(t.user_attrs["interrupted"] for t in stopped)
