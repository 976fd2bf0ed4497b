"""Data-parallel training when launched by torchrun (env RANK / WORLD_SIZE / LOCAL_RANK), any
number of nodes: gloo on CPU, nccl on GPU. A plain `python` launch is a world of one."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def pick_device(name: str | None, local_rank: int = 0) -> torch.device:
    """The device a `--device` flag names (None / "auto": the local GPU if any, else the CPU);
    UserError for a name torch does not know or a device this machine does not have."""
    if name in (None, "auto"):
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
        if dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    elif dev.type != "cpu":
        try:  # mps, xpu, meta, ...: usable only where a tensor can be made there
            torch.empty(1, device=dev) + 1
        except (RuntimeError, AssertionError, NotImplementedError):
            raise UserError(f"--device {name}: not available on this machine") from None
        if dev.type == "meta":
            raise UserError(f"--device {name}: the meta device holds no data; use cpu or cuda")
    return dev


def init_world(device: str | None = None) -> World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(device=pick_device(device))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                device_id=dev if dev.type == "cuda" else None)
    return World(rank=rank, size=size, local_rank=local, device=dev)


def close_world(world: World) -> None:
    if world.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    if world.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_true(flag: bool, world: World) -> bool:
    t = torch.tensor([1.0 if flag else 0.0], device=world.device)
    return bool(all_sum(t, world).item() > 0)


def gather_objects(obj, world: World) -> list:
    if not world.enabled:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, world: World):
    if not world.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.enabled:
        dist.barrier()


def broadcast_buffers(modules, world: World) -> None:
    """Every rank takes rank 0's buffers (BN statistics). DDP itself broadcasts them before each
    forward, so rank 0's are the ones the next step would use."""
    if not world.enabled:
        return
    for m in modules:
        if m is not None:
            for b in m.buffers():
                dist.broadcast(b, src=0)
