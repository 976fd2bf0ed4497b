"""The alpha/beta/gamma grid search of V1 section 3 (step 1), as an Optuna study.

Every in-tolerance grid point (see `grid`) is one categorical value of a GridSampler; a trial
trains its network with the short proxy recipe through `effnet.train` and reports val top-1.
The study lives in a database (SQLite beside the outputs by default), so a killed or stopped
worker is re-run with the same command and continues, and several workers can share one study.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..signals import StopOnSignal, stop_on_signal
from . import study as st
from .grid import Candidate, MacCounter, SearchBase, base_spec, candidates
from .proxy import Proxy, train_spec

# seconds a claimed trial waits before training: lets tests see workers overlap and kill mid-trial
TRIAL_DELAY_ENV = "EFFNET_TEST_TRIAL_DELAY_S"


@dataclass(frozen=True)
class SearchConfig:
    base: str
    phi: float = 1.0
    grid_step: float = 0.05
    tolerance: float = 0.1
    base_phi: float | None = None  # shrink the base first (paper coefficients), e.g. -4 for CPUs
    base_size: int | None = None  # base resolution; default the proxy recipe's image size
    proxy: Proxy = Proxy()
    trials: int | None = None  # trials this worker runs; None: until the study is done
    storage: str | None = None  # default sqlite:///<output>/study.db
    study: str | None = None
    output: str | None = None  # default runs/search-<base>
    heartbeat: int = 60
    progress: bool = True

    def __post_init__(self) -> None:
        if self.trials is not None and self.trials < 1:
            raise UserError(f"--trials must be >= 1 (got {self.trials})")


@dataclass
class SearchResult:
    output: Path
    base: SearchBase
    base_macs: int
    measured: list[Candidate]  # every prefiltered grid point
    trained: list[Candidate]  # the unique in-tolerance ones, with .result
    best: Candidate | None
    complete: bool
    files: dict[str, Path]


def prepare_base(name: str, base_phi: float | None, base_size: int | None, proxy: Proxy
                 ) -> SearchBase:
    """The base network (shrunk by `base_phi`) and its size, by the data config's precedence:
    --base-size > the proxy recipe's image size > the base's own (scaled with it)."""
    from ..data.config import DataOverrides, resolve_data_config
    from ..models import plan_model
    from ..train.presets import get_recipe

    config = plan_model(name, phi=base_phi).config
    recipe_size = DataOverrides(eval_size=get_recipe(proxy.recipe).img_size)
    pre = resolve_data_config(config, recipe=recipe_size, flags=DataOverrides(eval_size=base_size))
    return base_spec(config.spec, pre.eval_size, pre)


def _config_record(cfg: SearchConfig, base: SearchBase, keys: list[str]) -> dict:
    return {"base": cfg.base, "base_phi": cfg.base_phi, "base_size": base.size,
            "phi": cfg.phi, "grid_step": cfg.grid_step, "tolerance": cfg.tolerance,
            "proxy": cfg.proxy.study_record(), "candidates": keys}


def run_search(cfg: SearchConfig) -> SearchResult:
    """Run (or join, or continue) the search; SIGINT/SIGTERM stop it at its next safe point with
    effnet.signals.Stopped (the interrupted trial is queued again by the next run)."""
    with stop_on_signal(st.CONTINUE) as stop:
        return _run_search(cfg, stop)


def _run_search(cfg: SearchConfig, stop: StopOnSignal) -> SearchResult:
    import optuna
    from optuna.trial import TrialState
    from tqdm import tqdm

    from ..data import load_data

    base = prepare_base(cfg.base, cfg.base_phi, cfg.base_size, cfg.proxy)
    out = Path(cfg.output or Path("runs") / f"search-{cfg.base}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--output {out} is a file, not a directory")
    if cfg.storage is None:
        out.mkdir(parents=True, exist_ok=True)
    url = cfg.storage or st.sqlite_url(out / "study.db")
    stop.check()
    storage = st.open_storage(url, cfg.heartbeat)  # a bad URL fails before minutes of counting
    splits = load_data(cfg.proxy.data)  # a bad --data fails here, once, not in every trial
    splits.require_two_classes()
    counter = MacCounter(num_classes=len(splits.classes))
    base_macs, measured, trained = candidates(base, cfg.phi, cfg.grid_step, cfg.tolerance,
                                              counter, progress=cfg.progress)
    if not trained:
        raise UserError(f"no grid point has measured MACs within {cfg.tolerance:.0%} of "
                        f"2^phi = {2 ** cfg.phi:g} x the base ({len(measured)} points tried); "
                        f"raise --tolerance or refine --grid-step")
    keys = [c.key for c in trained]
    by_key = {c.key: c for c in trained}
    out.mkdir(parents=True, exist_ok=True)
    stop.check()
    name = cfg.study or f"compound-{cfg.base}-phi{cfg.phi:g}"
    study = st.open_study(name, storage, url, optuna.samplers.GridSampler({st.PARAM: keys}))
    st.check_config(study, _config_record(cfg, base, keys))
    st.requeue_interrupted(study, keys)

    def objective(trial: optuna.Trial) -> float:
        key = trial.suggest_categorical(st.PARAM, keys)
        cand = by_key[key]
        p = cand.point
        for k, v in (("alpha", p.alpha), ("beta", p.beta), ("gamma", p.gamma),
                     ("resolution", cand.resolution), ("macs", cand.macs), ("ratio", cand.ratio)):
            trial.set_user_attr(k, v)
        run_dir = out / "trials" / key
        with st.trial_outcome(trial, key, stop, cfg.progress):
            if not st.claim(storage, name, key, st.attempts(study, key, keys), trial.number):
                trial.set_user_attr("duplicate", True)  # another trial trains this point
                raise optuna.TrialPruned()
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # who trained it
            run_dir.mkdir(parents=True, exist_ok=True)
            if delay := float(os.environ.get(TRIAL_DELAY_ENV) or 0):  # tests: a trial that lasts
                time.sleep(delay)
            summary = train_spec(cand.spec, cand.resolution, cfg.proxy, run_dir,
                                 log=run_dir.parent / f"{key}.log", preprocess=base.preprocess)
        trial.set_user_attr("run_dir", str(run_dir))
        return float(summary["best"]["top1"])

    def finished(states: dict) -> int:
        return sum(s["state"] in ("done", "failed") for s in states.values())

    states = st.status(study, keys)
    bar = tqdm(total=len(keys), initial=finished(states), desc="compound search",
               unit="candidate", disable=not cfg.progress, dynamic_ncols=True)
    ran = 0

    def on_trial(study_: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        nonlocal ran
        if t.state != TrialState.PRUNED:
            ran += 1
        now = st.status(study_, keys)
        bar.n = finished(now)
        done = [s["top1"] for s in now.values() if s["state"] == "done"]
        if done:
            bar.set_postfix(best_top1=f"{max(done):.2f}")
        bar.refresh()
        if cfg.trials is not None and ran >= cfg.trials:
            study_.stop()
        stop.check()  # between trials

    waited_msg = False
    try:
        while cfg.trials is None or ran < cfg.trials:
            stop.check()
            states = st.status(study, keys)
            left = [k for k, s in states.items() if s["state"] in ("todo", "waiting")]
            running = [k for k, s in states.items() if s["state"] == "running"]
            if left:
                todo = [k for k in left if states[k]["state"] == "todo"]
                waiting = any(s["state"] == "waiting" for s in states.values())
                if todo and not waiting and not _grid_has_unvisited(study, keys):
                    for k in todo:  # the sampler considers these visited (e.g. a lost claim)
                        study.enqueue_trial({st.PARAM: k})
                study.optimize(objective, n_trials=None if cfg.trials is None else cfg.trials - ran,
                               catch=(Exception,), callbacks=[on_trial], gc_after_trial=True)
                continue
            if not running:
                break
            waited_msg = st.wait_for_workers(study, len(running), cfg.heartbeat, stop,
                                             cfg.progress, waited_msg)
    finally:
        bar.close()

    states = st.status(study, keys)
    for c in trained:
        c.result = dict(states[c.key])
    for c in measured:
        if c.same_as and c.same_as in by_key:
            c.result = dict(by_key[c.same_as].result)
    done = [c for c in trained if c.result.get("state") == "done"]
    complete = all(s["state"] in ("done", "failed") for s in states.values())
    if complete and not done:
        first = next(c.result.get("error") for c in trained)
        raise UserError(f"all {len(trained)} candidates failed; the first: {first}")
    best = max(done, key=lambda c: (c.result["top1"], -c.macs)) if done else None
    from .report import write_search_outputs

    files = write_search_outputs(out, cfg, base, base_macs, measured, trained, best, complete,
                                 study_name=name, storage=st.public_url(url))
    return SearchResult(out, base, base_macs, measured, trained, best, complete, files)


def _grid_has_unvisited(study, keys: list[str]) -> bool:
    """Whether GridSampler still has a point no finished or running trial holds."""
    from optuna.trial import TrialState

    seen = set()
    for t in study.get_trials(deepcopy=False):
        gid = t.system_attrs.get("grid_id")
        if isinstance(gid, int) and (t.state.is_finished() or t.state == TrialState.RUNNING):
            seen.add(gid)
    return len(seen) < len(keys)


