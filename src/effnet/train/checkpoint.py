"""Checkpoints that survive being killed at any instant.

Each checkpoint is a directory `checkpoints/step-NNNNNNNN/` holding `model.safetensors`,
`ema.safetensors` (when EMA is on) and `state.pt` (optimiser, progress, RNG streams, recipe,
metrics: only tensors, ints, floats, strings, lists and dicts, so `torch.load(weights_only=True)`
reads it). It is written under a temporary name, fsynced, renamed, and only then published by
atomically replacing the small pointer file `checkpoints/LATEST`. A write that dies half-way leaves
a temporary directory nobody points to; the previous checkpoint stays the one that loads.
`last*.safetensors` and `best*.safetensors` in the run directory are hard links to the files of
the newest and the best checkpoint, so users can point `--weights` at them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UserError, error_line
from ..fileio import atomic_write, atomic_write_bytes, fsync_dir

CKPT_DIR = "checkpoints"
POINTER = "LATEST"
STATE_FILE = "state.pt"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FORMAT = "effnet-train-state"


def save_torch_state(state: dict, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def link_or_copy(src: Path, dst: Path) -> None:
    """Make `dst` the same file as `src`, atomically (a hard link; a copy where links fail)."""
    def write(tmp: Path) -> None:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)

    atomic_write(dst, write)


# --- RNG streams as plain data ----------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    st: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": int(version), "state": list(mt), "gauss": [] if gauss is None else [gauss]},
        "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    py = st["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"][0] if py["gauss"] else None))
    n = st["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


# --- writing ----------------------------------------------------------------------------------
def save_checkpoint(run_dir: Path, model: nn.Module, ema: nn.Module | None, state: dict,
                    best: bool = False) -> Path:
    """Write a checkpoint directory, publish it as LATEST, refresh the run's last/best links and
    drop older checkpoint directories. Returns the new directory."""
    from ..weights import save_weights

    root = run_dir / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):  # left by a writer that was killed
        shutil.rmtree(stale, ignore_errors=True)
    step = int(state["global_step"])
    name = f"step-{step:08d}"
    k = 0
    while (root / name).exists():  # the same step saved twice (end of epoch after a resume)
        k += 1
        name = f"step-{step:08d}-{k}"
    tmp = root / f".tmp-{name}-{os.getpid()}"
    final = root / name
    try:
        tmp.mkdir()
        meta = {"step": str(step), "epoch": str(state["epoch"])}
        save_weights(model, tmp / MODEL_FILE, metadata={**meta, "weights": "model"})
        if ema is not None:
            save_weights(ema, tmp / EMA_FILE, metadata={**meta, "weights": "ema"})
        save_torch_state(state, tmp / STATE_FILE)
        fsync_dir(tmp)
        os.replace(tmp, final)
        fsync_dir(root)
        atomic_write_bytes(root / POINTER, json.dumps({"dir": name, "global_step": step,
                                                       "epoch": state["epoch"]}).encode())
    except OSError as e:  # a full disk, a file-size limit: the published checkpoint stays as it was
        shutil.rmtree(tmp, ignore_errors=True)
        if (root / POINTER).is_file() and json.loads((root / POINTER).read_text())["dir"] != name:
            shutil.rmtree(final, ignore_errors=True)
        kept = f"the last saved checkpoint is kept in {run_dir}" if (root / POINTER).is_file() else \
            "no checkpoint was saved"
        raise OSError(e.errno, f"cannot write checkpoint {name} ({e.strerror or e}); {kept}") from e
    # only now is the new checkpoint the one that loads: refresh links, then prune
    for prefix in ("last", "best") if best else ("last",):
        link_or_copy(final / MODEL_FILE, run_dir / f"{prefix}.safetensors")
        if ema is not None:
            link_or_copy(final / EMA_FILE, run_dir / f"{prefix}_ema.safetensors")
    fsync_dir(run_dir)
    for old in root.glob("step-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def state_hash(module: nn.Module) -> str:
    """SHA-256 of a module's state dict, bytes and keys (ranks of a DDP run must agree)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                 if v.numel() else b"")
    return h.hexdigest()


# --- reading ----------------------------------------------------------------------------------
def latest_checkpoint(run_dir: Path) -> Path:
    """The published checkpoint directory of a run; UserError when there is none."""
    pointer = run_dir / CKPT_DIR / POINTER
    if not run_dir.is_dir():
        raise UserError(f"cannot resume: no such run directory: {run_dir}")
    if not pointer.is_file():
        raise UserError(f"cannot resume: {run_dir} is not an effnet run directory with a "
                        f"checkpoint (no {CKPT_DIR}/{POINTER})")
    try:
        name = json.loads(pointer.read_text())["dir"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise UserError(f"cannot resume: {pointer} is damaged") from None
    path = run_dir / CKPT_DIR / str(name)
    if Path(str(name)).name != str(name) or not (path / STATE_FILE).is_file():
        raise UserError(f"cannot resume: {pointer} names a checkpoint that is missing: {name}")
    return path


def load_state(ckpt: Path) -> dict:
    try:
        state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # a pickled object that would run code: never loaded
        from ..weights import unpickling_error

        raise unpickling_error(ckpt / STATE_FILE, e) from None
    except Exception as e:  # truncated, foreign
        raise UserError(f"cannot read training state {ckpt / STATE_FILE}: {error_line(e)}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(f"{ckpt / STATE_FILE} is not an effnet training state")
    return state


def load_weights_into(module: nn.Module, path: Path) -> None:
    """Exact state-dict load of a checkpoint's own safetensors file (same keys, same shapes)."""
    from safetensors.torch import load_file

    try:
        sd = load_file(str(path), device="cpu")
    except Exception as e:
        raise UserError(f"cannot read checkpoint weights {path}: {e}") from None
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise UserError(f"checkpoint weights {path} do not fit the run's model: "
                        f"{error_line(e)}") from None
