"""Commands about models: `models`, `scale`, `profile`, `predict`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UserError
from . import commands
from .argtypes import finite_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = commands.add(sub, "models")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. '*lite*'")
    p.add_argument("--pretrained", action="store_true",
                   help="list the published weights (tags for --pretrained) with their top-1")
    p.set_defaults(run=cmd_models)

    p = commands.add(sub, "scale")
    p.add_argument("--base", default="efficientnet_b0")
    p.add_argument("--phi", type=finite_float, required=True, help="compound coefficient (any real)")
    p.add_argument("--alpha", type=finite_float, default=None, help="depth base (default 1.2)")
    p.add_argument("--beta", type=finite_float, default=None, help="width base (default 1.1)")
    p.add_argument("--gamma", type=finite_float, default=None, help="resolution base (default 1.15)")
    p.add_argument("--coeffs", type=Path, default=None,
                   help="JSON with alpha, beta, gamma (e.g. a search's best.json)")
    p.add_argument("--depth-rounding", choices=("round", "ceil"), default="round",
                   help="per-stage repeats: nearest (default) or ceiling as the released B1-B7")
    p.set_defaults(run=cmd_scale)

    p = commands.add(sub, "profile")
    p.add_argument("model")
    p.add_argument("--size", type=positive_int, default=None, help="image size (default: eval size)")
    p.add_argument("--batch", type=positive_int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--channels-last", action="store_true")
    p.set_defaults(run=cmd_profile)

    p = commands.add(sub, "predict")
    p.add_argument("images", nargs="+", type=Path,
                   help="image files, or folders (their images and their sub-folders', recursively)")
    p.add_argument("--model", default=None,
                   help="model name; optional when a spec.json (from `effnet train`) sits beside --weights")
    p.add_argument("--weights", type=Path, default=None,
                   help="weights file, a run directory (the weights that scored best), or what "
                   "export/quantize/deploy wrote (.onnx: run by onnxruntime, .pt2)")
    p.add_argument("--pretrained", default=None, metavar="TAG",
                   help="published weights by tag or model name (see `effnet models --pretrained`)")
    p.add_argument("--topk", type=positive_int, default=5)
    p.add_argument("--num-classes", type=positive_int, default=None)
    p.add_argument("--csv", type=Path, default=None, metavar="OUT",
                   help="write path, top-k labels and probabilities to OUT, a row per image as it "
                   "comes (any number of images, in constant memory), with a progress bar")
    p.add_argument("-b", "--batch-size", type=positive_int, default=32, help="images per batch")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(run=cmd_predict)


def cmd_models(args) -> int:
    from ..data.config import resolve_data_config
    from ..models import list_models, plan_model
    from ..tools.profile import count_macs, count_params

    if args.pretrained:
        return _list_pretrained(args.pattern)
    names = list_models(args.pattern)
    if not names:
        raise UserError(f"no model matches {args.pattern!r}; try `effnet models`")
    rows = [("model", "params (M)", "GMACs", "train px", "eval px", "crop", "interp")]
    for n in names:
        config = plan_model(n).config
        spec, pre = config.spec, resolve_data_config(config)
        rows.append((n, f"{count_params(spec) / 1e6:.2f}",
                     f"{count_macs(spec, pre.eval_size) / 1e9:.3f}",
                     str(pre.train_size), str(pre.eval_size), f"{pre.crop_pct:.3f}", pre.interpolation))
    print(_table(rows))
    return 0


def _list_pretrained(pattern: str) -> int:
    from ..models import get_spec
    from ..pretrained import default_tag, list_pretrained
    from ..tools.profile import count_params

    rows = list_pretrained(pattern)
    if not rows:
        raise UserError(f"no pretrained weights match {pattern!r}; try `effnet models --pretrained`")
    table = [("tag", "effnet model", "top-1 %", "params (M)", "eval px", "crop", "interp", "license")]
    params: dict[tuple[str, int], int] = {}  # several rows share a network: count each once
    for r in rows:
        pre = r.preprocess
        mark = " *" if default_tag(r.model) == r.tag else ""
        key = (r.model, r.num_classes)
        if key not in params:
            params[key] = count_params(get_spec(r.model), r.num_classes)
        table.append((r.tag + mark, r.model, f"{r.top1:.2f}" if r.top1 is not None else "-",
                      f"{params[key] / 1e6:.2f}", str(pre.eval_size),
                      f"{pre.crop_pct:.3f}" + (" squash" if pre.crop_mode == "squash" else ""),
                      pre.interpolation, r.license))
    print(_table(table))
    print("* the model's default (pretrained=True); top-1: ImageNet-1k val as published by timm / "
          "torchvision at the eval size")
    return 0


def cmd_scale(args) -> int:
    from ..arch.scaling import read_coeffs, scale_compound
    from ..data.config import resolve_data_config
    from ..models import plan_model
    from ..tools.profile import count_macs, count_params

    alpha, beta, gamma = read_coeffs(args.coeffs)
    alpha = args.alpha if args.alpha is not None else alpha
    beta = args.beta if args.beta is not None else beta
    gamma = args.gamma if args.gamma is not None else gamma
    config = plan_model(args.base).config
    base, base_res = config.spec, resolve_data_config(config).eval_size
    try:
        scaled, m = scale_compound(base, args.phi, alpha, beta, gamma, args.depth_rounding)
        res = m.scaled_size(base_res)
    except ValueError as e:
        raise UserError(str(e)) from None
    base_macs, macs = count_macs(base, base_res), count_macs(scaled, res)
    print(f"{args.base} scaled with phi={args.phi:g}, alpha={alpha:g}, beta={beta:g}, gamma={gamma:g}")
    print(f"  depth x{m.depth:.3f}  width x{m.width:.3f}  resolution x{m.resolution:.3f} "
          f"-> {res}px (base {base_res}px); alpha*beta^2*gamma^2 = {alpha * beta**2 * gamma**2:.3f}; "
          f"depth rounding {args.depth_rounding}")
    print()
    print(scaled.table(res))
    print()
    ratio, target = macs / base_macs, 2 ** args.phi
    print(f"params {count_params(scaled):,} (base {count_params(base):,})")
    print(f"MACs   {macs / 1e9:.3f} G @ {res}px (base {base_macs / 1e9:.3f} G @ {base_res}px)")
    print(f"FLOPs ratio {ratio:.3f} vs 2^phi = {target:.3f} ({(ratio / target - 1) * 100:+.1f} %)")
    return 0


def cmd_profile(args) -> int:
    from ..data.config import DataOverrides, resolve_data_config
    from ..models import create_model
    from ..tools.profile import format_profile, profile

    model = create_model(args.model)
    size = resolve_data_config(model, flags=DataOverrides(eval_size=args.size)).eval_size
    r = profile(model, size, args.batch, device=args.device, channels_last=args.channels_last)
    print(f"{args.model}")
    print(format_profile(r))
    return 0


def cmd_predict(args) -> int:
    import warnings

    from ..data.config import resolve_data_config
    from ..errors import EffnetWarning
    from ..inference import load_for_inference
    from ..rundir import RunDir
    from ..tools import predict as pr
    from ..weights import imagenet_classes

    weights = args.weights
    if weights is not None and weights.is_dir():
        weights = RunDir(weights).best_weights()
    model, classes = load_for_inference(args.model, weights, args.num_classes, args.pretrained)
    pre = resolve_data_config(model)
    if classes is None and model.num_classes == 1000:
        classes = imagenet_classes()
    k = min(args.topk, model.num_classes)
    total = pr.count_images(args.images)  # every path exists, every folder has images
    skipped: list = []
    answers = pr.answers(model, args.images, pre, args.batch_size, k, skipped)
    random_weights = args.weights is None and args.pretrained is None
    answers = _warn_at_first(answers, random_weights)
    if args.csv is not None:
        rows = pr.write_csv(args.csv, answers, classes, k, total, args.progress)
        print(f"wrote {args.csv} ({rows} images, top {k})")
    else:
        for path, top in answers:
            print(f"{path}:")
            for rank, (ii, pi) in enumerate(top, 1):
                label = classes[ii] if classes else str(ii)
                print(f"  {rank}. {ii:>4}  {label:<30} {pi:.4f}")
    if skipped:
        path, why = skipped[0]
        warnings.warn(f"skipped {len(skipped)} unreadable image(s) of {total} (first: {why})",
                      EffnetWarning, stacklevel=1)
    sys.stdout.flush()
    return 0


def _warn_at_first(answers, random_weights: bool):
    """`answers`, saying before the first (once the input is known good) that they come from
    random weights when no weights were given (--pretrained loads published ones)."""
    for i, a in enumerate(answers):
        if i == 0 and random_weights:
            print("effnet: warning: no --weights given: these predictions come from random weights",
                  file=sys.stderr, flush=True)
        yield a


def _table(rows: list[tuple[str, ...]]) -> str:
    from ..tables import text_table

    return text_table(rows[0], rows[1:], left=1)
