"""Train any NetSpec with the library's trainer (`effnet.train.train`), the one training loop.

The trainer builds its network from a recipe's model *name* (optionally scaled by phi or width and
depth multipliers); a searched network is none of those, so it is registered under a temporary
name for the length of the run. The run directory's spec.json holds the full spec, so `effnet
predict/eval` rebuild it later without the registration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..arch.spec import NetSpec
from ..arch.zoo import VARIANTS
from ..errors import UserError

PROXY_PREFIX = "search-"


@contextlib.contextmanager
def registered(spec: NetSpec) -> Iterator[str]:
    """`spec` known to `effnet.models.resolve` under a temporary name while the block runs."""
    name = PROXY_PREFIX + spec.name
    if name in VARIANTS and VARIANTS[name] != spec:
        raise RuntimeError(f"{name} is already registered with another spec")
    VARIANTS[name] = spec
    try:
        yield name
    finally:
        VARIANTS.pop(name, None)


@dataclasses.dataclass(frozen=True)
class Proxy:
    """The short proxy recipe every candidate trains with, and where its data comes from."""

    recipe: str = "quick"
    epochs: int = 3
    data: str | None = None
    train_subset: int | None = None
    val_subset: int | None = None
    batch_size: int | None = None
    seed: int = 0
    device: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UserError(f"--budget-epochs must be >= 1 (got {self.epochs})")
        for name in ("train_subset", "val_subset", "batch_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1 (got {v})")

    def recipe_for(self, model_name: str, size: int):
        from ..train.recipe import get_recipe, override

        changes = {"model": model_name, "phi": None, "width": None, "depth": None,
                   "img_size": size, "eval_size": size, "epochs": self.epochs, "steps": 0,
                   "seed": self.seed}
        if self.batch_size is not None:
            changes["batch_size"] = self.batch_size
        return override(get_recipe(self.recipe), changes, "proxy recipe")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _has_checkpoint(run_dir: Path) -> bool:
    from ..train import checkpoint as ckpt

    try:
        ckpt.latest_checkpoint(run_dir)
    except (UserError, FileNotFoundError, OSError):
        return False
    return True


def train_spec(spec: NetSpec, size: int, proxy: Proxy, run_dir: Path, log: Path | None = None
               ) -> dict:
    """Train `spec` at `size` px with the proxy recipe into `run_dir`; returns the trainer's summary.

    A run directory left by a killed worker is resumed from its last checkpoint (or started again
    when none was written), so a retried trial loses only the unfinished epoch; a finished one
    (summary.json written) is not trained again.
    """
    from ..train import RunOptions, train

    run_dir = Path(run_dir)
    done = run_dir / "summary.json"
    if done.is_file():  # finished before its worker could report it
        import json

        try:
            return json.loads(done.read_text())
        except ValueError:
            pass
    resume = None
    if run_dir.exists() and any(run_dir.iterdir()):
        if _has_checkpoint(run_dir):
            resume = str(run_dir)
        else:
            shutil.rmtree(run_dir)
    with registered(spec) as name:
        recipe = proxy.recipe_for(name, size)
        opts = RunOptions(data=proxy.data, output=None if resume else str(run_dir), resume=resume,
                          train_subset=proxy.train_subset, val_subset=proxy.val_subset,
                          device=proxy.device, workers=proxy.workers, progress=False,
                          tensorboard=False)
        out = io.StringIO() if log is None else None
        with contextlib.ExitStack() as stack:
            if log is not None:
                Path(log).parent.mkdir(parents=True, exist_ok=True)
            stream = out if log is None else stack.enter_context(open(log, "a"))
            stack.enter_context(contextlib.redirect_stdout(stream))
            return train(recipe, opts)
