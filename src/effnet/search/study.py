"""Optuna plumbing for searches that many workers share: storage, claims, stale trials.

* Storage: any SQLAlchemy URL optuna's RDBStorage takes (SQLite file by default; PostgreSQL for
  workers on several machines). Heartbeats let a surviving or restarted worker find a trial whose
  worker was killed: it is marked FAIL and re-queued once (RetryHeartbeatStaleTrialCallback).
* Claims: GridSampler hands the first N trial numbers grid points 0..N-1, but retries, restarts and
  concurrent workers can still meet the same point. Before training, a trial inserts a row
  (study, candidate, attempt) into a table with that primary key; the insert is atomic in every
  database, so exactly one trial per attempt wins and any other prunes itself untrained.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import sqlalchemy as sa
from optuna.trial import TrialState

from ..errors import UserError, error_line
from ..signals import StopOnSignal

CLAIMS = sa.MetaData()
CLAIMS_TABLE = sa.Table(
    "effnet_claims", CLAIMS,
    sa.Column("study", sa.String(512), primary_key=True),
    sa.Column("candidate", sa.String(128), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("trial", sa.Integer, nullable=False),
)
PARAM = "candidate"
INTERRUPTED = "interrupted"
# how a stopped search continues (effnet.signals: "stopped by SIGINT <this>")
CONTINUE = ("during the search; finished trials are kept in the study and an interrupted one is "
            "trained again: run the same command again to continue")


def sqlite_url(path: Path) -> str:
    """The URL of a SQLite file, built by SQLAlchemy: it escapes what a URL would read otherwise
    (`?` starts the query, `#` a fragment, `%` an escape; optuna also formats `{...}`)."""
    return sa.engine.URL.create("sqlite", database=str(path.resolve())).render_as_string(
        hide_password=False)


def open_storage(url: str, heartbeat: int) -> optuna.storages.RDBStorage:
    """RDBStorage with heartbeats and one retry of a killed worker's trial; one-line errors."""
    if heartbeat < 1:
        raise UserError(f"--heartbeat must be >= 1 second (got {heartbeat})")
    kwargs = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 120}}  # concurrent workers wait for the file lock
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        storage = _retrying(lambda: optuna.storages.RDBStorage(
            url, engine_kwargs=kwargs, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=1)))
        _retrying(lambda: CLAIMS.create_all(storage.engine, checkfirst=True))
    except UserError:
        raise
    except Exception as e:  # sqlalchemy/driver errors of every kind: bad URL, no driver, no file
        raise UserError(f"cannot open study storage {public_url(url)}: {error_line(e)}") from None
    return storage


