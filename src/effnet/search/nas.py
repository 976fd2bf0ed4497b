"""Training-aware architecture search (EfficientNetV2 section 3.3) as an Optuna study.

Each trial samples a candidate from the space (`space`), measures its training step time on this
machine, trains it with the short proxy recipe through `effnet.train` and scores it with the
reward (`reward`). Everything lives in the same kind of study database as the compound search
(`study`): SQLite beside the outputs by default, a PostgreSQL URL for workers on many machines.

* `--trials N` is the number of distinct candidates the study trains in all: re-running the same
  command continues an interrupted search with exactly the remaining ones, and several workers
  share the N (each claims before it trains, so at most one trial more per extra worker when
  they start their last trials at the same moment).
* A candidate is claimed by its spec key before training: a worker that samples an architecture
  another trial trains or trained prunes its trial untrained (duplicates are recognised by spec).
* A killed worker's trial is found by its missing heartbeat and retried once with the same
  parameters; a Ctrl-C'd trial is queued again when the search is re-run.
"""

from __future__ import annotations

import os
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from ..arch.spec import NetSpec
from ..errors import UserError
from ..signals import StopOnSignal, stop_on_signal
from . import study as st
from .compound import prepare_base
from .grid import SearchBase
from .proxy import Proxy, train_spec
from .reward import Objective, step_time
from .space import SPACES, SearchSpace, make_space, spec_key

SAMPLERS = ("random", "tpe")
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # which process ran a trial (user attr)
BASE_ATTR = "effnet_nas_base"
BASE_CLAIM = "#base-timing"


@dataclass(frozen=True)
class NasConfig:
    space: str = "v2"
    base: str | None = None  # default: the space's backbone (SPACES)
    base_phi: float | None = None  # shrink the backbone first (paper coefficients), e.g. -4
    base_size: int | None = None  # proxy resolution; default the recipe's image size
    proxy: Proxy = Proxy()
    trials: int = 20  # distinct candidates trained by the whole study
    worker_trials: int | None = None  # this worker stops after training this many
    sampler: str = "random"
    objective: Objective = Objective()
    time_batch: int = 16  # the batch every candidate's train step is timed with
    time_steps: int = 7
    storage: str | None = None  # default sqlite:///<output>/study.db
    study: str | None = None
    output: str | None = None  # default runs/nas-<space>
    heartbeat: int = 60
    progress: bool = True

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise UserError(f"unknown search space {self.space!r}; choose one of "
                            f"{', '.join(SPACES)}")
        if self.sampler not in SAMPLERS:
            raise UserError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.trials < 1:
            raise UserError(f"--trials must be >= 1 (got {self.trials})")
        if self.worker_trials is not None and self.worker_trials < 1:
            raise UserError(f"--worker-trials must be >= 1 (got {self.worker_trials})")
        if self.time_batch < 1 or self.time_steps < 1:
            raise UserError("--time-batch and --time-steps must be >= 1")


@dataclass
class Trained:
    """One distinct candidate of the study and what its trial measured."""

    key: str
    spec: NetSpec
    trial: int
    attrs: dict = field(default_factory=dict)  # top1, step_s, params, macs, S, P, rewards

    @property
    def reward(self) -> float:
        return self.attrs["reward"]


@dataclass
class NasResult:
    output: Path
    space: SearchSpace
    size: int  # the image size candidates train and are timed at
    base: dict  # the backbone's step_s, params, macs
    trained: list[Trained]
    best: Trained | None
    complete: bool
    files: dict[str, Path]


class SeededRandomSampler(optuna.samplers.RandomSampler):
    """Uniform random search whose draws depend only on (seed, trial number, parameter).

    Optuna's RandomSampler seeds one generator per process, so two workers started with the same
    seed draw the same sequence and every sample of the second is a duplicate; seeding by trial
    number gives each worker's trials their own candidates and makes a study reproducible.
    """

    def __init__(self, seed: int):
        super().__init__(seed=seed)
        self.seed = seed

    def sample_independent(self, study, trial, param_name, param_distribution):
        rng = random.Random(f"{self.seed}/{trial.number}/{param_name}")
        return rng.choice(param_distribution.choices)


