"""Commands about training: `train` and `eval`. Flags follow timm's train.py where it has one."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import UserError
from . import commands
from .argtypes import finite_float, nonneg_int, positive_int

# flag dest -> recipe key, for the flags that change the recipe
RECIPE_FLAGS = {
    "model": "model", "phi": "phi", "width": "width", "depth": "depth",
    "batch_size": "batch_size", "lr_base": "lr", "lr_base_size": "lr_base_size",
    "epochs": "epochs", "steps": "steps",
    "warmup_epochs": "warmup_epochs", "sched": "sched", "opt": "opt", "opt_eps": "opt_eps",
    "momentum": "momentum", "weight_decay": "weight_decay", "clip_grad": "clip_grad",
    "grad_accum_steps": "grad_accum", "drop": "dropout", "drop_path": "drop_path",
    "model_ema_decay": "ema_decay", "smoothing": "label_smoothing", "mixup": "mixup",
    "cutmix": "cutmix", "randaug": "randaug_magnitude", "img_size": "img_size",
    "eval_size": "eval_size", "seed": "seed", "bn_momentum": "bn_momentum", "bn_eps": "bn_eps",
    "progressive": "progressive",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = commands.add(sub, "train", description="Train an EfficientNet. The recipe is built from a preset "
                       "(--recipe), then --config FILE.yaml, then these flags; it is printed at "
                       "the start and saved in the run directory.")
    g = p.add_argument_group("recipe and model")
    g.add_argument("--recipe", default=None, help="preset: paper-v1, paper-v2, finetune, finetune-paper, quick "
                   "(default quick)")
    g.add_argument("--config", type=Path, default=None,
                   help="YAML/JSON of recipe keys (a run's config.yaml works too)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set any recipe key (repeatable), e.g. --set decay_rate=0.96")
    g.add_argument("--model", default=None, help="zoo model name (default from the recipe)")
    g.add_argument("--phi", type=finite_float, default=None, help="compound-scale the model by phi")
    g.add_argument("--width", type=finite_float, default=None, help="width multiplier (with --depth)")
    g.add_argument("--depth", type=finite_float, default=None, help="depth multiplier (with --width)")
    g.add_argument("--pretrained", default=None, metavar="TAG",
                   help="start from published weights (a row of `effnet models --pretrained`, "
                   "e.g. tf_efficientnet_lite0.in1k); sets --model and their preprocessing")
    g.add_argument("--weights", default=None, help="initial weights (fine-tuning)")
    g.add_argument("--adapt", action="store_true", default=None,
                   help="new classifier / first conv when --weights do not fit")
    g.add_argument("--num-classes", type=positive_int, default=None, help="default: the data's classes")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None,
                   help="DIR (ImageFolder), digits (default), or cifar10:ROOT etc.")
    g.add_argument("--val-split", type=finite_float, default=None)
    g.add_argument("--download", action="store_true", default=None)
    g.add_argument("--strict", action="store_true", default=None,
                   help="an unreadable image is an error instead of a skipped file")
    g.add_argument("--img-size", type=positive_int, default=None)
    g.add_argument("--eval-size", type=positive_int, default=None)
    g.add_argument("--train-subset", type=positive_int, default=None, help="train on N seeded-random images")
    g.add_argument("--val-subset", type=positive_int, default=None)
    g = p.add_argument_group("optimisation")
    g.add_argument("-b", "--batch-size", type=int, default=None, help="per process")
    g.add_argument("--lr", type=finite_float, default=None, help="absolute learning rate")
    g.add_argument("--lr-base", type=finite_float, default=None, help="lr per --lr-base-size images")
    g.add_argument("--lr-base-size", type=nonneg_int, default=None)
    g.add_argument("--epochs", type=int, default=None)
    g.add_argument("--steps", type=int, default=None, help="fixed optimiser steps instead of epochs")
    g.add_argument("--warmup-epochs", type=finite_float, default=None)
    g.add_argument("--sched", default=None, help="step, cosine, constant")
    g.add_argument("--opt", default=None, help="rmsproptf, rmsprop, adamw, sgd")
    g.add_argument("--opt-eps", type=finite_float, default=None)
    g.add_argument("--momentum", type=finite_float, default=None)
    g.add_argument("--weight-decay", type=finite_float, default=None)
    g.add_argument("--clip-grad", type=finite_float, default=None)
    g.add_argument("--grad-accum-steps", type=positive_int, default=None)
    g.add_argument("--seed", type=int, default=None)
    g = p.add_argument_group("regularisation")
    g.add_argument("--drop", type=finite_float, default=None, help="dropout before the classifier")
    g.add_argument("--drop-path", type=finite_float, default=None, help="stochastic depth rate")
    g.add_argument("--model-ema-decay", type=finite_float, default=None,
                   help="EMA decay per step at the recipe's ema_base_size global batch (paper "
                   "presets 4096; --set ema_base_size=0: per step at any batch); 0 turns EMA off")
    g.add_argument("--smoothing", type=finite_float, default=None, help="label smoothing")
    g.add_argument("--mixup", type=finite_float, default=None)
    g.add_argument("--cutmix", type=finite_float, default=None)
    g.add_argument("--randaug", type=finite_float, default=None, help="RandAugment magnitude")
    g.add_argument("--bn-momentum", type=finite_float, default=None)
    g.add_argument("--bn-eps", type=finite_float, default=None)
    g.add_argument("--progressive", default=None, metavar="SCHEDULE",
                   help="progressive learning: a preset (v2-s, v2-m, v2-l, v2-s-code, ...; see "
                   "`effnet schedule`), optionally with changes (v2-s,stages=3,size=64:112), or a "
                   "whole plan (stages=4,size=128:300,randaug=5:15,mixup=0:0,dropout=0.1:0.3)")
    g = p.add_argument_group("run")
    g.add_argument("--output", default=None, help="run directory (default runs/<time>-<model>)")
    g.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    g.add_argument("--amp", default=None, choices=("none", "bf16", "fp16"))
    g.add_argument("--channels-last", action="store_true", default=None)
    g.add_argument("--compile", action="store_true", default=None)
    g.add_argument("--recompute", default=None, choices=("off", "activations", "blocks"),
                   help="what the backward pass recomputes to save memory (default: the recipe's; "
                   "activations: keep only convolution outputs; blocks: whole blocks; off: "
                   "fastest; the numbers are the same)")
    g.add_argument("--grad-checkpointing", dest="recompute", action="store_const", const="blocks",
                   help="recompute whole blocks in the backward pass (= --recompute blocks, timm's flag)")
    g.add_argument("-j", "--workers", type=nonneg_int, default=None)
    g.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads (default: torch's, i.e. OMP_NUM_THREADS or the cores)")
    g.add_argument("--ckpt-every-steps", type=nonneg_int, default=None)
    g.add_argument("--deterministic", action="store_true", default=None)
    g.add_argument("--save-samples", type=nonneg_int, default=None,
                   help="write N val images as PNG into RUN/samples")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    g.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", default=None)
    p.set_defaults(run=cmd_train)


def _given(args, names) -> dict:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _recipe_changes(args) -> dict:
    changes = {RECIPE_FLAGS[k]: v for k, v in _given(args, RECIPE_FLAGS).items()}
    if args.lr is not None:  # an absolute LR: no linear scaling with the batch
        changes.update(lr=args.lr, lr_base_size=0)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        changes[key.strip().replace("-", "_")] = value.strip()
    return changes


def _runtime_names() -> tuple[str, ...]:
    from ..train.options import RunOptions

    return tuple(f.name for f in RunOptions.__dataclass_fields__.values())


def build_run(args):
    """(Recipe, RunOptions) from the command line, or from the run being resumed."""
    from ..rundir import RunDir
    from ..train.options import RunOptions
    from ..train.presets import DEFAULT_RECIPE, for_model, get_recipe
    from ..train.recipe import override
    from ..train.recipe_files import read_config

    runtime = _given(args, _runtime_names())
    changes = _recipe_changes(args)
    if args.resume:
        run = RunDir(args.resume)
        recipe_d, saved_rt = run.saved_config()
        run.check_resume(changes, runtime, "recipe" if args.recipe else "config" if args.config else None)
        from ..train.recipe import recipe_from_dict

        recipe = override(recipe_from_dict(recipe_d, str(run.config_file)), changes, "command line")
        known = set(_runtime_names())
        opts = RunOptions(**{**{k: v for k, v in saved_rt.items() if k in known}, **runtime,
                             "resume": str(run)})
        return recipe, opts
    if args.pretrained is not None and "model" not in changes:
        from ..pretrained import find_pretrained

        changes["model"] = find_pretrained(args.pretrained).model
    recipe = get_recipe(args.recipe or DEFAULT_RECIPE)
    if "model" in changes:
        recipe = override(recipe, {"model": changes["model"]}, "command line")
        if recipe.phi is not None and not {"phi", "width", "depth"} & set(changes):
            # a preset's default scaling belongs to its default model
            recipe = override(recipe, {"phi": None}, "command line")
    recipe = for_model(recipe)
    if args.config is not None:
        recipe = override(recipe, read_config(args.config), str(args.config))
    recipe = override(recipe, changes, "command line")
    return recipe, RunOptions(**{**runtime, **_elastic_restart(args)})


def _elastic_restart(args) -> dict:
    """Under `torchrun --max-restarts N`, a restarted worker runs the same command line again: it
    continues its --output from the last checkpoint (the trainer checks the recipe is the same)."""
    from ..rundir import RunDir

    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    if not restart or not args.output or not RunDir(args.output).has_checkpoint():
        return {}
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"effnet: torchrun restart {restart}: resuming {args.output} from its last checkpoint",
              file=sys.stderr, flush=True)
    return {"resume": args.output}


def cmd_train(args) -> int:
    from ..train.trainer import train

    recipe, opts = build_run(args)
    summary = train(recipe, opts)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one report, by rank 0
        from .report_cmds import report_after_training

        report_after_training(summary["run_dir"])
    return 0
