"""`effnet search compound` (the alpha/beta/gamma grid search) and `effnet experiment scaling`
(single-dimension vs compound scaling at matched FLOPs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from . import commands
from .argtypes import finite_float, nonneg_int, positive_int


def _proxy_flags(p: argparse.ArgumentParser, base_required: bool = True) -> None:
    g = p.add_argument_group("base and proxy training")
    g.add_argument("--base", required=base_required, default=None,
                   help="zoo model (or spec JSON file) to start from, e.g. efficientnet_b0")
    g.add_argument("--base-phi", type=finite_float, default=None,
                   help="shrink the base first by the paper's rule (e.g. -4 for a CPU-sized B0)")
    g.add_argument("--base-size", type=positive_int, default=None,
                   help="base resolution in px (default: the recipe's image size, else the model's)")
    g.add_argument("--data", default=None, help="as for train (default: built-in digits)")
    g.add_argument("--recipe", default="quick", help="preset for the proxy training (default quick)")
    g.add_argument("--budget-epochs", type=positive_int, default=3, help="epochs per candidate (default 3)")
    g.add_argument("--train-subset", type=positive_int, default=None, help="train on N images")
    g.add_argument("--val-subset", type=positive_int, default=None)
    g.add_argument("-b", "--batch-size", type=positive_int, default=None)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default=None)
    g.add_argument("-j", "--workers", type=nonneg_int, default=None)
    g.add_argument("--ckpt-every-steps", type=nonneg_int, default=0,
                   help="also checkpoint every N steps, so that a killed worker's candidate is "
                   "resumed from there by the worker that retries it (default: epoch ends)")
    g.add_argument("--no-progress", dest="progress", action="store_false")


def _add_study_flags(g, study: str, output: str) -> None:
    """Where a search's Optuna study lives and how its workers keep alive (compound and NAS)."""
    g.add_argument("--storage", default=None,
                   help="SQLAlchemy URL of the study (default sqlite:///OUTPUT/study.db); "
                   "postgresql://user@host/db for workers on several machines")
    g.add_argument("--study", default=None, help=f"study name (default {study})")
    g.add_argument("--output", default=None, help=f"directory (default {output})")
    g.add_argument("--heartbeat", type=positive_int, default=60,
                   help="seconds between worker heartbeats; a trial silent for twice this is "
                   "retried once (default 60)")


def register(sub: argparse._SubParsersAction) -> None:
    from ..search.study import CONTINUE

    p = commands.add(sub, "search")
    ssub = p.add_subparsers(dest="search_kind", required=True, parser_class=type(p))
    c = ssub.add_parser(
        "compound", help="grid search for alpha, beta, gamma (V1 section 3, step 1)",
        description="Enumerate alpha, beta, gamma >= 1 on a grid (alpha <= 2(1+2t), beta, gamma "
        "<= sqrt(2(1+2t)), t = tolerance), keep points with alpha*beta^2*gamma^2 within 2t of 2, "
        "then those whose MEASURED MACs at phi are within t of 2^phi x the base; train each with "
        "a short proxy recipe in an Optuna study (GridSampler) and rank by val top-1. Re-run the "
        "same command to continue an interrupted search; point several workers at one "
        "--storage to share it.")
    _proxy_flags(c)
    g = c.add_argument_group("search")
    g.add_argument("--phi", type=finite_float, default=1.0, help="resources 2^phi (default 1)")
    g.add_argument("--grid-step", type=finite_float, default=0.05)
    g.add_argument("--tolerance", type=finite_float, default=0.1,
                   help="allowed relative distance of measured MACs from 2^phi (default 0.1)")
    g.add_argument("--trials", type=positive_int, default=None,
                   help="trials this worker runs (default: until every candidate is done)")
    _add_study_flags(g, study="compound-BASE-phiN", output="runs/search-BASE")
    c.set_defaults(run=cmd_search_compound, stop_hint=CONTINUE)  # polls signals (cli._run)
    _register_nas(ssub)

    p = commands.add(sub, "experiment")
    esub = p.add_subparsers(dest="experiment_kind", required=True, parser_class=type(p))
    e = esub.add_parser(
        "scaling", help="depth / width / resolution / compound scaling at matched FLOPs",
        description="Scale the base by depth only, width only, resolution only and by the "
        "compound rule, each solved (bisection on measured MACs) to the target FLOPs ratio, train "
        "each with the same proxy recipe, and write a table and an accuracy-vs-FLOPs plot "
        "(V1 Table 3 / Table 7 / Fig. 8).")
    _proxy_flags(e)
    e.add_argument("--target-flops-ratio", required=True,
                   help="FLOPs multiple(s) of the base, e.g. 2 or 2,4")
    e.add_argument("--coeffs", type=Path, default=None,
                   help="JSON with alpha, beta, gamma for the compound rule (a search's "
                   "best.json); default 1.2, 1.1, 1.15")
    e.add_argument("--output", default=None, help="directory (default runs/scaling-BASE)")
    e.set_defaults(run=cmd_experiment_scaling)