def _sampler(name: str, seed: int):
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
    return SeededRandomSampler(seed)


def _config_record(cfg: NasConfig, base: SearchBase) -> dict:
    return {"kind": "nas", "space": cfg.space, "base": cfg.base, "base_phi": cfg.base_phi,
            "base_size": base.size, "proxy": cfg.proxy.study_record(),
            "objective": vars(cfg.objective), "time_batch": cfg.time_batch}


def _base_stats(study, storage, name: str, base: NetSpec, timing, heartbeat: int,
                stop: StopOnSignal) -> dict:
    """The backbone's step time, params and MACs: measured once per study (by the worker that
    claims it) and kept in the study's user attrs, so every candidate is normalised alike."""
    if BASE_ATTR in study.user_attrs:
        return study.user_attrs[BASE_ATTR]
    if st.claim(storage, name, BASE_CLAIM, 0, -1):
        stats = timing(base)
        study.set_user_attr(BASE_ATTR, stats)
        return stats
    deadline = time.monotonic() + 2 * heartbeat + 60
    while time.monotonic() < deadline:  # another worker measures it now
        stop.sleep(1)
        stop.check()
        attrs = study.user_attrs  # a fresh read from the storage each time
        if BASE_ATTR in attrs:
            return attrs[BASE_ATTR]
    stats = timing(base)  # the worker that claimed it died before saving it
    study.set_user_attr(BASE_ATTR, stats)
    return stats


def _requeue_interrupted(study) -> None:
    """Queue again each candidate whose last trial was stopped by Ctrl-C (not its own failure)."""
    from optuna.trial import TrialState

    last_fail: dict[str, optuna.trial.FrozenTrial] = {}
    alive = set()  # candidates done, running or already queued
    for t in study.get_trials(deepcopy=False):
        k = st.trial_candidate(t)
        if k is None or t.user_attrs.get("duplicate"):
            continue
        if t.state == TrialState.FAIL:
            last_fail[k] = t
        elif t.state != TrialState.PRUNED:
            alive.add(k)
    for k, t in last_fail.items():
        if k not in alive and t.user_attrs.get(st.INTERRUPTED):
            study.enqueue_trial(t.params, user_attrs={st.PARAM: k, "requeued": True},
                                skip_if_exists=False)


def _census(study) -> dict:
    """Distinct candidates done, running or queued, and failures (duplicates not counted)."""
    from optuna.trial import TrialState

    done, running, waiting, failed = {}, set(), 0, []
    for t in study.get_trials(deepcopy=False):
        k = st.trial_candidate(t)
        if t.state == TrialState.COMPLETE and k not in done:
            done[k] = t
        elif t.state == TrialState.RUNNING and not t.user_attrs.get("duplicate"):
            running.add(k)
        elif t.state == TrialState.WAITING:
            waiting += 1
        elif t.state == TrialState.FAIL and not t.user_attrs.get(st.INTERRUPTED):
            failed.append(t)
    running -= set(done)
    return {"done": done, "running": running, "waiting": waiting, "failed": failed}


def run_nas(cfg: NasConfig) -> NasResult:
    """Run (or join, or continue) the search; SIGINT/SIGTERM stop it at its next safe point with
    effnet.signals.Stopped (the interrupted trial is queued again by the next run)."""
    with stop_on_signal(st.CONTINUE) as stop:
        return _run_nas(cfg, stop)


