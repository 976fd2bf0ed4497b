"""A training run read back by the tools that score it (`report`, `deploy`): its best weights, the
recipe and options it ran with, and its train and val splits rebuilt by the trainer's own
`load_splits` (data, --val-split, seed, --train-subset / --val-subset), so a tool scores exactly the
val split the run logged, and calibrates on its training images."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import UserError
from ..rundir import RunDir


def open_run(path, doing: str) -> tuple[RunDir, dict, Path]:
    """(the run, its config.yaml, the weights that scored best); UserError, saying what could not
    be done (`doing`), for a path that is not a run or a run without weights yet."""
    run = RunDir(path)
    config = run.config(doing)
    if not run.spec_file.is_file():
        raise UserError(f"cannot {doing}: {run} is not an effnet run directory (no {run.spec_file.name})")
    if not run.link("best").is_file():
        raise UserError(f"cannot {doing}: {run} has no weights yet (no {run.link('best').name}: "
                        "no epoch of it finished)")
    return run, config, run.best_weights()


def run_setup(run: RunDir, config: dict):
    """(Recipe, RunOptions) the run was trained with, to rebuild its data: never downloading a
    dataset, never resuming."""
    from ..train.options import RunOptions
    from ..train.recipe import recipe_from_dict

    recipe = recipe_from_dict(config["recipe"], str(run.config_file))
    known = {f.name for f in dataclasses.fields(RunOptions)}
    runtime = config["runtime"]
    opts = RunOptions(**{**{k: v for k, v in runtime.items() if k in known}, "download": False,
                         "resume": None})
    return recipe, opts


def run_splits(recipe, opts, saved_classes: list[str] | None):
    """(train, val, class names) as the run's trainer built them; UserError when the data is gone
    or its classes are no longer the ones the run trained on."""
    from ..train.epoch_data import load_splits

    train, val, classes, _ = load_splits(opts, recipe)
    if saved_classes is not None and list(classes) != list(saved_classes):
        raise UserError(f"{opts.data or 'the data'} now has classes {few(classes)} but the run "
                        f"trained on {few(saved_classes)}")
    return train, val, classes


def few(names) -> str:
    return ", ".join(map(str, names[:5])) + (" ..." if len(names) > 5 else "")
