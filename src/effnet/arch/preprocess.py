"""What a model's weights expect of an image: sizes, crop, interpolation, normalisation.

It belongs to the weights, not to the architecture (the same network trained by timm, by
torchvision or in TensorFlow wants different inputs), so it rides on the model config
(`effnet.arch.config.ModelConfig.preprocess`, as timm's `pretrained_cfg`) and is resolved for use
in one place, `effnet.data.config.resolve_data_config`. Pure data, like the rest of `arch`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)  # (x - 0.5) / 0.5: inputs in [-1, 1], as TF's V2 and Lite pipelines
CROP_MODES = ("center", "squash")


@dataclass(frozen=True)
class Preprocess:
    """What a model expects of an image (used by effnet.data and predict)."""

    train_size: int
    eval_size: int
    crop_pct: float = 0.875  # eval: resize short side to eval_size / crop_pct, center crop
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # eval: "center" keeps the aspect ratio (resize the short side); "squash" resizes both sides to
    # eval_size / crop_pct first, as V2's eval at >= 320 px (SPEC C.7) and timm's crop_mode do
    crop_mode: str = "center"

    def __post_init__(self) -> None:
        if self.crop_mode not in CROP_MODES:
            raise ValueError(f"unknown crop_mode {self.crop_mode!r}; expected one of {CROP_MODES}")

    def at_eval_size(self, size: int) -> Preprocess:
        """The same pipeline at another eval size, the train size keeping its ratio to it (V2
        trains below its eval size): a compound-scaled network's default at its scaled size."""
        return replace(self, eval_size=size, train_size=round(size * self.train_size / self.eval_size))


DEFAULT_PREPROCESS = Preprocess(224, 224)  # when nothing says otherwise: ImageNet at 224 px


CROP_PADDING = 32  # TPU preprocessing.py: the eval crop is padded by a fixed 32 px at every size


def crop_pct_tpu(size: int) -> float:
    """TPU eval crop: the center size/(size + 32) of the short side (B0@224: 0.875, B3@300: 0.904,
    B7@600: 0.949), as timm's tf_ configs say."""
    return size / (size + CROP_PADDING)


def preprocess_to_dict(pre: Preprocess) -> dict:
    return asdict(pre)


def preprocess_from_dict(d: dict) -> Preprocess:
    """The value `preprocess_to_dict` wrote, or one from an older file."""
    pre = dict(d)
    pre["mean"], pre["std"] = tuple(pre["mean"]), tuple(pre["std"])
    if "crop_mode" not in pre:  # written before crop_mode existed: crop_pct >= 1 meant squash
        pre["crop_mode"] = "squash" if pre["crop_pct"] >= 1.0 else "center"
    return Preprocess(**pre)
