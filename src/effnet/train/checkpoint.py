"""What a checkpoint holds: the model's (and EMA's) weights as safetensors and `state.pt`
(optimiser, progress, RNG streams, recipe, metrics: only tensors, ints, floats, strings, lists and
dicts, so `torch.load(weights_only=True)` reads it). Where checkpoints live, how one is published
so that a kill at any instant leaves the previous one loading, and the last/best links are the run
directory's (`effnet.rundir.RunDir.save_checkpoint`).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UserError, error_line
from ..fileio import atomic_write_bytes
from ..rundir import EMA_FILE, MODEL_FILE, STATE_FILE, RunDir

STATE_FORMAT = "effnet-train-state"


def save_torch_state(state: dict, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


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
def save_checkpoint(run: RunDir, model: nn.Module, ema: nn.Module | None, state: dict,
                    best: bool = False) -> Path:
    """Save the weights and `state` as the run's newest checkpoint (and best, with `best`);
    returns its directory."""
    from ..weights import save_weights

    step = int(state["global_step"])
    meta = {"step": str(step), "epoch": str(state["epoch"])}

    def fill(d: Path) -> None:
        save_weights(model, d / MODEL_FILE, metadata={**meta, "weights": "model"})
        if ema is not None:
            save_weights(ema, d / EMA_FILE, metadata={**meta, "weights": "ema"})
        save_torch_state(state, d / STATE_FILE)

    return run.save_checkpoint(step, state["epoch"], fill, best=best)


def state_hash(module: nn.Module) -> str:
    """SHA-256 of a module's state dict, bytes and keys (ranks of a DDP run must agree)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                 if v.numel() else b"")
    return h.hexdigest()


# --- reading ----------------------------------------------------------------------------------
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
