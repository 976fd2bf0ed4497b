"""Per-stage image transforms (torchvision.transforms.v2): train (random crop, flip, TF's
RandAugment at the papers' magnitude scale, optional fine-tuning cutout) and eval (resize + center
crop)."""

from __future__ import annotations

import math

import PIL.Image
import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from ..arch.preprocess import Preprocess
from ..errors import UserError

# RandAugment as TF's `distort_image_with_randaugment` (tensorflow/tpu and google/automl
# autoaugment.py, SPEC F.1), written on torchvision.transforms.v2's public API: each call draws
# `num_ops` of TF's 16 ops uniformly (with replacement) and always applies them, in order, at one
# fixed magnitude M. An op's argument is M / 10 of its value at TF's _MAX_LEVEL = 10, and M > 10
# extrapolates (V2 trains at up to 20..25); `randaug_argument` gives each op's value.
# Where torchvision's own RandAugment differs from TF, this follows TF: no Identity op; Invert,
# SolarizeAdd and Cutout are ops; the enhance factors are 0.1 + 1.8 * M/10 with no random sign;
# posterize keeps int(4 * M/10) bits (so a larger M is weaker, and M < 2.5 keeps none: a black
# image); solarize's threshold is int(256 * M/10) (weaker with M, a no-op from M = 10); translate
# is in absolute pixels (100 at M = 10 whatever the image size: small images lose more of
# themselves); geometric ops sample nearest and fill with grey 128, rotate turns about the centre
# and shear about the top-left corner. Known differences from TF that remain:
# - Contrast blends towards the mean of the grey image (PIL's semantics, torchvision's kernel);
#   TF's degenerate "mean" is the histogram's pixel count / 256 (tensorflow/tpu #825, #1057).
# - Posterize past M = 22.5: TF's shift goes negative (undefined); here 8 bits are kept (identity).
# - TF draws a per-op probability it never uses; nothing is drawn for it here.
# - The ops run torchvision's kernels for the input's type (PIL's for PIL images, as fast as
#   torchvision's RandAugment; tensor kernels for tensors), whose rounding differs from TF's and
#   from each other's: a few grey levels in Color and Contrast, the odd pixel on a rotated edge.
# Like TF's, it takes uint8 images: PIL images or uint8 tensors (plain or tv_tensors.Image).
RANDAUG_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "Color",
               "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY",
               "Cutout", "SolarizeAdd")
_MAX_LEVEL = 10.0
_TRANSLATE_PX, _CUTOUT_PX = 100.0, 40  # RandAugment's translate_const and cutout_const
_ARGUMENT = {  # op -> its argument at level M / 10 (TF's *_level_to_arg)
    "Rotate": lambda level: 30.0 * level,  # degrees
    "ShearX": lambda level: 0.3 * level, "ShearY": lambda level: 0.3 * level,  # shear factor
    "TranslateX": lambda level: _TRANSLATE_PX * level,  # pixels
    "TranslateY": lambda level: _TRANSLATE_PX * level,
    "Posterize": lambda level: min(8, int(4 * level)),  # bits kept
    "Solarize": lambda level: int(256 * level),  # pixels from this value up are inverted
    "SolarizeAdd": lambda level: int(110 * level),  # added to pixels below 128
    "Cutout": lambda level: int(_CUTOUT_PX * level),  # half-side (pixels)
    **dict.fromkeys(("Color", "Contrast", "Brightness", "Sharpness"),
                    lambda level: 1.8 * level + 0.1),  # blend factor (1: identity)
}
_SIGNED = frozenset(("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"))  # random sign
_ENHANCE = {"Color": F.adjust_saturation, "Contrast": F.adjust_contrast,
            "Brightness": F.adjust_brightness, "Sharpness": F.adjust_sharpness}
_PLAIN = {"AutoContrast": F.autocontrast, "Equalize": F.equalize, "Invert": F.invert}
_LEVELS = {  # per-pixel ops as TF writes them, on uint8 values v (applied as a lookup table)
    "Posterize": lambda v, bits: v >> (8 - bits) << (8 - bits),
    "Solarize": lambda v, threshold: v if v < threshold else 255 - v,
    "SolarizeAdd": lambda v, add: min(255, v + add) if v < 128 else v,
}


