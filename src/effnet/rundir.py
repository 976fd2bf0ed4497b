"""A training run's directory, owned by one object: the names of its files, the last/best weight
links, the atomic writes of its files, its published checkpoint, reading back what it saved, and
what a resume may change. The trainer, the report, the CLI and the searches go through a `RunDir`
(as timm's CheckpointSaver owns its files), so each name is spelled once, here. The layout is
the one earlier versions wrote, so their runs still resume and load:

    config.yaml      recipe, runtime options, derived numbers, command (what --resume continues)
    spec.json        model config and class names (what eval, predict, export, --resume rebuild)
    metrics.csv  progressive.csv  summary.json  loss.png  accuracy.png  lr.png  samples/  tensorboard/
    checkpoints/LATEST              {"dir": "step-N", ...}: the checkpoint that loads
    checkpoints/step-NNNNNNNN[-k]/  model.safetensors, ema.safetensors, state.pt
    {last,best}[_ema].safetensors   hard links to the newest / best checkpoint's weights
    model.onnx  model.pt2  model_int8.pt2   what export and quantize write for a run
    report.html      the run report (`effnet report`; train writes it at the end)

The model factory (models.py: a run directory is one of its sources), train/, tools/, search/ and
cli/ all read runs, so this sits below them and imports none of them: it needs only the base
layer and the model config's file format (arch).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from .errors import UserError
from .fileio import atomic_write, atomic_write_bytes, fsync_dir

CONFIG_FILE = "config.yaml"
SPEC_FILE = "spec.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.csv"
STAGES_FILE = "progressive.csv"
REPORT_FILE = "report.html"
PLOTS = ("loss", "accuracy", "lr")  # <kind>.png
SAMPLES_DIR = "samples"
TENSORBOARD_DIR = "tensorboard"
CKPT_DIR = "checkpoints"
POINTER = "LATEST"
# the files of a checkpoint directory
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "state.pt"

# The resume policy. A resumed run may be lengthened, and run on other hardware or with other
# output; anything that changes what it learns (the rest of the recipe, the data, the initial
# weights, the class count) must be the run's, or the result would be neither run.
RESUMABLE_RECIPE_KEYS = ("epochs", "steps")
RESUMABLE_OPTIONS = ("device", "amp", "channels_last", "compile", "recompute", "workers", "threads",
                     "ckpt_every_steps", "deterministic", "save_samples", "progress", "tensorboard")


def link_name(kind: str, ema: bool = False) -> str:
    """The run's link to the `last` or `best` checkpoint's weights (of the model or its EMA)."""
    return f"{kind}{'_ema' if ema else ''}.safetensors"


def ema_twin(weights: Path) -> Path | None:
    """The EMA weights saved beside `weights` (best.safetensors -> best_ema.safetensors), if any."""
    twin = weights.with_name(f"{weights.stem}_ema{weights.suffix}")
    return twin if twin.is_file() and not weights.stem.endswith("_ema") else None


def link_or_copy(src: Path, dst: Path) -> None:
    """Make `dst` the same file as `src`, atomically (a hard link; a copy where links fail)."""
    def write(tmp: Path) -> None:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)

    atomic_write(dst, write)


class RunDir:
    """The directory of one training run. Cheap to make: nothing is read or written until asked."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    __str__ = __fspath__  # messages name the directory as the user gave it

    # --- a new run -----------------------------------------------------------------------------
    @staticmethod
    def default_path(model_name: str) -> str:
        return str(Path("runs") / (dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{model_name}"))

    @classmethod
    def new(cls, path: str | os.PathLike) -> RunDir:
        """The directory of a fresh run; UserError when `path` holds anything: a run is continued
        with --resume, never written over."""
        p = Path(path)
        if p.exists() and (not p.is_dir() or any(p.iterdir())):
            raise UserError(f"output directory {p} already exists and is not empty; "
                            f"use --resume {p} to continue it, or another --output")
        return cls(p)

    def mkdir(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # under a file, in /proc, read-only: say which directory and why
            raise UserError(f"cannot create the run directory {self.path}: {e.strerror}") from None

    # --- names ---------------------------------------------------------------------------------
    config_file = property(lambda self: self.path / CONFIG_FILE)
    spec_file = property(lambda self: self.path / SPEC_FILE)
    summary_file = property(lambda self: self.path / SUMMARY_FILE)
    metrics_file = property(lambda self: self.path / METRICS_FILE)
    stages_file = property(lambda self: self.path / STAGES_FILE)
    report_file = property(lambda self: self.path / REPORT_FILE)
    tensorboard_dir = property(lambda self: self.path / TENSORBOARD_DIR)
    checkpoints_dir = property(lambda self: self.path / CKPT_DIR)

    def plot(self, kind: str) -> Path:
        if kind not in PLOTS:
            raise ValueError(f"no plot {kind!r}; a run has {', '.join(PLOTS)}")
        return self.path / f"{kind}.png"

    def link(self, kind: str, ema: bool = False) -> Path:
        return self.path / link_name(kind, ema)

    def export_file(self, suffix: str) -> Path:
        """Where export / quantize put the run's model: model.onnx, model.pt2, model_int8.pt2."""
        return self.path / f"model{suffix}"

    def saved_files(self, ema: bool) -> list[str]:
        """The files a user looks for in a finished run, in the order the report names them."""
        links = [link_name(k, e) for k in ("best", "last") for e in ((False, True) if ema else (False,))]
        return [*links, SPEC_FILE, CONFIG_FILE, METRICS_FILE, "*.png"]

    # --- writes: atomic, so a reader (a resume, TensorBoard, a user) never sees half a file ----
    def write(self, path: Path, data: bytes | Callable[[Path], None]) -> None:
        """`data`, or what `data(tmp)` writes, as `path` (one of this run's files)."""
        if callable(data):
            atomic_write(path, data)
        else:
            atomic_write_bytes(path, data)

    def write_config(self, recipe: dict, runtime: dict, **derived) -> None:
        import yaml

        # the run's own path is where it is, not how it ran
        config = {"recipe": recipe, "runtime": {k: v for k, v in runtime.items() if k != "resume"},
                  **derived}
        self.write(self.config_file, yaml.safe_dump(config, sort_keys=False).encode())

    def write_spec(self, model: str, config: dict, classes: list[str]) -> None:
        run_spec = {"model": model, "config": config, "classes": classes}
        self.write(self.spec_file, json.dumps(run_spec, indent=1).encode())

    def write_summary(self, summary: dict) -> None:
        self.write(self.summary_file, json.dumps(summary, indent=1).encode())

    def write_sample(self, index: int, label: str, image) -> None:
        """A validation image (PIL) as samples/NNN_<label>.png, for a predict demo."""
        out = self.path / SAMPLES_DIR
        out.mkdir(exist_ok=True)
        self.write(out / f"{index:03d}_{label}.png", partial(image.save, format="PNG"))

    # --- reads ---------------------------------------------------------------------------------
    def saved_config(self, doing: str = "resume") -> tuple[dict, dict]:
        """(recipe, runtime options) the run was started with, for a resume (or what `doing`
        says: an error names it); UserError when this is not a run directory or its config.yaml
        is damaged."""
        config = self.config(doing)
        return config["recipe"], config["runtime"]

    def config(self, doing: str = "resume") -> dict:
        """config.yaml whole: recipe, runtime options, the derived numbers and the command."""
        import yaml

        if not self.path.is_dir() or not self.config_file.is_file():
            raise UserError(f"cannot {doing}: {self.path} is not an effnet run directory "
                            f"(no {CONFIG_FILE})")
        try:
            saved = yaml.safe_load(self.config_file.read_text())
            return {**saved, "recipe": dict(saved["recipe"]), "runtime": dict(saved["runtime"])}
        except (yaml.YAMLError, KeyError, TypeError, ValueError, UnicodeDecodeError):
            raise UserError(f"cannot {doing}: {self.config_file} is damaged") from None

    def model_config(self):
        """The trained network's config (spec.json), BN settings of its weights included."""
        from .arch.config import load_config_file

        return load_config_file(self.spec_file)

    def classes(self) -> list[str] | None:
        """The class names spec.json lists (None when it lists none)."""
        d = json.loads(self.spec_file.read_text())
        classes = d.get("classes") if isinstance(d, dict) else None
        return [str(c) for c in classes] if isinstance(classes, list) else None

    def metrics(self) -> list[dict[str, str]]:
        """metrics.csv's rows as written (strings, "" where a column has no value); [] without it."""
        import csv

        try:
            with self.metrics_file.open(newline="") as f:
                return list(csv.DictReader(f))
        except (OSError, csv.Error, UnicodeDecodeError):
            return []

    def summary(self) -> dict | None:
        """summary.json, or None: the run has not finished (or the file is damaged)."""
        try:
            d = json.loads(self.summary_file.read_text())
        except (OSError, ValueError):
            return None
        return d if isinstance(d, dict) else None

    def best_weights(self) -> Path:
        """The weights that scored best: best_ema.safetensors when summary.json says the EMA did,
        else best.safetensors (also for a run that has not finished); UserError without them."""
        best, ema = self.link("best"), self.link("best", ema=True)
        if not best.is_file():
            raise UserError(f"{self.path} is not an effnet run directory (no {best.name})")
        entry = (self.summary() or {}).get("best")
        return ema if isinstance(entry, dict) and entry.get("weights") == ema.name and \
            ema.is_file() else best

    # --- checkpoints ---------------------------------------------------------------------------
    def has_checkpoint(self) -> bool:
        """A checkpoint was published (`latest_checkpoint` says whether it loads)."""
        return (self.checkpoints_dir / POINTER).is_file()

    def latest_checkpoint(self) -> Path:
        """The published checkpoint directory; UserError when there is none."""
        pointer = self.checkpoints_dir / POINTER
        if not self.path.is_dir():
            raise UserError(f"cannot resume: no such run directory: {self.path}")
        if not pointer.is_file():
            raise UserError(f"cannot resume: {self.path} is not an effnet run directory with a "
                            f"checkpoint (no {CKPT_DIR}/{POINTER})")
        try:
            name = json.loads(pointer.read_text())["dir"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise UserError(f"cannot resume: {pointer} is damaged") from None
        path = self.checkpoints_dir / str(name)
        if Path(str(name)).name != str(name) or not (path / STATE_FILE).is_file():
            raise UserError(f"cannot resume: {pointer} names a checkpoint that is missing: {name}")
        return path

    def save_checkpoint(self, step: int, epoch: int, fill: Callable[[Path], None],
                        best: bool = False) -> Path:
        """Have `fill` write a checkpoint into a new directory, publish it as LATEST, refresh the
        last (and best) links and drop older checkpoints; returns the new directory.

        The directory is filled under a temporary name, fsynced, renamed, and only then published
        by atomically replacing the small pointer file. A writer that dies half-way leaves a
        temporary directory nobody points to (removed by the next save); the previous checkpoint
        stays the one that loads."""
        root, pointer = self.checkpoints_dir, self.checkpoints_dir / POINTER
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        name, k = f"step-{step:08d}", 0
        while (root / name).exists():  # the same step saved twice (end of epoch after a resume)
            k += 1
            name = f"step-{step:08d}-{k}"
        tmp, final = root / f".tmp-{name}-{os.getpid()}", root / name
        try:
            tmp.mkdir()
            fill(tmp)
            fsync_dir(tmp)
            os.replace(tmp, final)
            fsync_dir(root)
            atomic_write_bytes(pointer, json.dumps({"dir": name, "global_step": step,
                                                    "epoch": epoch}).encode())
        except OSError as e:  # a full disk, a file-size limit: the published checkpoint stays
            shutil.rmtree(tmp, ignore_errors=True)
            if pointer.is_file() and json.loads(pointer.read_text())["dir"] != name:
                shutil.rmtree(final, ignore_errors=True)
            kept = f"the last saved checkpoint is kept in {self.path}" if pointer.is_file() else \
                "no checkpoint was saved"
            raise OSError(e.errno, f"cannot write checkpoint {name} ({e.strerror or e}); {kept}") from e
        # only now is the new checkpoint the one that loads: refresh links, then prune
        self.refresh_links(final, best=best)
        for old in root.glob("step-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def refresh_links(self, checkpoint: Path, best: bool = False) -> None:
        """Point the last (and best) links at `checkpoint`'s weights, its EMA's when it has them."""
        for kind in ("last", "best") if best else ("last",):
            link_or_copy(checkpoint / MODEL_FILE, self.link(kind))
            if (checkpoint / EMA_FILE).is_file():
                link_or_copy(checkpoint / EMA_FILE, self.link(kind, ema=True))
        fsync_dir(self.path)

    # --- what a resume may change ----------------------------------------------------------------
    def check_resume(self, recipe_keys: Iterable[str], options: Iterable[str],
                     new_source: str | None = None) -> None:
        """UserError unless a resume may change these recipe keys and runtime options (the
        command line's); `new_source` ("recipe", "config") would replace the saved recipe."""
        bad = sorted(set(recipe_keys) - set(RESUMABLE_RECIPE_KEYS))
        bad += sorted(k for k in options if k not in RESUMABLE_OPTIONS and k != "resume")
        if new_source:
            bad.append(new_source)
        if bad:
            raise UserError(f"--resume continues the saved recipe; these cannot change: "
                            f"{', '.join(bad)}")

    def check_recipe(self, saved: dict, recipe: dict) -> None:
        """UserError when `recipe` differs from the run's `saved` one beyond what may change."""
        changed = sorted(k for k, v in recipe.items()
                         if k not in RESUMABLE_RECIPE_KEYS and saved.get(k) != v)
        if changed:
            raise UserError(f"cannot resume {self.path} with a different recipe "
                            f"(changed: {', '.join(changed)})")
