"""Train the same EfficientNet in effnet and in timm on the same CIFAR-10 batches: does effnet's
network train as well and as fast as timm's?

    .venv/bin/python benchmarks/train_cifar10.py [--seeds 3] [--epochs 6]

The network: B0 scaled by width x depth multipliers (default 0.5 x 0.25: 423,098 parameters, 7
blocks, one per stage), built by each library: effnet's `arch.scaling.scale` of the B0 spec and
timm's `_gen_efficientnet("efficientnet_b0", channel_multiplier=W, depth_multiplier=D)` (both
round depth up). Before training the script asserts that it is one network: equal parameter
counts; timm's weights loaded into effnet's model (effnet.weights) give the same logits in eval
mode, and in train mode with dropout and stochastic depth on under one seed (the same masks);
equal BatchNorm eps/momentum.

Calibration (timm arm alone, 1 seed, 1 thread on a loaded machine): full B0 at 32 px (146 img/s
in this benchmark's previous version) is too slow to learn within the budget; 0.5 x 0.5 (10
blocks, ~240 img/s) reached 33.9 % top-1 and train loss 1.71 after 4 epochs; 0.5 x 0.25 (~350
img/s) 41.5 % and 1.56 after 6 epochs in about the same time (lr 6e-3 instead of 3e-3: 36.7 %
against 38.5 % after 3 of 6 epochs).

Data: ../shared/data/cifar10-jpeg.tar.gz, the first N images per class of train and test
(default 500 and 100: 5,000 / 1,000), at 32 px. Each epoch's augmented batches (effnet.data's
train transform: random-resized crops of 80-100 % area, flips) are drawn once and fed to every
arm. One training loop for all arms: effnet.train's AdamW (decoupled weight decay off biases and
BN) with a cosine schedule after half an epoch of warmup, cross-entropy without label smoothing,
no dropout or stochastic depth (a short run learns best without them). The classifier starts at
zero in every arm (`--head-init zero`): both libraries' TF init, uniform +-1/sqrt(classes), gives
10-class logits a spread of several units and a first-epoch loss of ~3.4 (ln 10 = 2.3); with it,
0.5 x 0.5 had 26.0 % top-1 after 4 of 5 epochs, against 33.9 % after 4 with a zero head
(1 seed each). `--head-init library` keeps it. Models and inputs are channels_last in every arm
(effnet's CPU default; timm's model is converted).

Arms: `effnet` and `timm`, each with its own initialisation from the seed (both libraries draw
from the same TF initialisers, in another order). `--arms effnet,timm,effnet-timm-init` adds
effnet's network starting from timm's initial weights, so effnet-timm-init vs timm is the
implementations alone and effnet vs effnet-timm-init the initial draw alone (1.5x the time).
Before timing, every arm runs `--warmup-steps` steps on a throwaway model. Seed-major and
interleaved: for each seed, for each epoch, the arms train one epoch each, their order rotating
every epoch, so machine-load drift falls on all alike. img/s counts forward + backward +
optimiser step only.

The results replace the `train_cifar10` section of BENCHMARKS.md (`--no-write` to skip).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from _bench import CIFAR_ARCHIVE, extract_subset, mean_std, stamp, verdict, write_section
from timm.models.efficientnet import _gen_efficientnet

import effnet
from effnet.arch.scaling import scale
from effnet.data import Transformed, eval_transform, load_data, train_transform
from effnet.data.config import DataOverrides
from effnet.models import plan_model
from effnet.nn.model import EfficientNet
from effnet.train.optim import build_optimizer, build_schedule, set_lr
from effnet.train.recipe import Recipe
from effnet.weights import load_weights

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("effnet", "timm", "effnet-timm-init")
DEFAULT_ARMS = "effnet,timm"
CL = torch.channels_last


def build(lib: str, width: float, depth: float, drop: float) -> torch.nn.Module:
    if lib == "effnet":
        spec = scale(effnet.get_spec("efficientnet_b0"), width=width, depth=depth)
        return EfficientNet(spec, num_classes=10, drop_rate=drop, drop_path_rate=drop)
    return _gen_efficientnet("efficientnet_b0", channel_multiplier=width, depth_multiplier=depth,
                             num_classes=10, drop_rate=drop, drop_path_rate=drop)


def params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_same_network(width: float, depth: float) -> dict:
    """Assert that effnet's and timm's builders make one network; what was checked, as numbers."""
    drop = 0.2  # the train-mode check needs masks to compare
    torch.manual_seed(0)
    theirs = build("timm", width, depth, drop)
    ours = build("effnet", width, depth, drop)
    counts = params(ours), params(theirs)
    assert counts[0] == counts[1], f"parameter counts differ: effnet {counts[0]:,}, timm {counts[1]:,}"
    bn = {lib: {(m.eps, m.momentum) for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)}
          for lib, net in (("effnet", ours), ("timm", theirs))}
    assert bn["effnet"] == bn["timm"] and len(bn["timm"]) == 1, f"BatchNorm settings differ: {bn}"
    load_weights(ours, theirs.state_dict())
    x = torch.randn(16, 3, 32, 32).contiguous(memory_format=CL)
    theirs = theirs.to(memory_format=CL)
    diffs = {}
    for mode in ("eval", "train"):
        outs = []
        for net in (ours, theirs):
            net.train(mode == "train")
            torch.manual_seed(1)
            with torch.no_grad():
                outs.append(net(x))
        diffs[mode] = float((outs[0] - outs[1]).abs().max() / outs[1].abs().max())
        assert diffs[mode] < 1e-4, f"{mode}-mode logits differ (max relative {diffs[mode]:.2e})"
    return {"params": counts[0], "bn": bn["timm"].pop(), "diff": diffs,
            "blocks": sum(len(s) for s in ours.stages)}


def materialise(dataset, batch: int, order: np.ndarray,
                drop_last: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for start in range(0, len(order) - (batch - 1 if drop_last else 0), batch):
        items = [dataset[int(i)] for i in order[start:start + batch]]
        x = torch.stack([x for x, _ in items]).contiguous(memory_format=CL)
        out.append((x, torch.tensor([y for _, y in items])))
    return out


class Arm:
    """One model with its optimiser and schedule (effnet.train's, the same for every arm)."""

    def __init__(self, model: torch.nn.Module, recipe: Recipe, steps_per_epoch: int, epochs: int):
        self.model = model.to(memory_format=CL)
        self.lr = recipe.peak_lr(recipe.batch_size)
        self.opt = build_optimizer(self.model, recipe, self.lr)
        self.schedule = build_schedule(recipe, self.lr, steps_per_epoch, steps_per_epoch * epochs)
        self.step, self.seconds, self.images, self.losses = 0, 0.0, 0, []

    def train_epoch(self, batches) -> None:
        self.model.train()
        total = 0.0
        for x, y in batches:
            t0 = time.perf_counter()
            set_lr(self.opt, self.schedule(self.step))
            loss = F.cross_entropy(self.model(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.seconds += time.perf_counter() - t0
            self.step += 1
            self.images += len(y)
            total += loss.item()
        self.losses.append(total / len(batches))

    @torch.no_grad()
    def top1(self, batches) -> float:
        self.model.eval()
        correct = sum(int((self.model(x).argmax(1) == y).sum()) for x, y in batches)
        return 100.0 * correct / sum(len(y) for _, y in batches)


def make_models(arms: list[str], seed: int, args) -> dict[str, torch.nn.Module]:
    torch.manual_seed(seed)
    models = {"effnet": build("effnet", args.width, args.depth, args.drop)}
    torch.manual_seed(seed)
    models["timm"] = build("timm", args.width, args.depth, args.drop)
    if args.head_init == "zero":
        for model in models.values():
            torch.nn.init.zeros_(model.classifier.weight)
    if "effnet-timm-init" in arms:
        models["effnet-timm-init"] = load_weights(build("effnet", args.width, args.depth, args.drop),
                                                  models["timm"].state_dict())
    return {k: models[k] for k in arms}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "effnet")
    p.add_argument("--train-per-class", type=int, default=500)
    p.add_argument("--val-per-class", type=int, default=100)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--width", type=float, default=0.5, help="channel multiplier of B0")
    p.add_argument("--depth", type=float, default=0.25, help="depth multiplier of B0")
    p.add_argument("--head-init", choices=("zero", "library"), default="zero",
                   help="the classifier's initial weights in every arm (see above)")
    p.add_argument("--drop", type=float, default=0.0, help="dropout and stochastic depth")
    p.add_argument("--arms", default=DEFAULT_ARMS, help="comma list of: " + ", ".join(ARMS))
    p.add_argument("--warmup-steps", type=int, default=3, help="untimed steps per arm, on a copy")
    p.add_argument("--threads", type=int, default=None, help="default: torch's (OMP_NUM_THREADS or the cores)")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    arms = args.arms.split(",")
    if not set(arms) <= set(ARMS) or not {"effnet", "timm"} <= set(arms):
        p.error(f"--arms: effnet and timm, optionally effnet-timm-init (got {args.arms})")
    if args.seeds < 1 or args.epochs < 1:
        p.error("--seeds and --epochs must be >= 1")
    if not CIFAR_ARCHIVE.is_file():
        print(f"skipped: {CIFAR_ARCHIVE} is not here (CIFAR-10 JPEG archive, see shared/data/README.md)")
        return 0

    env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    header = stamp(f"{env}.venv/bin/python benchmarks/train_cifar10.py"  # the commit that runs
                   + "".join(f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv)))
    if args.threads:  # else torch's default: OMP_NUM_THREADS or the cores, as effnet's trainer
        torch.set_num_threads(args.threads)
    wall = time.perf_counter()
    same = check_same_network(args.width, args.depth)
    print(f"one network: {same['params']:,} params, {same['blocks']} blocks, BN eps/momentum "
          f"{same['bn']}, max relative logit difference eval {same['diff']['eval']:.1e} / "
          f"train {same['diff']['train']:.1e}", flush=True)

    splits = load_data(str(extract_subset(CIFAR_ARCHIVE, args.cache, args.train_per_class,
                                          args.val_per_class)))
    recipe = Recipe(name="bench", opt="adamw", lr=args.lr, lr_base_size=0, opt_eps=1e-8,
                    weight_decay=0.05, wd_exclude="bn_bias", sched="cosine", epochs=args.epochs,
                    warmup_epochs=0.5, batch_size=args.batch_size, label_smoothing=0.0,
                    ema_decay=0.0, scale=(0.8, 1.0))
    # ImageNet mean/std and bicubic as B0's; no crop margin at 32 px (CIFAR objects fill the frame)
    pre = effnet.resolve_data_config(plan_model("efficientnet_b0").config,
                                     flags=DataOverrides(crop_pct=1.0))
    decoded = [splits.train[i] for i in range(len(splits.train))]  # JPEGs decoded once, not per epoch
    train_set = Transformed(decoded, train_transform(pre, args.size, hflip=True, scale=recipe.scale))
    val_batches = materialise(Transformed(splits.val, eval_transform(pre, args.size)), 250,
                              np.arange(len(splits.val)), drop_last=False)
    steps = len(splits.train) // args.batch_size

    # warm-up: each arm's first steps (allocator, oneDNN kernels) on throwaway models
    torch.manual_seed(0)
    first = materialise(train_set, args.batch_size, np.arange(args.batch_size * args.warmup_steps))
    for model in make_models(arms, 0, args).values():
        Arm(model, recipe, steps, args.epochs).train_epoch(first)

    results = {k: {"top1": [], "loss": [], "ips": []} for k in arms}
    for seed in range(args.seeds):
        peers = {k: Arm(m, recipe, steps, args.epochs) for k, m in make_models(arms, seed, args).items()}
        for epoch in range(args.epochs):
            torch.manual_seed(1000 * seed + epoch)  # the same crops and flips for every arm
            order = np.random.default_rng(1000 * seed + epoch).permutation(len(splits.train))
            batches = materialise(train_set, args.batch_size, order)
            k = (seed * args.epochs + epoch) % len(arms)
            for name in arms[k:] + arms[:k]:  # rotate who goes first
                torch.manual_seed(seed)  # the same dropout / stochastic-depth stream
                peers[name].train_epoch(batches)
                print(f"  seed {seed} epoch {epoch + 1} {name:16s} loss {peers[name].losses[-1]:.4f} "
                      f"{peers[name].images / peers[name].seconds:.0f} img/s", flush=True)
        for name, arm in peers.items():
            results[name]["top1"].append(arm.top1(val_batches))
            results[name]["loss"].append(arm.losses[-1])
            results[name]["ips"].append(arm.images / arm.seconds)
            print(f"seed {seed} {name:16s} top-1 {results[name]['top1'][-1]:.2f} %", flush=True)
    minutes = (time.perf_counter() - wall) / 60

    cols = ("arm", "test top-1 %", "final train loss", "train img/s")
    table = [f"| {' | '.join(cols)} |", f"|{'|'.join('---' for _ in cols)}|"]
    for name, r in results.items():
        table.append(f"| {name} | {mean_std(r['top1'])} | {mean_std(r['loss'])} | {mean_std(r['ips'])} |")
    table.append(f"| (chance / uniform guess) | 10.00 | {math.log(10):.2f} | |")
    e, t = results["effnet"], results["timm"]
    verdicts = [f"- effnet vs timm, top-1: {verdict(e['top1'], t['top1'])}; train loss: "
                f"{verdict(e['loss'], t['loss'], 'nats')}; img/s: {verdict(e['ips'], t['ips'], 'img/s')}."]
    if "effnet-timm-init" in results:
        i = results["effnet-timm-init"]
        verdicts += [f"- effnet-timm-init vs timm (same initial weights: the implementations alone), "
                     f"top-1: {verdict(i['top1'], t['top1'])}; train loss: {verdict(i['loss'], t['loss'], 'nats')}.",
                     f"- effnet vs effnet-timm-init (the initial draw alone), top-1: "
                     f"{verdict(e['top1'], i['top1'])}."]
    n_train, n_val = len(splits.train), len(splits.val)
    head = ("the classifier starts at zero in every arm (the libraries' TF init gives 10-class logits "
            "a spread of several units and a first-epoch loss near 3.4)" if args.head_init == "zero"
            else "each library's classifier init")
    init_note = (", measured by the `effnet-timm-init` arm (effnet's network from timm's initial weights)"
                 if "effnet-timm-init" in arms else "; `--arms effnet,timm,effnet-timm-init` measures it")
    body = "\n".join([
        "## Training: effnet vs timm, the same EfficientNet on the same CIFAR-10 batches",
        "",
        header,
        "",
        f"B0 scaled by width {args.width:g} x depth {args.depth:g} (depth rounded up in both), built by "
        f"each library: {same['params']:,} parameters, {same['blocks']} blocks in both (asserted). With "
        f"timm's weights loaded into effnet's model the logits agree to {max(same['diff'].values()):.0e} "
        f"(relative) in eval mode and in train mode with dropout and stochastic depth 0.2 under one seed "
        f"(the same masks); BatchNorm eps/momentum {same['bn'][0]:g}/{same['bn'][1]:g} in both. Still "
        f"different by default: only the initial random draw (the same TF initialisers, drawn in "
        f"another module order){init_note}.",
        "",
        f"{n_train:,} CIFAR-10 train images ({args.train_per_class} per class) at {args.size} px for "
        f"{args.epochs} epochs, batch {args.batch_size}, AdamW lr {args.lr:g} (cosine after 0.5 warmup "
        f"epochs, weight decay 0.05 off biases/BN), no label smoothing, dropout = stochastic depth = "
        f"{args.drop:g}, {head}; random-resized crops of 80-100 % and flips (effnet.data), every arm on "
        f"the same batches in the same order; models and inputs channels_last in every arm; "
        f"{args.warmup_steps} untimed warm-up steps per arm; arms interleaved per epoch with the order "
        f"rotating; {args.seeds} seeds, mean +- std. Test top-1 on {n_val:,} test-split images "
        f"(chance 10 %); train loss of the last epoch against ln 10 = {math.log(10):.2f} for a uniform "
        f"guess. img/s: forward + backward + optimiser step, {torch.get_num_threads()} thread(s). "
        f"{minutes:.1f} min in all.",
        "",
        *table,
        "",
        *verdicts,
        "",
        f"timm {timm.__version__}, torch {torch.__version__}.",
    ])
    print("\n" + body)
    if not args.no_write:
        write_section(args.output, "train_cifar10", body)
        print(f"\nwrote the train_cifar10 section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