def randaug_argument(op: str, m: float) -> float | None:
    """The argument TF gives `op` at magnitude `m`, before any random sign (None: it takes none)."""
    if op not in RANDAUG_OPS:
        raise ValueError(f"unknown RandAugment op {op!r}; expected one of {RANDAUG_OPS}")
    fn = _ARGUMENT.get(op)
    return None if fn is None else fn(m / _MAX_LEVEL)


def _lookup(image, table: list[int]):
    if isinstance(image, PIL.Image.Image):
        return image.point(table * len(image.getbands()))
    return torch.tensor(table, dtype=torch.uint8, device=image.device)[image.long()]


class RandAugmentM(v2.Transform):
    """RandAugment with the papers' magnitude M (0..10 = TF's range, > 10 extrapolates) and TF's
    op set (see above); `ops` narrows the set drawn from. Random draws come from torch's
    generator, so a seed fixes the result. Only the image changes; other inputs pass through."""

    def __init__(self, num_ops: int = 2, m: float = 9.0,
                 interpolation: InterpolationMode = InterpolationMode.NEAREST, fill: int = 128,
                 ops: tuple[str, ...] = RANDAUG_OPS):
        super().__init__()
        if not (m >= 0 and math.isfinite(m)):
            raise UserError(f"RandAugment magnitude must be a finite number >= 0, got {m}")
        self.num_ops, self.m, self.interpolation, self.fill = num_ops, m, interpolation, fill
        self.ops = tuple(ops)
        self.arguments = {op: randaug_argument(op, m) for op in self.ops}

    def make_params(self, flat_inputs: list) -> dict:
        height, width = v2.query_size(flat_inputs)
        draws = []
        for _ in range(self.num_ops):
            op = self.ops[int(torch.randint(len(self.ops), ()))]
            arg = self.arguments[op]
            if op in _SIGNED and torch.rand(()) < 0.5:
                arg = -arg
            centre = ((int(torch.randint(height, ())), int(torch.randint(width, ())))
                      if op == "Cutout" else None)
            draws.append((op, arg, centre))
        return {"draws": draws}

    def transform(self, inpt, params: dict):
        if isinstance(inpt, tv_tensors.TVTensor) and not isinstance(inpt, tv_tensors.Image):
            return inpt  # boxes, masks: a classification transform leaves them alone
        if not isinstance(inpt, PIL.Image.Image) and inpt.dtype != torch.uint8:
            raise TypeError(f"RandAugmentM takes uint8 images (PIL or uint8 tensors), as TF's "
                            f"RandAugment does; got a {inpt.dtype} tensor")
        out = inpt
        for op, arg, centre in params["draws"]:
            out = self._apply(out, op, arg, centre)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.Image) else out

    def _apply(self, x, op: str, arg, centre):
        fill = [float(self.fill)]
        if op in _PLAIN:
            return _PLAIN[op](x)
        if op in _ENHANCE:
            return _ENHANCE[op](x, arg)
        if op in _LEVELS:
            return _lookup(x, [_LEVELS[op](v, arg) for v in range(256)])
        if op == "Rotate":
            return F.rotate(x, arg, interpolation=self.interpolation, fill=fill)
        if op in ("ShearX", "ShearY"):
            angle = math.degrees(math.atan(arg))
            return F.affine(x, angle=0.0, translate=[0.0, 0.0], scale=1.0,
                            shear=[angle, 0.0] if op == "ShearX" else [0.0, angle],
                            interpolation=self.interpolation, fill=fill, center=[0.0, 0.0])
        if op in ("TranslateX", "TranslateY"):
            return F.affine(x, angle=0.0, translate=[arg, 0.0] if op == "TranslateX" else [0.0, arg],
                            scale=1.0, shear=[0.0, 0.0], interpolation=self.interpolation, fill=fill)
        if op == "Cutout":  # a square of half-side `arg` around `centre`, clipped at the borders
            (cy, cx), (height, width) = centre, F.get_size(x)
            top, left = max(0, cy - arg), max(0, cx - arg)
            bottom, right = min(height, cy + arg), min(width, cx + arg)
            return F.erase(x, top, left, bottom - top, right - left,
                           torch.tensor(self.fill, dtype=torch.uint8))
        raise AssertionError(op)

    def extra_repr(self) -> str:
        return f"num_ops={self.num_ops}, m={self.m:g}, ops={len(self.ops)}"


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
