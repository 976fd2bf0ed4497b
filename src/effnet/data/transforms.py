"""Per-stage image transforms (torchvision.transforms.v2): train (random crop, flip, RandAugment
with the papers' magnitude scale, optional fine-tuning cutout) and eval (resize + center crop)."""

from __future__ import annotations

import math

import torch
from torchvision.transforms import InterpolationMode, v2

from ..arch.preprocess import Preprocess
from ..errors import UserError

# RandAugment magnitude. The papers' M follows TF's autoaugment.py: op strength = M / 10 * (value at
# _MAX_LEVEL = 10), and M > 10 extrapolates (V2 trains at 15..25). torchvision's RandAugment picks
# a magnitude index in [0, num_magnitude_bins); with its default 31 bins, index 30 gives shear 0.3,
# rotate 30 deg, enhance 1 +- 0.9, translate 150/331 of the width (~100 px at 224, TF's 100 px)
# and posterize to 4 bits: exactly TF's values at M = 10. So M maps to index round(3 * M), and M > 10
# grows the number of bins while keeping each bin's step (value at M = 10) / 30, which extends every
# op linearly past its M = 10 value as TF does (torchvision alone would stop at its top bin).
# M is thus quantised to thirds. Limits where extrapolation breaks an op: enhance factors stay
# >= 0.1 (timm's choice), posterize keeps >= 1 bit, solarize's threshold stops at 0.
# Known differences from TF's op set (SPEC F.1), kept as torchvision has them: Identity is one of
# the 14 ops and Invert, SolarizeAdd and Cutout are not; enhance ops are 1 +- x with a random sign
# (TF: 0.1 + 1.8 * M/10, unsigned); solarize strengthens with M (TF's weakens, a no-op at M >= 10);
# translate is relative to the image width (TF: absolute pixels). Fill is TF's grey 128.
BINS_PER_M = 3
_TOP = 30  # index of torchvision's last default bin, which is M = 10


def _grow(top: float):
    return lambda num_bins, height, width: torch.linspace(
        0.0, top * (num_bins - 1) / _TOP, num_bins)


def _grow_translate(side: str):
    def magnitudes(num_bins, height, width):
        extent = width if side == "x" else height
        return torch.linspace(0.0, 150.0 / 331.0 * extent * (num_bins - 1) / _TOP, num_bins)
    return magnitudes


class RandAugmentM(v2.RandAugment):
    """torchvision's RandAugment driven by the papers' magnitude M (0..10 = TF's range, > 10 ok)."""

    _AUGMENTATION_SPACE = {
        **v2.RandAugment._AUGMENTATION_SPACE,
        "ShearX": (_grow(0.3), True),
        "ShearY": (_grow(0.3), True),
        "TranslateX": (_grow_translate("x"), True),
        "TranslateY": (_grow_translate("y"), True),
        "Rotate": (_grow(30.0), True),
        "Brightness": (_grow(0.9), True),
        "Color": (_grow(0.9), True),
        "Contrast": (_grow(0.9), True),
        "Sharpness": (_grow(0.9), True),
        "Posterize": (lambda num_bins, height, width: (
            8 - torch.arange(num_bins) / (_TOP / 4)).round().clamp(min=1).int(), False),
        "Solarize": (lambda num_bins, height, width: torch.linspace(
            1.0, 1.0 - (num_bins - 1) / _TOP, num_bins).clamp(min=0.0), False),
    }
    _ENHANCE = frozenset(("Brightness", "Color", "Contrast", "Sharpness"))

    def __init__(self, num_ops: int = 2, m: float = 9.0,
                 interpolation: InterpolationMode = InterpolationMode.NEAREST, fill=128):
        if m < 0:
            raise UserError(f"RandAugment magnitude must be >= 0, got {m}")
        index = round(BINS_PER_M * m)
        super().__init__(num_ops=num_ops, magnitude=index,
                         num_magnitude_bins=max(_TOP + 1, index + 1),
                         interpolation=interpolation, fill=fill)
        self.m = m

    def _apply_image_or_video_transform(self, image, transform_id, magnitude, interpolation, fill):
        if transform_id in self._ENHANCE:
            magnitude = max(magnitude, -0.9)  # factor 1 + magnitude must stay positive
        return super()._apply_image_or_video_transform(image, transform_id, magnitude,
                                                       interpolation, fill)


