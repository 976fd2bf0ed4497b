"""`effnet eval`: top-1 / top-5 of weights, a run or an exported file on a val split or on every
image of a folder of class folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from . import commands
from .argtypes import finite_float, nonneg_int, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = commands.add(sub, "eval")
    p.add_argument("--model", default=None,
                   help="model name; optional when spec.json (from `effnet train`) sits beside --weights")
    p.add_argument("--weights", type=Path, default=None,
                   help="weights file, a run directory, or what export/quantize/deploy wrote (.onnx, .pt2)")
    p.add_argument("--pretrained", default=None, metavar="TAG",
                   help="published weights by tag or model name instead of --weights")
    p.add_argument("--data", default=None,
                   help="as for train (default: built-in digits); a folder of class folders without "
                   "train/ and val/ is scored whole (its folders matched to the model's class names)")
    p.add_argument("--val-split", type=finite_float, default=None,
                   help="hold out this fraction of a folder, as train did, and score only that")
    p.add_argument("--split-seed", type=nonneg_int, default=None,
                   help="the seed of the --val-split (default: that of the run the weights belong "
                   "to, as train drew it; else 0)")
    p.add_argument("--download", action="store_true")
    p.add_argument("--strict", action="store_true")
    p.add_argument("--num-classes", type=positive_int, default=None)
    p.add_argument("--img-size", type=positive_int, default=None)
    p.add_argument("-b", "--batch-size", type=positive_int, default=128)
    p.add_argument("--device", default=None)
    p.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    p.add_argument("-j", "--workers", type=nonneg_int, default=0)
    p.set_defaults(run=cmd_eval)


def _eval_files(args) -> list[tuple[str, object]]:
    """(row label, what to load) of each model `eval` scores: published weights, or a weights file
    (.safetensors, .pth, an exported .pt2 / .onnx) and the EMA twin a run saved beside it."""
    from ..rundir import RunDir, ema_twin

    if args.pretrained is not None:  # with --weights too, the model factory refuses the pair
        return [("pretrained", args.pretrained)]
    if args.weights is None:
        raise UserError("--weights or --pretrained is required")
    # a run directory: its best weights, and its EMA's best beside them
    weights = RunDir(args.weights).link("best") if args.weights.is_dir() else args.weights
    if not weights.is_file():
        raise UserError(f"no such weights file: {weights}")
    ema = ema_twin(weights)
    return [("weights", weights)] + ([("EMA", ema)] if ema else [])


def _split_seed(args, files: list[tuple[str, object]]) -> int:
    """The seed `eval --val-split` draws the held-out images with: --split-seed, else the seed of
    the run the weights sit in (train splits by its recipe's seed; any other seed would score
    images the run trained on), else 0."""
    from ..rundir import CONFIG_FILE, RunDir

    if args.split_seed is not None:
        return args.split_seed
    for _, path in files:
        if isinstance(path, Path) and (path.parent / CONFIG_FILE).is_file():
            return int(RunDir(path.parent).config("evaluate")["recipe"].get("seed", 0))
    return 0


def cmd_eval(args) -> int:
    from ..data import Transformed, eval_transform, load_class_folder, load_data, whole_folder
    from ..data.config import DataOverrides, resolve_data_config
    from ..data.folders import list_classes
    from ..devices import pick_device
    from ..inference import load_for_inference
    from ..tables import text_table
    from ..train.distributed import World
    from ..train.evaluate import eval_loader, evaluate

    files = _eval_files(args)
    root = whole_folder(args.data, args.val_split)
    if root is None:
        splits = load_data(args.data, val_split=args.val_split, download=args.download,
                           strict=args.strict, seed=_split_seed(args, files))
        # one class is label 0 for every image, whatever class 0 of the model is: no score means anything
        splits.require_two_classes()
        data_classes, title = splits.classes, f"{splits.name} val split"
    else:  # every image of a folder of class folders, labelled by the model's class names
        data_classes, title = list_classes(root), f"{root}: every image"
    world = World(device=pick_device(args.device))
    folders: dict[tuple, object] = {}  # the folder scanned once per class list (weights and EMA share one)
    rows = []
    for label, path in files:
        if label == "pretrained":  # the published class count unless --num-classes says otherwise
            model, classes = load_for_inference(args.model, args.weights, args.num_classes,
                                                pretrained=path)
        else:
            # a --model must name the network the weights' config (or run) says
            model, classes = load_for_inference(args.model, path, args.num_classes,
                                                fallback_classes=len(data_classes))
        if root is not None:
            key = tuple(classes or ())
            if key not in folders:
                folders[key] = load_class_folder(root, classes, str(path), strict=args.strict)
            val = folders[key]
            data_classes, name = val.classes, str(root)
        else:
            val, name = splits.val, splits.name
        if model.num_classes < len(data_classes):
            raise UserError(f"{path} has {model.num_classes} classes but {name} has "
                            f"{len(data_classes)}")
        if classes is not None and list(classes) != list(data_classes):
            raise UserError(f"{path} was trained on classes {classes[:5]}... but {name} has "
                            f"{data_classes[:5]}...")
        pre = resolve_data_config(model, flags=DataOverrides(eval_size=args.img_size))
        data = Transformed(val, eval_transform(pre, pre.eval_size))
        loader = eval_loader(data, args.batch_size, args.workers, world)
        r = evaluate(model.to(world.device), loader, world, args.amp)
        rows.append((label, str(path), f"{r['top1']:.2f}", f"{r['top5']:.2f}", f"{r['loss']:.4f}",
                     str(r["images"])))
    header = ("weights", "file", "top-1 %", "top-5 %", "loss", "images")
    print(title)
    print(text_table(header, rows, left=2))
    return 0