def _proxy(args):
    from ..search.proxy import Proxy

    return Proxy(recipe=args.recipe, epochs=args.budget_epochs, data=args.data,
                 train_subset=args.train_subset, val_subset=args.val_subset,
                 batch_size=args.batch_size, seed=args.seed, device=args.device,
                 workers=args.workers, ckpt_every_steps=args.ckpt_every_steps)


def cmd_search_compound(args) -> int:
    from ..search.compound import SearchConfig, run_search
    from ..search.grid import grid_axes
    from ..search.report import ranked_table
    from ..train.presets import get_recipe

    grid_axes(args.grid_step, args.tolerance, args.phi)  # bad numbers fail before any work
    get_recipe(args.recipe)
    cfg = SearchConfig(base=args.base, phi=args.phi, grid_step=args.grid_step,
                       tolerance=args.tolerance, base_phi=args.base_phi, base_size=args.base_size,
                       proxy=_proxy(args), trials=args.trials, storage=args.storage,
                       study=args.study, output=args.output, heartbeat=args.heartbeat,
                       progress=args.progress)
    res = run_search(cfg)
    n_in = sum(abs(c.off_target) <= cfg.tolerance for c in res.measured)
    print(f"{res.base.name} @ {res.base.size}px ({res.base_macs / 1e6:.2f} MMACs), "
          f"phi={cfg.phi:g}: {len(res.measured)} grid points near alpha*beta^2*gamma^2 = 2, "
          f"{n_in} within {cfg.tolerance:.0%} of {2 ** cfg.phi:g}x measured MACs, "
          f"{len(res.trained)} distinct networks")
    print()
    print(ranked_table(res.trained))
    print()
    if res.best is not None:
        b = res.best
        print(f"best: alpha={b.point.alpha:g} beta={b.point.beta:g} gamma={b.point.gamma:g}  "
              f"top-1 {b.result['top1']:.2f} %  {b.macs / 1e6:.2f} MMACs ({b.ratio:.3f}x base)"
              + ("" if res.complete else "  (search not finished: re-run to continue)"))
    elif not res.complete:
        print("no candidate finished yet; re-run the same command to continue")
    for what, path in res.files.items():
        print(f"{what}: {path}")
    return 0


