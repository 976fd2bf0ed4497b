"""Commands for after training: `export` (ONNX / torch.export), `quantize` (int8), `deploy` (a run's
ONNX and int8 files, each scored and timed), `cam` (Grad-CAM)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UserError
from ..rundir import RunDir
from . import commands
from .argtypes import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    from ..tools.export import DYNAMIC_AXES, FORMATS
    from ..tools.quantize import FLOAT_PARTS

    p = commands.add(sub, "export")
    p.add_argument("source", help="model name, or a run directory of `effnet train`")
    p.add_argument("--weights", type=Path, default=None, help="weights for a model name")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--format", choices=tuple(FORMATS), default="onnx")
    p.add_argument("--dynamic", default="", metavar="AXES",
                   help=f"comma list of dynamic axes: {', '.join(DYNAMIC_AXES)} (default: static)")
    p.add_argument("--size", type=int, default=None, help="input size (default: the eval size)")
    p.add_argument("--no-fuse", dest="fuse", action="store_false", help="keep BatchNorm unfolded")
    p.add_argument("--output", type=Path, default=None, help="file to write (default: beside "
                   "the run's weights, or MODEL.onnx / MODEL.pt2 here)")
    p.set_defaults(run=cmd_export)

    p = commands.add(sub, "quantize")
    p.add_argument("source", help="model name, or a run directory of `effnet train`")
    p.add_argument("--weights", type=Path, default=None, help="weights for a model name")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--calib", type=Path, required=True, help="directory of calibration images")
    p.add_argument("--images", type=int, default=256, help="calibration images to use (default 256)")
    p.add_argument("--size", type=int, default=None, help="input size (default: the eval size)")
    p.add_argument("--keep-float", default="", metavar="PARTS",
                   help=f"comma list of parts left in float: {', '.join(FLOAT_PARTS)} "
                   "(default none; BENCHMARKS.md has what each choice does to accuracy)")
    p.add_argument("--output", type=Path, default=None,
                   help="file to write (default: RUN/model_int8.pt2 or MODEL_int8.pt2 here)")
    p.set_defaults(run=cmd_quantize)

    p = commands.add(sub, "deploy", description="From a run's best weights write model.onnx (and "
                     "with --int8 two int8 files: torchao PT2E .pt2, ONNX Runtime static int8 .onnx), "
                     "then score each on the run's val split and time it on this CPU: deploy.json, "
                     "deploy.md.")
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run directory of `effnet train`")
    p.add_argument("--int8", action="store_true",
                   help="also write the int8 files, calibrated on the run's training images")
    p.add_argument("--calib-images", type=positive_int, default=200,
                   help="training images to calibrate int8 on (a seeded sample; default 200)")
    p.add_argument("--reps", type=positive_int, default=5,
                   help="timed forward passes per file and batch size; the median is reported (default 5)")
    p.add_argument("-b", "--batch-size", type=positive_int, default=None,
                   help="eval batch (default: the trainer's, max(batch size, 64))")
    p.add_argument("--output", type=Path, default=None, help="directory (default RUN_DIR/deploy)")
    p.set_defaults(run=cmd_deploy)

    p = commands.add(sub, "cam")
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--model", action="append", default=[],
                   help="model name (repeat with --compare; optional for a run directory in --weights)")
    p.add_argument("--weights", action="append", type=Path, default=[],
                   help="weights file or run directory, one per --model in the same order")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--class", dest="class_index", type=int, default=None,
                   help="class to explain (default: each model's top class)")
    p.add_argument("--compare", action="store_true", help="one PNG per image with every model side by side")
    p.add_argument("--output", type=Path, default=Path("cam"), help="directory for the PNGs (default ./cam)")
    p.set_defaults(run=cmd_cam)


def _require(module: str, package: str, what: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise UserError(f"{what} needs the {package} package: pip install 'effnet[deploy]'")


def load_source(source: str, weights: Path | None, num_classes: int | None):
    """(eval-mode model, class names, RunDir or None) for a model name or a run directory (whose
    weights that scored best it loads)."""
    from ..inference import load_for_inference

    path = Path(source)
    if path.is_dir():
        if weights is not None:
            raise UserError("--weights is for a model name; a run directory brings its own")
        run = RunDir(path)
        model, classes = load_for_inference(None, run.best_weights())
        return model, classes, run
    model, classes = load_for_inference(source, weights, num_classes)
    return model, classes, None


def _data_config(args, model):
    """The model's data config, `--size` over its own eval size."""
    from ..data.config import DataOverrides, resolve_data_config

    return resolve_data_config(model, flags=DataOverrides(eval_size=args.size))


def _default_output(source: str, run: RunDir | None, tag: str, suffix: str) -> Path:
    return run.export_file(tag + suffix) if run is not None else Path(f"{source}{tag}{suffix}")


