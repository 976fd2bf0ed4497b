"""Train effnet's EfficientNet-B0 and timm's, same architecture and settings, on CIFAR-10 at 32 px.

    .venv/bin/python benchmarks/train_cifar10.py

Data: ../shared/data/cifar10-jpeg.tar.gz (extracted once into ~/.cache/effnet; the script exits
with a message when the archive is absent). A seeded, class-balanced subset of the train split
(default 10,000 images) trains each model for a CPU-sized budget (default 2 epochs); accuracy is
measured on a balanced subset of the test split (default 5,000 images).

Fairness: every epoch's augmented batches (effnet.data's train transform: random-resized crop,
flip) are drawn once and fed to both models, so they see the same pixels in the same order. Both
use the same optimiser, schedule and regularisation from effnet.train (AdamW, cosine after a short
warmup, label smoothing 0.1, dropout 0.2, stochastic depth 0.2), the same seeds, threads and
precision. Epochs alternate between the two (A B A B) so drift in the machine's speed falls on
both alike. img/s counts forward + backward + optimiser step only (data preparation excluded).

The results replace the `train_cifar10` section of BENCHMARKS.md (`--no-write` to skip).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shlex
import shutil
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from _bench import CIFAR_ARCHIVE, write_section

import effnet
from effnet.data import Split, Transformed, eval_transform, load_data, train_transform
from effnet.train.optim import build_optimizer, build_schedule, set_lr
from effnet.train.recipe import Recipe
from effnet.train.runtime import cpu_threads

ROOT = Path(__file__).resolve().parents[1]
SHA256 = "492d611848bf79180b3994822305135d3f9b137685d21a8e5e9c34bccfbe5cb1"


def extract(archive: Path, cache: Path) -> Path:
    """The ImageFolder root (train/, test/), extracted once; an interrupted extraction is redone."""
    root = cache / "cifar10-jpeg"
    if (root / ".complete").is_file():
        return root
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != SHA256:
        sys.exit(f"{archive}: sha256 {digest} is not the expected {SHA256}")
    tmp = cache / f".cifar10-jpeg.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    inner = next(p for p in [tmp, *tmp.iterdir()] if (p / "train").is_dir())
    (inner / ".complete").write_text("ok\n")
    shutil.rmtree(root, ignore_errors=True)
    os.replace(inner, root)
    shutil.rmtree(tmp, ignore_errors=True)
    return root


def balanced(dataset, n: int, seed: int) -> Split:
    """n images, the same count per class, chosen with a seeded generator."""
    targets = np.asarray(dataset.targets)
    classes = np.unique(targets)
    rng = np.random.default_rng(seed)
    per = n // len(classes)
    idx = np.concatenate([rng.permutation(np.flatnonzero(targets == c))[:per] for c in classes])
    return Split(dataset, sorted(idx.tolist()))


def materialise(dataset, batch: int, order: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for start in range(0, len(order) - batch + 1, batch):
        items = [dataset[int(i)] for i in order[start:start + batch]]
        out.append((torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])))
    return out


def build_models(drop: float) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    ours = effnet.create_model("efficientnet_b0", num_classes=10, drop_rate=drop, drop_path_rate=drop)
    torch.manual_seed(0)
    theirs = timm.create_model("efficientnet_b0", num_classes=10, drop_rate=drop, drop_path_rate=drop)
    return {"effnet": ours, "timm": theirs}


class Peer:
    def __init__(self, model: torch.nn.Module, recipe: Recipe, steps_per_epoch: int, epochs: int):
        self.model = model
        self.lr = recipe.peak_lr(recipe.batch_size)
        self.opt = build_optimizer(model, recipe, self.lr)
        self.schedule = build_schedule(recipe, self.lr, steps_per_epoch, steps_per_epoch * epochs)
        self.smoothing = recipe.label_smoothing
        self.step, self.seconds, self.images, self.losses = 0, 0.0, 0, []

    def train_epoch(self, batches) -> None:
        self.model.train()
        total = 0.0
        for x, y in batches:
            t0 = time.perf_counter()
            set_lr(self.opt, self.schedule(self.step))
            loss = F.cross_entropy(self.model(x), y, label_smoothing=self.smoothing)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.seconds += time.perf_counter() - t0
            self.step += 1
            self.images += len(y)
            total += loss.item()
        self.losses.append(total / len(batches))

    @torch.no_grad()
    def evaluate(self, batches) -> tuple[float, float]:
        self.model.eval()
        correct, n, t0 = 0, 0, time.perf_counter()
        for x, y in batches:
            correct += int((self.model(x).argmax(1) == y).sum())
            n += len(y)
        return 100.0 * correct / n, n / (time.perf_counter() - t0)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    return (f"CPU: {cpu}, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}; "
            f"torch {torch.__version__}, timm {timm.__version__}, Python {platform.python_version()}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archive", type=Path, default=CIFAR_ARCHIVE)
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "effnet")
    p.add_argument("--train-images", type=int, default=10_000)
    p.add_argument("--test-images", type=int, default=5_000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--drop", type=float, default=0.2)
    p.add_argument("--threads", type=int, default=None, help="default: effnet's cpu_threads()")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)

    if not args.archive.is_file():
        print(f"skipped: {args.archive} is not here (CIFAR-10 JPEG archive, see shared/data/README.md)")
        return 0
    torch.set_num_threads(cpu_threads(args.threads))
    root = extract(args.archive, args.cache)
    splits = load_data(str(root))
    train = balanced(splits.train, args.train_images, seed=0)
    test = balanced(splits.val, args.test_images, seed=1)
    recipe = Recipe(name="bench", opt="adamw", lr=args.lr, lr_base_size=0, opt_eps=1e-8,
                    weight_decay=0.05, wd_exclude="bn_bias", sched="cosine", epochs=args.epochs,
                    warmup_epochs=0.25, batch_size=args.batch_size, label_smoothing=0.1,
                    ema_decay=0.0, scale=(0.35, 1.0))
    pre = effnet.get_spec("efficientnet_b0").preprocess  # ImageNet mean/std, bicubic
    train_set = Transformed(train, train_transform(pre, args.size, hflip=True, scale=recipe.scale))
    test_batches = materialise(Transformed(test, eval_transform(pre, args.size)), 250,
                               np.arange(len(test)))

    models = build_models(args.drop)
    params = {k: sum(q.numel() for q in m.parameters()) for k, m in models.items()}
    steps = len(train) // args.batch_size
    peers = {k: Peer(m, recipe, steps, args.epochs) for k, m in models.items()}
    print(f"CIFAR-10 {len(train)} train / {len(test)} test images at {args.size} px, "
          f"{args.epochs} epochs, batch {args.batch_size}; params {params}", flush=True)
    wall = time.perf_counter()
    for epoch in range(args.epochs):
        torch.manual_seed(epoch)  # the same crops and flips for both
        order = np.random.default_rng(epoch).permutation(len(train))
        batches = materialise(train_set, args.batch_size, order)
        for name, peer in peers.items():
            torch.manual_seed(1000 + epoch)  # the same dropout / stochastic-depth stream
            peer.train_epoch(batches)
            print(f"  epoch {epoch + 1} {name:6s} loss {peer.losses[-1]:.4f} "
                  f"{peer.images / peer.seconds:.0f} img/s", flush=True)
    rows = []
    for name, peer in peers.items():
        top1, eval_speed = peer.evaluate(test_batches)
        rows.append((name, f"{params[name]:,}", f"{top1:.2f}", f"{peer.losses[-1]:.4f}",
                     f"{peer.images / peer.seconds:.0f}", f"{peer.seconds:.0f}", f"{eval_speed:.0f}"))
    total = time.perf_counter() - wall

    header = ("library", "params", "test top-1 %", "final train loss", "train img/s", "train s",
              "eval img/s")
    table = [f"| {' | '.join(header)} |", f"|{'|'.join('---' for _ in header)}|"]
    table += [f"| {' | '.join(r)} |" for r in rows]
    cmd = "OMP_NUM_THREADS=... " if "OMP_NUM_THREADS" in os.environ else ""
    cmd += ".venv/bin/python benchmarks/train_cifar10.py" + "".join(
        f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))
    body = "\n".join([
        "## Training: effnet vs timm, EfficientNet-B0 on CIFAR-10 (CPU budget)",
        "",
        f"`{cmd}` ({time.strftime('%Y-%m-%d')}; {total / 60:.1f} min in all)",
        "",
        f"{machine()}.",
        "",
        f"EfficientNet-B0 from each library (10 classes, dropout and stochastic depth {args.drop}), "
        f"{len(train):,} balanced CIFAR-10 train images at {args.size} px for {args.epochs} epochs, "
        f"batch {args.batch_size}, AdamW lr {args.lr:g} (cosine, 0.25 warmup epochs, weight decay "
        f"0.05 off biases/BN), label smoothing 0.1; both models see the same augmented batches "
        f"in the same order. Test top-1 on {len(test):,} balanced test-split images. A "
        f"{args.epochs}-epoch CPU budget measures the training path's speed and that both learn alike, not final "
        f"accuracy (one seed: a point or two between the libraries is noise).",
        "",
        *table,
    ])
    print()
    print(body)
    if not args.no_write:
        write_section(args.output, "train_cifar10", body)
        print(f"\nwrote the train_cifar10 section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