def _register_nas(ssub) -> None:
    from ..search.nas import SAMPLERS
    from ..search.reward import OBJECTIVES, V_PARAMS, W_FLOPS, W_TIME
    from ..search.space import SPACES
    from ..search.study import CONTINUE

    n = ssub.add_parser(
        "nas", help="training-aware architecture search (EfficientNetV2 section 3.3)",
        description="Sample architectures from a stage-wise space (per stage: MBConv or "
        "Fused-MBConv, kernel 3/5, expansion 1/4/6, layers around the backbone's, SE on MBConv; "
        "channels and strides from the backbone), time each one's train step on this machine, "
        "train it with a short proxy recipe and score it with A * S^w * P^v (S step time and P "
        "params relative to the backbone's). Writes results.csv, pareto.png and best.json "
        "(`effnet train --model best.json` trains it). Re-run the same command to continue; "
        "point several workers at one --storage to share the search.")
    n.add_argument("--space", default="v2",
                   help=f"search space: {', '.join(f'{k} (backbone {v})' for k, v in SPACES.items())}")
    _proxy_flags(n, base_required=False)
    g = n.add_argument_group("search")
    g.add_argument("--trials", type=int, default=20,
                   help="distinct candidates the whole study trains (default 20)")
    g.add_argument("--worker-trials", type=int, default=None,
                   help="this worker stops after training this many")
    g.add_argument("--sampler", default="random", choices=SAMPLERS,
                   help="random (the paper's) or tpe (Optuna's TPE)")
    g.add_argument("--objective", default="v2", choices=OBJECTIVES,
                   help="v2: A*S^w*P^v; mnas: ACC*(FLOPs/T)^w, T the backbone's FLOPs")
    g.add_argument("--w", type=finite_float, default=W_TIME, help=f"step-time exponent (default {W_TIME})")
    g.add_argument("--v", type=finite_float, default=V_PARAMS, help=f"params exponent (default {V_PARAMS})")
    g.add_argument("--w-flops", type=finite_float, default=W_FLOPS,
                   help=f"FLOPs exponent of the mnas objective (default {W_FLOPS})")
    g.add_argument("--time-batch", type=positive_int, default=16,
                   help="batch for timing each candidate's train step (default 16)")
    _add_study_flags(g, study="nas-SPACE-BASE", output="runs/nas-SPACE")
    n.set_defaults(run=cmd_search_nas, stop_hint=CONTINUE)


def cmd_search_nas(args) -> int:
    from ..search.nas import NasConfig, run_nas
    from ..search.nas_report import results_table
    from ..search.reward import Objective
    from ..train.presets import get_recipe

    get_recipe(args.recipe)
    cfg = NasConfig(space=args.space, base=args.base, base_phi=args.base_phi,
                    base_size=args.base_size, proxy=_proxy(args), trials=args.trials,
                    worker_trials=args.worker_trials, sampler=args.sampler,
                    objective=Objective(args.objective, args.w, args.v, args.w_flops),
                    time_batch=args.time_batch, storage=args.storage, study=args.study,
                    output=args.output, heartbeat=args.heartbeat, progress=args.progress)
    res = run_nas(cfg)
    b = res.base
    print(f"space {res.space.name}: {res.space.size:.3g} candidates on {res.space.base.name} @ "
          f"{res.size}px; backbone {b['params'] / 1e6:.3f}M params, "
          f"{b['macs'] / 1e6:.2f} MMACs, train step {b['step_s'] * 1e3:.1f} ms at batch "
          f"{cfg.time_batch}; {len(res.trained)}/{cfg.trials} trained")
    print()
    print(results_table(res.trained))
    print()
    if res.best is not None:
        print(f"best (reward {res.best.reward:.4f}, top-1 {res.best.attrs['top1']:.2f} %):")
        print(res.best.spec.table(res.size))
    if not res.complete:
        print("search not finished: re-run the same command to continue")
    for what, path in res.files.items():
        print(f"{what}: {path}")
    return 0


def _ratios(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--target-flops-ratio expects numbers like 2 or 2,4 (got {text!r})") from None
    if not vals or min(vals) <= 1:
        raise UserError(f"--target-flops-ratio must be > 1 (got {text!r})")
    return sorted(set(vals))


def cmd_experiment_scaling(args) -> int:
    from ..arch.scaling import read_coeffs
    from ..search.compound import prepare_base
    from ..search.experiment import print_table, run_experiment
    from ..train.presets import get_recipe

    ratios = _ratios(args.target_flops_ratio)
    coeffs = read_coeffs(args.coeffs)
    get_recipe(args.recipe)
    proxy = _proxy(args)
    base = prepare_base(args.base, args.base_phi, args.base_size, proxy)
    out = Path(args.output or Path("runs") / f"scaling-{args.base}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--output {out} is a file, not a directory")
    points, files = run_experiment(base, ratios, proxy, out, coeffs, progress=args.progress)
    print(print_table(points))
    for what, path in files.items():
        print(f"{what}: {path}")
    return 0