def cmd_export(args) -> int:
    from ..tools import export as ex

    if args.format == "onnx":
        _require("onnxscript", "onnxscript", "ONNX export")
    model, classes, run = load_source(args.source, args.weights, args.num_classes)
    dynamic = ex.parse_dynamic(args.dynamic)
    size = ex.check_size(model, _data_config(args, model).eval_size, "size" in dynamic)
    suffix = ex.FORMATS[args.format]
    out = args.output or _default_output(args.source, run, "", suffix)
    ready = ex.prepare(model, fuse=args.fuse)
    meta = ex.metadata(model, classes, None if "size" in dynamic else size)
    if args.format == "onnx":
        ex.save_onnx(ready, out, size, dynamic, meta)
    else:
        ex.save_program(ex.export_program(ready, size, dynamic), out, meta)
    shape = ("N" if "batch" in dynamic else "2") + f"x{model.in_chans}x" + (
        "HxW" if "size" in dynamic else f"{size}x{size}")
    print(f"wrote {out} ({args.format}, input {shape}, BN {'folded' if args.fuse else 'kept'})")
    sys.stdout.flush()
    return 0


def cmd_quantize(args) -> int:
    from ..tools import export as ex
    from ..tools import quantize as q

    _require("torchao", "torchao", "quantize")
    if args.images < 1:
        raise UserError(f"--images must be >= 1 (got {args.images})")
    model, classes, run = load_source(args.source, args.weights, args.num_classes)
    pre = _data_config(args, model)
    size = ex.check_size(model, pre.eval_size, False)
    keep = [p.strip() for p in args.keep_float.split(",") if p.strip()]
    q.float_module_names(model, keep)  # an unknown part fails before the slow work
    files = q.find_images(args.calib, args.images)
    converted = q.quantize_int8(model, q.calibration_batches(files, pre, size),
                                size, keep)
    out = args.output or _default_output(args.source, run, "_int8", ".pt2")
    q.save_int8(converted, model, classes, size, out, keep, len(files))
    print(f"wrote {out} (int8, {len(files)} calibration images at {size} px, "
          f"float parts: {', '.join(keep) or 'none'})")
    return 0


def cmd_deploy(args) -> int:
    from ..tables import text_table
    from ..tools import deploy as dp
    from ..tools.deploy_table import table_rows

    needs = ["onnxscript", "onnxruntime"] + (["torchao", "onnx"] if args.int8 else [])
    for module in needs:
        _require(module, module, "deploy --int8" if args.int8 else "deploy")
    summary = dp.deploy(args.run_dir, args.output, int8=args.int8, calib_images=args.calib_images,
                        reps=args.reps, batch_size=args.batch_size,
                        log=lambda line: print(line, flush=True))
    print(text_table(*table_rows(summary), left=2))
    sys.stdout.flush()
    return 0


def _cam_models(args) -> list[tuple[str | None, Path | None]]:
    """(model name, weights) pairs: --model and --weights pair up in order; either may be absent."""
    names, weights = list(args.model), list(args.weights)
    if names and weights and len(names) != len(weights):
        raise UserError(f"{len(names)} --model but {len(weights)} --weights: give one weights per model "
                        "(or none)")
    pairs = list(zip(names, weights, strict=True)) if names and weights else (
        [(n, None) for n in names] or [(None, w) for w in weights])
    if not pairs:
        raise UserError("cam needs --model NAME or --weights RUN_DIR")
    if len(pairs) > 1 and not args.compare:
        raise UserError("several models: add --compare to draw them side by side")
    return pairs


def _label(model, classes, k: int) -> str:
    from ..weights import imagenet_classes

    if classes is None and model.num_classes == 1000:
        classes = imagenet_classes()
    return classes[k] if classes else str(k)


def cmd_cam(args) -> int:
    from ..inference import load_for_inference, open_image

    _require("pytorch_grad_cam", "grad-cam", "cam")
    from ..tools import cam

    loaded = []
    for name, weights in _cam_models(args):
        if weights is not None and weights.is_dir():
            model, classes, _ = load_source(str(weights), None, None)
        else:
            model, classes = load_for_inference(name, weights, args.num_classes)
        loaded.append((name or model.spec.name, model, classes))
    images = [(path, open_image(path)) for path in args.images]  # every image readable before work
    args.output.mkdir(parents=True, exist_ok=True)
    for path, image in images:
        panels = []
        for name, model, classes in loaded:
            r = cam.grad_cam(model, image, args.class_index)
            label = _label(model, classes, r.class_index)
            print(f"{path}: {name}: class {r.class_index} ({label}, p={r.prob:.3f}), peak at x={r.peak[0]}, "
                  f"y={r.peak[1]}")
            panels.append((f"{name}\n{label} ({r.prob:.2f})", r))
        if args.compare:
            out = cam.compare_figure(image, panels, args.output / f"{path.stem}_compare.png")
        else:
            out = cam.save_png(cam.overlay(image, panels[0][1]), args.output / f"{path.stem}_cam.png")
        print(f"wrote {out}")
    sys.stdout.flush()
    return 0
