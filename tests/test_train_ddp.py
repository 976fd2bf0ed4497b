"""Two CPU processes under torchrun (gloo): one model, one global batch; equal to one process at the
same global batch; disjoint shards; a killed rank restarted by torchrun resumes the job."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import procs
from effnet.train.checkpoint import state_hash as _state_hash


def _worker_env(**extra: str) -> dict:
    """One thread per rank; a rank that dies of a signal (SIGABRT, SIGSEGV) prints every thread's
    Python stack (faulthandler): the restart test once failed on a rank's SIGABRT that left no
    other trace ("terminate called without an active exception")."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1", **extra}


@pytest.mark.slow
def test_torchrun_two_processes_train_one_model(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "effnet", "train", "--phi", "-6", "--train-subset", "256",
           "--val-subset", "101", "-b", "16", "--epochs", "2", "--no-progress", "--no-tensorboard",
           "--output", str(run)]
    env = _worker_env()
    done = procs.run(cmd, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("epoch 2/2") == 1  # only rank 0 reports

    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch"] == 32
    hashes = summary["rank_state_sha256"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]  # both ranks hold the same weights and BN

    from effnet.inference import load_for_inference

    model, _ = load_for_inference(None, run / "last.safetensors")
    assert _state_hash(model) == hashes[0]  # ... and they are the saved ones

    rows = list(csv.DictReader((run / "metrics.csv").open()))
    # 256 images / (16 per rank x 2 ranks) = 8 steps; the logged count is the sum over ranks
    assert [int(r["global_step"]) for r in rows] == [8, 16]
    assert all(int(r["images"]) == 256 and int(r["global_batch"]) == 32 for r in rows)
    # val is sharded without padding (51 + 50 images): top-1 is a count out of exactly 101
    for r in rows:
        correct = float(r["top1"]) * 101 / 100
        assert correct == pytest.approx(round(correct), abs=1e-3)


def _torchrun(*args, max_restarts: int = 0) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "--max-restarts", str(max_restarts), *args]


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.slow
def test_two_ranks_at_batch_b_equal_one_process_at_batch_2b(tmp_path):
    """After an epoch, 2 gloo ranks x 16 images and 1 process x 32 images hold the same weights to
    float round-off (tests/ddp_equivalence.py: dropout, drop-path, mixing off; BN frozen)."""
    import torch

    from effnet.train import build_model
    from effnet.train.presets import get_recipe
    from effnet.train.recipe import override
    from effnet.train.runtime import seed_all

    worker = str(Path(__file__).with_name("ddp_equivalence.py"))
    env = _worker_env()
    one, two = tmp_path / "one", tmp_path / "two"
    for cmd in ([sys.executable, worker, str(one), "32"], _torchrun(worker, str(two), "16")):
        done = procs.run(cmd, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    a, b = _weights(one / "last.safetensors"), _weights(two / "last.safetensors")
    assert a.keys() == b.keys()
    floats = [k for k in a if a[k].is_floating_point()]
    worst = max((a[k] - b[k]).abs().max().item() for k in floats)
    assert worst < 1e-5, worst

    # the epoch moved the weights far more than that (so agreeing is not trivial)
    seed_all(0)
    init = build_model(override(get_recipe("quick"), {"phi": -6}), 10)
    w0 = init.state_dict()
    moved = max((a[k] - w0[k]).abs().max().item() for k in floats if k in w0)
    assert moved > 1000 * worst and moved > 1e-3, (moved, worst)
    rows = [list(csv.DictReader((d / "metrics.csv").open()))[0] for d in (one, two)]
    for key in ("global_step", "images", "global_batch", "lr"):
        assert rows[0][key] == rows[1][key]
    for key in ("train_loss", "val_loss"):
        assert float(rows[0][key]) == pytest.approx(float(rows[1][key]), abs=1e-4)
    assert torch.isfinite(torch.tensor(float(rows[1]["train_loss"])))


@pytest.mark.parametrize("n, size", [(256, 2), (257, 2), (100, 3), (7, 4)])
def test_rank_shards_are_disjoint_and_cover_the_data(n, size):
    import torch
    from torch.utils.data import TensorDataset

    from effnet.train.distributed import World
    from effnet.train.evaluate import eval_loader
    from effnet.train.sampling import EpochSampler

    data = TensorDataset(torch.arange(n))
    for epoch in (0, 3):
        shards = []
        for rank in range(size):
            s = EpochSampler(data, rank, size, seed=5)
            s.set_epoch(epoch)
            shards.append(list(s))
        flat = [i for sh in shards for i in sh]
        assert len(set(flat)) == len(flat)  # disjoint
        assert len({len(sh) for sh in shards}) == 1  # the same number of steps on every rank
        assert len(flat) == n - n % size  # all but the tail that would make ranks unequal
        assert set(flat) <= set(range(n))
    # evaluation: every image exactly once over the ranks, no padding
    seen = []
    for rank in range(size):
        loader = eval_loader(data, 8, 0, World(rank=rank, size=size))
        seen += [int(v) for (batch,) in loader for v in batch]
    assert sorted(seen) == list(range(n))


def _worker_pid(parent: int, rank: int) -> int | None:
    """The pid of torchrun's worker process with RANK=rank."""
    kids = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        kids += (task / "children").read_text().split()
    for pid in kids:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return int(pid)
    return None


@pytest.mark.slow
def test_torchrun_restarts_a_killed_rank_and_resumes_from_the_last_checkpoint(tmp_path):
    args = ["-m", "effnet", "train", "--phi", "-6", "--train-subset", "256", "--val-subset", "64",
            "-b", "16", "--epochs", "2", "--ckpt-every-steps", "2", "--no-progress",
            "--no-tensorboard", "--output"]
    env = _worker_env()
    ref, run = tmp_path / "ref", tmp_path / "run"
    done = procs.run(_torchrun(*args, str(ref)), env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    # exactly one restart: the restarted group must form at once (distributed.py: it once read the
    # dead group's gloo addresses from torchrun's store and hung or was refused)
    killed_after = None
    with procs.started(_torchrun(*args, str(run), max_restarts=1), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and killed_after is None:
            try:
                p = json.loads((run / "checkpoints" / "LATEST").read_text())
            except (FileNotFoundError, ValueError):
                p = None
            if p and 8 < p["global_step"] < 16:  # mid second epoch
                pid = _worker_pid(proc.pid, 1)
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    killed_after = p["global_step"]
            time.sleep(0.005)
        out, err = proc.communicate(timeout=300)
    assert killed_after is not None, "the run ended before a rank could be killed"
    assert proc.returncode == 0, err[-8000:]  # the killed group's traceback, then the restarted one's
    assert "torchrun restart 1: resuming" in err
    # epoch 1 reported before the kill, epoch 2 after the restart, each once
    assert out.count("resuming") == 1 and out.count("epoch 1/2") == 1 and out.count("epoch 2/2") == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 16 and summary["world_size"] == 2
    a, b = _weights(ref / "last.safetensors"), _weights(run / "last.safetensors")
    assert all(a[k].equal(b[k]) for k in a)  # the restarted job ends where the uninterrupted one does


# --- forming the group: fresh keys on a store that outlives a restart ------------------------
def _store_server():
    from datetime import timedelta

    import torch.distributed as dist

    return dist.TCPStore("127.0.0.1", 0, is_master=True, timeout=timedelta(seconds=10))


def _client(port: int):
    from datetime import timedelta

    import torch.distributed as dist

    return dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=10))


def _agree_in_threads(port: int, size: int, delays: dict[int, float], timeout: float = 20.0) -> dict:
    import threading

    from effnet.train.distributed import agree_on_group_key

    out: dict[int, object] = {}

    def run(rank):
        time.sleep(delays.get(rank, 0.0))
        try:
            out[rank] = agree_on_group_key(_client(port), rank, size, timeout)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            out[rank] = e

    threads = [threading.Thread(target=run, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_a_restarted_group_never_takes_keys_an_earlier_group_left_in_the_store():
    server = _store_server()
    first = _agree_in_threads(server.port, 3, {})
    assert len(set(first.values())) == 1 and isinstance(first[0], str)
    # the next group on the same store: its ranks 1 and 2 start before rank 0 and find the dead
    # group's offer, answers and acknowledgements there; one more stale offer for good measure
    server.set("effnet/group/offer", "stale")
    second = _agree_in_threads(server.port, 3, {0: 0.5})
    assert len(set(second.values())) == 1 and isinstance(second[0], str)
    assert second[0] not in (first[0], "stale")


def test_forming_a_group_whose_rank_0_never_comes_fails_in_one_line_in_bounded_time():
    from effnet.errors import UserError
    from effnet.train.distributed import agree_on_group_key

    server = _store_server()
    server.set("effnet/group/offer", "left-by-a-dead-group")
    t0 = time.monotonic()
    with pytest.raises(UserError) as e:
        agree_on_group_key(_client(server.port), 1, 2, timeout=0.5)
    assert time.monotonic() - t0 < 5
    assert "rank 1 of 2 got no answer from rank 0 within 0.5 s" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="rank 0 of 3 heard from only 0 of its 2 peers"):
        agree_on_group_key(_client(server.port), 0, 3, timeout=0.3)


_GROUP_WORKER = """
import torch
from effnet.train.distributed import World, all_sum, close_world, init_world
w = init_world("cpu")
print(int(all_sum(torch.tensor([w.rank + 1.0]), w).item()), flush=True)
close_world(w)
"""


def test_gloo_groups_formed_one_after_another_on_one_agent_store_all_connect():
    """torchrun's agent keeps one store for the whole job: a second group on it (a restart) must
    connect even when its rank 1 starts first and finds the first group's gloo addresses there
    (before the fix it read the dead rank 0's address: refused, or waiting forever)."""
    server = _store_server()
    env = _worker_env(WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(server.port),
                      TORCHELASTIC_USE_AGENT_STORE="True", EFFNET_DIST_TIMEOUT="60")
    for group, rank1_head_start in enumerate((0.0, 3.0)):
        ranks = {}
        try:
            for rank in (1, 0):
                ranks[rank] = procs.popen([sys.executable, "-c", _GROUP_WORKER],
                                          env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                if rank == 1:
                    time.sleep(rank1_head_start)
            outs = {r: p.communicate(timeout=120) for r, p in ranks.items()}
        finally:
            for p in ranks.values():
                procs.kill_group(p)
        for r, (out, err) in outs.items():
            assert ranks[r].returncode == 0, (group, r, err[-2000:])
            assert out.strip() == "3"  # 1 + 2: both ranks took part
