"""Data-parallel training when launched by torchrun (env RANK / WORLD_SIZE / LOCAL_RANK), any
number of nodes: gloo on CPU, nccl on GPU. A plain `python` launch is a world of one.

Forming the group is bounded in time and safe across `torchrun --max-restarts`: torchrun's agent
keeps one TCP store for the whole job (torch >= 2.5 shares it with the workers) and a restarted
worker group finds in it the keys its dead predecessors wrote. Joining the process group under the
usual fixed key names then reads a dead rank's gloo address: the new ranks either fail to connect
("Connection refused") or wait on each other forever (the hang of pytorch/pytorch#135712, reproduced
here with a SIGKILLed rank). So every group first agrees on a key prefix no earlier group used
(`agree_on_group_key`), and every wait has a deadline.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..devices import pick_device
from ..errors import UserError

# how long forming the group and any one collective may wait for the other ranks (seconds):
# long enough for rank 0 to write a large checkpoint while the others wait at a barrier
TIMEOUT_ENV = "EFFNET_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0


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


def dist_timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserError(f"{TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return value


_OFFER, _ACCEPT, _ACK = "effnet/group/offer", "effnet/group/accept", "effnet/group/ack"


def agree_on_group_key(store: dist.Store, rank: int, size: int, timeout: float,
                       poll: float = 0.02) -> str:
    """A key prefix that every rank of this group gets and no earlier group on `store` used.

    Rank 0 offers a fresh token; each other rank answers with the offer it read and a fresh nonce
    of its own, and takes the token rank 0 acknowledges under that nonce. An offer, answer or
    acknowledgement left in the store by an earlier group can never be taken: rank 0 only
    acknowledges answers that carry its own token, and a rank only reads the acknowledgement under
    a nonce nobody used before. UserError when the group is not complete within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout

    def wait(what: str) -> None:
        if time.monotonic() > deadline:
            raise UserError(f"distributed: rank {rank} of {size} {what} within {timeout:g} s "
                            f"(a rank did not start or cannot reach MASTER_ADDR:MASTER_PORT; "
                            f"{TIMEOUT_ENV} sets the limit)")
        time.sleep(poll)

    def read(key: str) -> str | None:
        return store.get(key).decode() if store.check([key]) else None

    if rank == 0:
        token = uuid.uuid4().hex
        store.set(_OFFER, token)
        waiting = set(range(1, size))
        while waiting:
            for r in sorted(waiting):
                offered, _, nonce = (read(f"{_ACCEPT}/{r}") or "").partition(":")
                if offered == token and nonce:
                    store.set(f"{_ACK}/{nonce}", token)
                    waiting.discard(r)
            if waiting:
                wait(f"heard from only {size - 1 - len(waiting)} of its {size - 1} peers")
        return token
    nonce = uuid.uuid4().hex
    while True:
        offer = read(_OFFER)
        if offer is not None:
            store.set(f"{_ACCEPT}/{rank}", f"{offer}:{nonce}")
            token = read(f"{_ACK}/{nonce}")
            if token is not None:
                return token
        wait("got no answer from rank 0")


def init_world(device: str | None = None) -> World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(device=pick_device(device))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        timeout = dist_timeout()
        # torch's env:// rendezvous: a client of torchrun's store, or rank 0 hosts one
        store, _, _ = next(dist.rendezvous("env://", rank, size, timeout=timedelta(seconds=timeout)))
        key = agree_on_group_key(store, rank, size, timeout)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                store=dist.PrefixStore(f"effnet/{key}", store), rank=rank,
                                world_size=size, timeout=timedelta(seconds=timeout),
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


def raise_if_any(error: str | None, world: World) -> None:
    """Collective: when any rank has an error, every rank raises it (the lowest rank's), so no
    rank is left waiting in a collective for one that has gone."""
    errors = [(r, e) for r, e in enumerate(gather_objects(error, world)) if e]
    if errors:
        rank, message = errors[0]
        raise UserError(message if not world.enabled or rank == world.rank else f"rank {rank}: {message}")


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