def _run_nas(cfg: NasConfig, stop: StopOnSignal) -> NasResult:
    import torch
    from tqdm import tqdm

    from ..data import load_data

    base = prepare_base(cfg.base or SPACES[cfg.space], cfg.base_phi, cfg.base_size, cfg.proxy)
    space = make_space(cfg.space, base.spec)
    size = base.size
    out = Path(cfg.output or Path("runs") / f"nas-{cfg.space}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--output {out} is a file, not a directory")
    if cfg.storage is None:
        out.mkdir(parents=True, exist_ok=True)
    url = cfg.storage or st.sqlite_url(out / "study.db")
    stop.check()
    storage = st.open_storage(url, cfg.heartbeat)
    splits = load_data(cfg.proxy.data)  # a bad --data fails here, once, not in every trial
    splits.require_two_classes()
    n_classes = len(splits.classes)
    out.mkdir(parents=True, exist_ok=True)
    name = cfg.study or f"nas-{cfg.space}-{base.name}"
    study = st.open_study(name, storage, url, _sampler(cfg.sampler, cfg.proxy.seed))
    st.check_config(study, _config_record(cfg, base))

    threads = torch.get_num_threads()  # the trainer changes it; every timing uses this count

    def timing(spec: NetSpec) -> dict:
        torch.set_num_threads(threads)
        return step_time(spec, size, cfg.time_batch, n_classes, cfg.time_steps,
                         seed=cfg.proxy.seed)

    stop.check()
    base_stats = _base_stats(study, storage, name, base.spec, timing, cfg.heartbeat, stop)
    _requeue_interrupted(study)

    def objective(trial: optuna.Trial) -> float:
        spec = space.suggest(trial)
        key = spec_key(spec)
        trial.set_user_attr(st.PARAM, key)
        trial.set_user_attr("name", spec.name)
        trial.set_user_attr("worker", WORKER)
        run_dir = out / "trials" / key
        with st.trial_outcome(trial, key, stop, cfg.progress):
            if not st.claim(storage, name, key, st.attempts(study, key), trial.number):
                trial.set_user_attr("duplicate", True)  # another trial trains (or trained) this spec
                raise optuna.TrialPruned()
            measured = timing(spec)
            summary = train_spec(spec, size, cfg.proxy, run_dir,
                                 log=run_dir.parent / f"{key}.log", preprocess=base.preprocess)
        nonlocal ran
        ran += 1
        top1 = float(summary["best"]["top1"])
        scores = cfg.objective.rewards(top1, measured["step_s"], measured["params"],
                                       measured["macs"], base_stats)
        for k, v in {"top1": top1, **measured, **scores, "run_dir": str(run_dir)}.items():
            trial.set_user_attr(k, v)
        return scores["reward"]

    census = _census(study)
    bar = tqdm(total=cfg.trials, initial=min(cfg.trials, len(census["done"])), desc="NAS",
               unit="candidate", disable=not cfg.progress, dynamic_ncols=True)
    ran, waited_msg = 0, False
    try:
        while cfg.worker_trials is None or ran < cfg.worker_trials:
            stop.check()
            census = _census(study)
            bar.n = min(cfg.trials, len(census["done"]))
            bar.refresh()
            if len(census["done"]) >= cfg.trials:
                break
            if len(census["failed"]) >= cfg.trials + 3:
                break  # the candidates keep failing: report it below instead of sampling forever
            if len(census["done"]) + len(census["running"]) >= cfg.trials and not census["waiting"]:
                waited_msg = st.wait_for_workers(study, len(census["running"]), cfg.heartbeat,
                                                 stop, cfg.progress, waited_msg)
                continue
            study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
    finally:
        bar.close()

    census = _census(study)
    trained = [Trained(k, space.build(space.choices_from_params(t.params)), t.number,
                       dict(t.user_attrs)) for k, t in census["done"].items()]
    trained.sort(key=lambda c: -c.reward)
    complete = len(trained) >= cfg.trials
    if not trained and census["failed"] and not census["running"]:
        raise UserError(f"{len(census['failed'])} candidates failed; the first: "
                        f"{census['failed'][0].user_attrs.get('error', 'worker stopped')}")
    best = trained[0] if trained else None
    from .nas_report import write_nas_outputs

    files = write_nas_outputs(out, cfg, space, base.preprocess, base_stats, trained, best, complete,
                              study_name=name, storage=st.public_url(url))
    return NasResult(out, space, base.size, base_stats, trained, best, complete, files)