class Cutout(torch.nn.Module):
    """V2 fine-tuning cutout (SPEC D.3, F.3b) on a normalised (C, H, W) tensor: one square of
    half-side `half` centred uniformly anywhere in the image, clipped at the borders, filled with
    per-element uniform [0, 1) noise, applied to every image.

    torchvision's RandomErasing differs: it draws the box's area and aspect ratio at random, keeps
    the box wholly inside the image, fires with a probability, and its value="random" fills with
    normal N(0, 1) noise."""

    def __init__(self, half: int):
        super().__init__()
        self.half = int(half)

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right), bottom/right exclusive, for a freshly drawn centre."""
        cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
        return (max(0, cy - self.half), min(height, cy + self.half),
                max(0, cx - self.half), min(width, cx + self.half))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        top, bottom, left, right = self.box(*image.shape[-2:])
        out = image.clone()
        region = out[..., top:bottom, left:right]
        region.copy_(torch.rand(region.shape, dtype=out.dtype, device=out.device))
        return out

    def extra_repr(self) -> str:
        return f"half={self.half}"


class Pipeline(v2.Compose):
    """v2.Compose that knows the short side (px) its input needs, `decode_size`: a JPEG decoded
    at that size instead of in full gives nearly the same output (images.decoding_for)."""

    def __init__(self, transforms: list, decode_size: int | None):
        super().__init__(transforms)
        self.decode_size = decode_size


def _interpolation(name: str) -> InterpolationMode:
    try:
        return InterpolationMode(name.lower())
    except ValueError:
        raise UserError(f"unknown interpolation {name!r} (bilinear, bicubic, nearest)") from None


def _to_normalised(pre: Preprocess) -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(pre.mean), list(pre.std)), v2.ToPureTensor()]


def train_transform(pre: Preprocess, size: int, *, randaug_magnitude: float | None = None,
                    randaug_ops: int = 2, hflip: bool = True,
                    scale: tuple[float, float] | None = (0.08, 1.0),
                    cutout: bool = False) -> Pipeline:
    """PIL RGB image -> float32 (3, size, size) tensor normalised by pre.mean/std.

    Random resized crop (area in `scale`, aspect 3/4..4/3, pre.interpolation; scale=None means a
    plain resize to size x size, the V2 fine-tuning pipeline), horizontal flip, RandAugment at
    magnitude M (see RandAugmentM) when randaug_magnitude is given, and cutout of half-side
    size // 4 when cutout=True."""
    interp = _interpolation(pre.interpolation)
    if scale is None:
        steps = [v2.Resize((size, size), interpolation=interp, antialias=True)]
        decode = size
    else:
        steps = [v2.RandomResizedCrop(size, scale=tuple(scale), interpolation=interp,
                                      antialias=True)]
        # Crops are drawn from the whole image, so its decode must hold the pixels of the smallest
        # one (area scale[0], aspect 3/4) at `size` a side: a short side of size / sqrt(3/4 *
        # scale[0]), 4.1 x size at the papers' 0.08. A large photo still decodes at 1/2..1/8.
        decode = math.ceil(size / math.sqrt(0.75 * scale[0])) if scale[0] > 0 else None
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    if randaug_magnitude is not None:
        steps.append(RandAugmentM(randaug_ops, randaug_magnitude))
    steps += _to_normalised(pre)
    if cutout:
        steps.append(Cutout(size // 4))
    return Pipeline(steps, decode)


def eval_transform(pre: Preprocess, size: int) -> Pipeline:
    """PIL RGB image -> float32 (3, size, size) tensor, as timm evaluates: resize to
    floor(size / crop_pct) (the short side for crop_mode "center", both sides for "squash", as
    V2's eval at >= 320 px, SPEC C.7) and center crop size."""
    interp = _interpolation(pre.interpolation)
    scale = math.floor(size / pre.crop_pct)
    steps = [v2.Resize((scale, scale) if pre.crop_mode == "squash" else scale, interpolation=interp,
                       antialias=True), v2.CenterCrop(size)]
    return Pipeline(steps + _to_normalised(pre), decode_size=scale)  # resized to `scale` first
