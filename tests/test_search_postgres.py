"""Many machines, for real: a PostgreSQL 15 server in a temp dir on a loopback port, two worker
processes of `effnet search nas` and of `effnet search compound` sharing a study in it (each with
its own output directory, as on two machines), and a killed worker's trial retried."""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest

import procs
from effnet.fileio import FAULT_ENV
from test_nas_workers import trainings  # how often each candidate was trained, from the logs

psycopg2 = pytest.importorskip("psycopg2", reason="the PostgreSQL driver (effnet[distributed]) "
                                                  "is not installed")

pytestmark = pytest.mark.slow

NAS = ["search", "nas", "--space", "b0", "--base", "efficientnet_b0", "--base-phi", "-6",
       "--base-size", "32", "--time-batch", "8", "--budget-epochs", "1", "--train-subset", "128",
       "--val-subset", "64", "--batch-size", "32", "--no-progress"]
COMPOUND = ["search", "compound", "--base", "efficientnet_b0", "--base-phi", "-4", "--base-size",
            "16", "--grid-step", "0.2", "--tolerance", "0.1", "--budget-epochs", "1",
            "--train-subset", "64", "--val-subset", "32", "--batch-size", "32", "--no-progress"]
COMPOUND_STUDY, COMPOUND_N = "compound-efficientnet_b0-phi1", 4  # as tests/test_search_workers.py
NAS_STUDY = "nas-b0-efficientnet_b0-phi-6"


def _bin(name: str) -> str | None:
    for d in (os.environ.get("PG_BIN"), "/usr/local/bin", "/usr/lib/postgresql/15/bin"):
        if d and os.access(Path(d) / name, os.X_OK):
            return str(Path(d) / name)
    return shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg_url():
    bins = {n: _bin(n) for n in ("initdb", "pg_ctl", "postgres")}
    if not all(bins.values()):
        pytest.skip(f"PostgreSQL server binaries absent: {[n for n, b in bins.items() if not b]}")
    root = Path(tempfile.mkdtemp(prefix="effnet-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as an unprivileged user
        user = pwd.getpwnam("nobody")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "nobody", "--"]
    data, port = root / "data", _free_port()

    def run(*cmd):
        procs.run([*as_user, *cmd], check=True, cwd=root, timeout=120)

    try:
        run(bins["initdb"], "-D", str(data), "-A", "trust", "-U", "effnet", "--no-sync",
            "--locale=C", "-E", "UTF8")
        run(bins["pg_ctl"], "-D", str(data), "-l", str(root / "server.log"), "-w", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        con = psycopg2.connect(host="127.0.0.1", port=port, user="effnet", dbname="postgres")
        con.autocommit = True
        for db in ("nas", "compound"):
            con.cursor().execute(f"CREATE DATABASE {db}")
        con.close()
        yield f"postgresql+psycopg2://effnet@127.0.0.1:{port}"
    finally:
        if (data / "postmaster.pid").exists():
            procs.run([*as_user, bins["pg_ctl"], "-D", str(data), "-m", "immediate", "stop"],
                      cwd=root, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def worker(argv: list[str], out: Path, url: str, *extra: str, **env) -> subprocess.Popen:
    return procs.popen([sys.executable, "-m", "effnet", *argv, "--output", str(out), "--storage", url,
                        *extra], env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def claimed(url: str) -> list[tuple]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            return con.execute(sa.text("select candidate, attempt, trial from effnet_claims "
                                       "where candidate not like '#%'")).fetchall()
    except sa.exc.ProgrammingError:  # table not created yet
        return []
    finally:
        engine.dispose()


def die_during_second_trial(argv: list[str], out: Path, url: str, *extra: str) -> int:
    """Run a worker that is SIGKILLed while it saves its second candidate's checkpoint (one per
    candidate: one epoch each), so mid-trial every time; that trial's number."""
    before = {r[2] for r in claimed(url)}
    [(_, err)], [code] = procs.finish_all([worker(argv, out, url, *extra,
                                                  **{FAULT_ENV: "LATEST:2:5"})])
    assert code == -signal.SIGKILL, err
    return max({r[2] for r in claimed(url)} - before)


def test_two_nas_workers_share_a_postgres_study_and_a_killed_trial_is_retried(pg_url, tmp_path):
    url = f"{pg_url}/nas"
    outs = [tmp_path / "machine-a", tmp_path / "machine-b"]
    results, codes = procs.finish_all(worker(NAS, o, url, "--trials", "4") for o in outs)
    assert codes == [0, 0], results
    study = optuna.load_study(study_name=NAS_STUDY, storage=url)
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    keys = [t.user_attrs["candidate"] for t in done]
    assert len(keys) == len(set(keys)) >= 4  # no candidate trained twice
    assert len({t.user_attrs["worker"] for t in done}) == 2  # both workers trained
    assert set(trainings(*outs).values()) == {1} and set(trainings(*outs)) == set(keys)

    # a third machine joins for 2 more candidates and is killed during its second
    victim = die_during_second_trial(NAS, tmp_path / "machine-c", url, "--trials", "6",
                                     "--heartbeat", "1")
    killed = next(t for t in optuna.load_study(study_name=NAS_STUDY, storage=url).get_trials()
                  if t.number == victim)
    assert killed.state.name == "RUNNING"  # until a worker finds its heartbeat stale
    [(out, err)], codes = procs.finish_all([worker(NAS, tmp_path / "machine-d", url, "--trials", "6",
                                                   "--heartbeat", "1")])
    assert codes == [0], err
    trials = optuna.load_study(study_name=NAS_STUDY, storage=url).get_trials()
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert [t.number for t in failed] == [victim]
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == victim)
    assert retry.state.name == "COMPLETE"
    assert retry.user_attrs["candidate"] == killed.user_attrs["candidate"]
    done = [t.user_attrs["candidate"] for t in trials if t.state.name == "COMPLETE"]
    assert len(done) == len(set(done)) >= 6


def test_two_compound_workers_share_a_postgres_study_and_a_killed_trial_is_retried(pg_url, tmp_path):
    url = f"{pg_url}/compound"
    victim = die_during_second_trial(COMPOUND, tmp_path / "machine-c", url, "--heartbeat", "1")
    outs = [tmp_path / "machine-a", tmp_path / "machine-b"]
    results, codes = procs.finish_all(worker(COMPOUND, o, url, "--heartbeat", "1") for o in outs)
    assert codes == [0, 0], results
    trials = optuna.load_study(study_name=COMPOUND_STUDY, storage=url).get_trials()
    done = [t.params["candidate"] for t in trials if t.state.name == "COMPLETE"]
    assert len(done) == len(set(done)) == COMPOUND_N  # every grid point once
    fresh = trainings(*outs)
    assert set(fresh.values()) == {1}  # the two workers never trained the same point
    assert all(trainings(o) for o in outs)  # and both trained
    killed = next(t for t in trials if t.number == victim)
    assert killed.state.name == "FAIL"
    # killed mid-trial: retried once by a surviving worker; the point done before is kept
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == victim)
    assert retry.state.name == "COMPLETE" and retry.params == killed.params
    assert sum(fresh.values()) == COMPOUND_N - 1
    rows = claimed(url)
    assert len({c for c, _, _ in rows}) == COMPOUND_N
