"""Grad-CAM heat maps (the `grad-cam` package, jacobgil/pytorch-grad-cam) over effnet models, and
side-by-side comparisons of several models on one image (as V1 Fig. 7 compares scaled B0s).

The target layer is the last feature map (the 1x1 head conv at the model's largest stride, from
`feature_info`): the layer the classifier pools, so its gradient-weighted channels say where the
class evidence is; for a small input that leaves it under 4x4 cells (1x1 at 32 px), the last
stage that is not (`target_layer`). Images are squashed to the model's eval size rather than
center-cropped, so the heat map covers the whole picture.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import UserError
from ..fileio import atomic_write_bytes

MIN_CAM_SIDE = 4  # cells a side of the feature map Grad-CAM weighs, at the least


@dataclass
class CamResult:
    heat: np.ndarray  # (H, W) in [0, 1] at the original image's size
    class_index: int
    prob: float  # softmax probability of class_index

    @property
    def peak(self) -> tuple[int, int]:
        """(x, y) of the heat map's maximum, in original-image pixels."""
        y, x = np.unravel_index(int(self.heat.argmax()), self.heat.shape)
        return int(x), int(y)


def target_layer(model: nn.Module, size: int | None = None) -> nn.Module:
    """The head conv when the model has one, else the stage of the last `feature_info` entry. At
    an input `size` that leaves that map under MIN_CAM_SIDE cells a side (a 32 px model's is 1x1,
    whose heat map is one flat value), the last stage whose map is at least that fine."""
    if not hasattr(model, "feature_info"):  # an exported / int8 program: no layers to hook
        raise UserError("Grad-CAM needs the trainable fp32 model (weights or a run directory), "
                        "not an exported .pt2")
    info = model.feature_info
    if size is not None and math.ceil(size / info[-1]["reduction"]) < MIN_CAM_SIDE:
        fine = [f for f in info if math.ceil(size / f["reduction"]) >= MIN_CAM_SIDE] or info[:1]
        return model.stages[fine[-1]["stage"]]
    if not isinstance(model.head, nn.Identity):
        return model.head
    return model.stages[model.feature_info[-1]["stage"]]


def cam_input(image: Image.Image, model: nn.Module, size: int | None = None) -> torch.Tensor:
    from ..data import eval_transform
    from ..data.config import DataOverrides, resolve_data_config

    # the whole image, squashed, not a crop: the heat map covers what the user sees
    pre = resolve_data_config(model, flags=DataOverrides(eval_size=size, crop_pct=1.0,
                                                         crop_mode="squash"))
    device = next(model.parameters()).device  # the model's, on a GPU too
    return eval_transform(pre, pre.eval_size)(image).unsqueeze(0).to(device)


def grad_cam(model: nn.Module, image: Image.Image, class_index: int | None = None,
             size: int | None = None) -> CamResult:
    """Grad-CAM of `class_index` (default: the top class) for one RGB image."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if class_index is not None and not 0 <= class_index < model.num_classes:
        raise UserError(f"--class {class_index}: the model has classes 0..{model.num_classes - 1}")
    model.eval()
    x = cam_input(image, model, size)
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]
    k = int(probs.argmax()) if class_index is None else class_index
    with GradCAM(model=model, target_layers=[target_layer(model, x.shape[-1])]) as cam:
        small = cam(input_tensor=x, targets=[ClassifierOutputTarget(k)])[0]  # (size, size), [0, 1]
    heat = Image.fromarray(np.float32(small), mode="F").resize(image.size, Image.BILINEAR)
    return CamResult(np.clip(np.asarray(heat), 0.0, 1.0), k, float(probs[k]))


def overlay(image: Image.Image, result: CamResult) -> Image.Image:
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return Image.fromarray(show_cam_on_image(rgb, result.heat, use_rgb=True, image_weight=0.55))


def save_png(image: Image.Image, path: Path) -> Path:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path


def compare_figure(image: Image.Image, panels: list[tuple[str, CamResult]], path: Path,
                   title: str | None = None) -> Path:
    """One PNG: the image, then each model's overlay with its label (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(panels) + 1
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2 * image.height / image.width + 0.8))
    axes[0].imshow(image)
    axes[0].set_title("input", fontsize=9)
    for ax, (label, result) in zip(axes[1:], panels, strict=True):
        ax.imshow(overlay(image, result))
        ax.plot(*result.peak, marker="+", color="white", markersize=10)
        ax.set_title(label, fontsize=9)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path