def open_study(name: str, storage, url: str, sampler) -> optuna.Study:
    """Create the study or join it (other workers, a restart); one-line errors."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own one-line messages instead
    try:
        return optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                   direction="maximize", load_if_exists=True)
    except Exception as e:
        raise UserError(f"cannot open study {name!r} in {public_url(url)}: {error_line(e)}") from None


def wait_for_workers(study: optuna.Study, running: int, heartbeat: int, stop: StopOnSignal,
                     progress: bool, said: bool) -> bool:
    """Sleep one poll while trials run in other workers, then fail the stale ones (a killed
    worker's); says why once. Returns True: the message has been said."""
    if not said:
        say(f"effnet search: waiting for {running} trial(s) running in other workers (a dead "
            f"worker's trial is retried after {2 * heartbeat} s)", progress)
    stop.sleep(min(heartbeat, 10))
    stop.check()
    optuna.storages.fail_stale_trials(study)
    return True


def public_url(url: str) -> str:
    """The storage URL without its password (printed, and written into best.json)."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: nothing to hide
        return url


def _retrying(make, tries: int = 8):
    """Schema creation checks, then creates: two workers starting on a fresh database both
    check, and the slower one's CREATE fails. Its second look finds the tables made."""
    for i in range(tries):
        try:
            return make()
        except (sa.exc.OperationalError, sa.exc.IntegrityError) as e:
            # the loser of the race sees "already exists", "locked" or a duplicate version row
            racy = isinstance(e, sa.exc.IntegrityError) or any(
                s in str(e) for s in ("already exists", "locked"))
            if i == tries - 1 or not racy:
                raise
            time.sleep(0.25 * (i + 1))


def claim(storage, study_name: str, candidate: str, attempt: int, trial_number: int) -> bool:
    """True when this trial may train `candidate` (it is the first to claim this attempt)."""
    try:
        with storage.engine.begin() as conn:
            conn.execute(CLAIMS_TABLE.insert().values(study=study_name, candidate=candidate,
                                                      attempt=attempt, trial=trial_number))
        return True
    except sa.exc.IntegrityError:
        return False


def trial_candidate(t: optuna.trial.FrozenTrial, keys: list[str] | None = None) -> str | None:
    """The candidate a trial is (or will be) about, even before it suggested its parameter: a
    grid point of `keys`, or (NAS) the spec key the trial recorded in its user attrs."""
    if PARAM in t.user_attrs:
        return t.user_attrs[PARAM]
    if PARAM in t.params:
        return t.params[PARAM]
    fixed = t.system_attrs.get("fixed_params") or {}
    if PARAM in fixed:
        return fixed[PARAM]
    gid = t.system_attrs.get("grid_id")
    return keys[gid] if keys and isinstance(gid, int) and 0 <= gid < len(keys) else None


def attempts(study: optuna.Study, key: str, keys: list[str] | None = None) -> int:
    """How many trials of `key` failed (killed, interrupted or raised): the next attempt's number."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
               if trial_candidate(t, keys) == key)


def status(study: optuna.Study, keys: list[str]) -> dict[str, dict]:
    """Per candidate: state done/failed/running/waiting/todo, with its best trial's facts."""
    out = {k: {"state": "todo", "trial": None, "top1": None, "error": ""} for k in keys}
    for t in study.get_trials(deepcopy=False):
        k = trial_candidate(t, keys)
        if k not in out:
            continue
        o = out[k]
        if t.state == TrialState.COMPLETE:
            o.update(state="done", trial=t.number, top1=t.value, error="")
        elif o["state"] == "done":
            continue
        elif t.state == TrialState.RUNNING:
            o.update(state="running", trial=t.number)
        elif t.state == TrialState.WAITING:
            o.update(state="waiting", trial=t.number)
        elif t.state == TrialState.FAIL and o["state"] not in ("running", "waiting"):
            interrupted = bool(t.user_attrs.get(INTERRUPTED))
            o.update(state="interrupted" if interrupted else "failed", trial=t.number,
                     error=t.user_attrs.get("error", "worker stopped (no heartbeat)"))
    # a retry queued after the failure it retries: the retry decides
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)):
        k = trial_candidate(t, keys)
        if k in out and out[k]["state"] != "done":
            out[k]["state"] = "waiting" if t.state == TrialState.WAITING else "running"
    return out


def requeue_interrupted(study: optuna.Study, keys: list[str]) -> int:
    """Queue again the candidates whose last trial was stopped by Ctrl-C (not a failure of theirs).
    Two workers doing this at once queue it twice; the claim lets only one of them train."""
    n = 0
    for k, s in status(study, keys).items():
        if s["state"] == "interrupted":
            study.enqueue_trial({PARAM: k}, user_attrs={"requeued": True}, skip_if_exists=False)
            n += 1
    return n


def check_config(study: optuna.Study, config: dict) -> None:
    """A study remembers what it searches; a worker with other settings may not join it."""
    saved = study.user_attrs.get("effnet_config")
    if saved is None:
        study.set_user_attr("effnet_config", config)
        return
    diff = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
    if diff:
        raise UserError(f"study {study.study_name!r} was created with other settings "
                        f"(differs: {', '.join(diff)}); use another --study or --output")


def say(msg: str, progress: bool) -> None:
    """A line on stderr that does not break a progress bar."""
    if progress:
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stderr)
    else:
        print(msg, file=sys.stderr)


@contextlib.contextmanager
def trial_outcome(trial: optuna.Trial, key: str, stop: StopOnSignal, progress: bool
                  ) -> Iterator[None]:
    """Around a trial's claim and training, which polls `stop` (a signal that came earlier stops
    it before the claim): an interrupted trial is marked to be queued again on the next run; a
    failed one records its error (the trial ends FAIL) and says so in one line."""
    try:
        stop.check()
        yield
    except KeyboardInterrupt:
        trial.set_user_attr(INTERRUPTED, True)
        raise
    except optuna.TrialPruned:  # a claim lost to another trial
        raise
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        trial.set_user_attr("error", f"{type(e).__name__}: {msg}"[:500])
        say(f"effnet search: trial {trial.number} ({key}) failed: {type(e).__name__}: {msg}", progress)
        raise

