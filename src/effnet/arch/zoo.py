"""The paper tables, as data rows. Hold this file beside V1 Table 1, the Lite README and V2 Table 4.

Every published variant is a base table plus one coefficient row; `VARIANTS` maps a model name
(timm's names) to its `NetSpec`, and `PREPROCESS` beside it to the preprocessing the paper trained
and evaluated that variant with (the architecture default of its data config; weights and recipes
override it, see effnet.data.config). A `tf_` name is the same network with TensorFlow padding, BN
settings and preprocessing, for TF-trained weights (effnet.arch.conventions decides those).
"""

from __future__ import annotations

from dataclasses import replace

from .preprocess import HALF, IMAGENET_MEAN, IMAGENET_STD, Preprocess, crop_pct_tpu
from .scaling import scale
from .spec import NetSpec, Rounding, Stage, Stem

# --- EfficientNet-B0 (V1 Table 1; TPU _DEFAULT_BLOCKS_ARGS) -----------------------------------
B0_STAGES = (
    #     block     k  s  e  out  layers  SE
    Stage("mbconv", 3, 1, 1, 16,  1, se=0.25),
    Stage("mbconv", 3, 2, 6, 24,  2, se=0.25),
    Stage("mbconv", 5, 2, 6, 40,  2, se=0.25),
    Stage("mbconv", 3, 2, 6, 80,  3, se=0.25),
    Stage("mbconv", 5, 1, 6, 112, 3, se=0.25),
    Stage("mbconv", 5, 2, 6, 192, 4, se=0.25),
    Stage("mbconv", 3, 1, 6, 320, 1, se=0.25),
)

# (width, depth, resolution, dropout): TPU efficientnet_builder.efficientnet_params (SPEC A.5)
V1_COEFFICIENTS = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
    "b8": (2.2, 3.6, 672, 0.5),  # AdvProp
    "l2": (4.3, 5.3, 800, 0.5),  # NoisyStudent
}

# --- EfficientNet-Lite (TPU lite/efficientnet_lite_builder.py, SPEC B) ------------------------
LITE_COEFFICIENTS = {
    "lite0": (1.0, 1.0, 224, 0.2),
    "lite1": (1.0, 1.1, 240, 0.2),
    "lite2": (1.1, 1.2, 260, 0.3),
    "lite3": (1.2, 1.4, 280, 0.3),
    "lite4": (1.4, 1.8, 300, 0.3),
}

# --- EfficientNetV2 (V2 Table 4; AML effnetv2_configs.py) -------------------------------------
V2_BASE_STAGES = (  # the base that B0-B3 scale
    Stage("fused",  3, 1, 1, 16,  1),
    Stage("fused",  3, 2, 4, 32,  2),
    Stage("fused",  3, 2, 4, 48,  2),
    Stage("mbconv", 3, 2, 4, 96,  3, se=0.25),
    Stage("mbconv", 3, 1, 6, 112, 5, se=0.25),
    Stage("mbconv", 3, 2, 6, 192, 8, se=0.25),
)
V2_S_STAGES = (
    Stage("fused",  3, 1, 1, 24,  2),
    Stage("fused",  3, 2, 4, 48,  4),
    Stage("fused",  3, 2, 4, 64,  4),
    Stage("mbconv", 3, 2, 4, 128, 6,  se=0.25),
    Stage("mbconv", 3, 1, 6, 160, 9,  se=0.25),
    Stage("mbconv", 3, 2, 6, 256, 15, se=0.25),
)
V2_M_STAGES = (
    Stage("fused",  3, 1, 1, 24,  3),
    Stage("fused",  3, 2, 4, 48,  5),
    Stage("fused",  3, 2, 4, 80,  5),
    Stage("mbconv", 3, 2, 4, 160, 7,  se=0.25),
    Stage("mbconv", 3, 1, 6, 176, 14, se=0.25),
    Stage("mbconv", 3, 2, 6, 304, 18, se=0.25),
    Stage("mbconv", 3, 1, 6, 512, 5,  se=0.25),
)
V2_L_STAGES = (
    Stage("fused",  3, 1, 1, 32,  4),
    Stage("fused",  3, 2, 4, 64,  7),
    Stage("fused",  3, 2, 4, 96,  7),
    Stage("mbconv", 3, 2, 4, 192, 10, se=0.25),
    Stage("mbconv", 3, 1, 6, 224, 19, se=0.25),
    Stage("mbconv", 3, 2, 6, 384, 25, se=0.25),
    Stage("mbconv", 3, 1, 6, 640, 7,  se=0.25),
)
V2_XL_STAGES = (
    Stage("fused",  3, 1, 1, 32,  4),
    Stage("fused",  3, 2, 4, 64,  8),
    Stage("fused",  3, 2, 4, 96,  8),
    Stage("mbconv", 3, 2, 4, 192, 16, se=0.25),
    Stage("mbconv", 3, 1, 6, 256, 24, se=0.25),
    Stage("mbconv", 3, 2, 6, 512, 32, se=0.25),
    Stage("mbconv", 3, 1, 6, 640, 8,  se=0.25),
)

# (stem, stages, train size, eval size, dropout): AML efficientnetv2_params (SPEC C.3)
V2_TABLES = {
    "s":  (24, V2_S_STAGES,  300, 384, 0.2),
    "m":  (24, V2_M_STAGES,  384, 480, 0.3),
    "l":  (32, V2_L_STAGES,  384, 480, 0.4),
    "xl": (32, V2_XL_STAGES, 384, 512, 0.4),
}
# (width, depth, train size, eval size, dropout): B0-B3 are the V2 base scaled with V1's (w, d)
V2_COEFFICIENTS = {
    "b0": (1.0, 1.0, 192, 224, 0.2),
    "b1": (1.0, 1.1, 192, 240, 0.2),
    "b2": (1.1, 1.2, 208, 260, 0.3),
    "b3": (1.2, 1.4, 240, 300, 0.3),
}

# --- Other baselines for compound scaling (V1 Table 3) ---------------------------------------
MOBILENET_V2_STAGES = (  # MobileNetV2 Table 2: MBConv without SE, ReLU6 (torchvision's layout)
    Stage("mbconv", 3, 1, 1, 16,  1),
    Stage("mbconv", 3, 2, 6, 24,  2),
    Stage("mbconv", 3, 2, 6, 32,  3),
    Stage("mbconv", 3, 2, 6, 64,  4),
    Stage("mbconv", 3, 1, 6, 96,  3),
    Stage("mbconv", 3, 2, 6, 160, 3),
    Stage("mbconv", 3, 1, 6, 320, 1),
)
RESNET50_STAGES = (  # ResNet-50 (v1.5: stride on the 3x3); e = out/mid, 4 x bottleneck width
    Stage("bottleneck", 3, 1, 4, 256,  3),
    Stage("bottleneck", 3, 2, 4, 512,  4),
    Stage("bottleneck", 3, 2, 4, 1024, 6),
    Stage("bottleneck", 3, 2, 4, 2048, 3),
)

V1_ROUNDING = Rounding(ten_percent_guard=True)
LITE_ROUNDING = Rounding(ten_percent_guard=True, fixed_stem_head=True, fixed_end_repeats=True)
V2_ROUNDING = Rounding(ten_percent_guard=False)


def v1_base() -> NetSpec:
    return NetSpec("efficientnet_b0", Stem(32), B0_STAGES, head=1280, act="silu", rounding=V1_ROUNDING)


def lite_base() -> NetSpec:
    no_se = tuple(replace(s, se=0.0) for s in B0_STAGES)
    return NetSpec("efficientnet_lite0", Stem(32), no_se, head=1280, act="relu6",
                   rounding=LITE_ROUNDING)


def v2_base() -> NetSpec:
    return NetSpec("efficientnetv2_b0", Stem(32), V2_BASE_STAGES, head=1280, act="silu",
                   rounding=V2_ROUNDING)


def mobilenet_v2() -> NetSpec:
    return NetSpec("mobilenetv2_100", Stem(32), MOBILENET_V2_STAGES, head=1280, act="relu6",
                   dropout=0.2, drop_path=0.0, rounding=V1_ROUNDING)


def resnet50() -> NetSpec:
    return NetSpec("resnet50", Stem(64, kernel=7, kind="resnet"), RESNET50_STAGES, head=0, act="relu",
                   dropout=0.0, drop_path=0.0, rounding=V1_ROUNDING)


def _build_registry() -> dict[str, NetSpec]:
    reg: dict[str, NetSpec] = {}
    for key, (w, d, _, drop) in V1_COEFFICIENTS.items():
        reg[f"efficientnet_{key}"] = scale(v1_base(), width=w, depth=d, dropout=drop,
                                           name=f"efficientnet_{key}")
    for key, (w, d, _, drop) in LITE_COEFFICIENTS.items():
        reg[f"efficientnet_{key}"] = scale(lite_base(), width=w, depth=d, dropout=drop,
                                           name=f"efficientnet_{key}")
    for key, (stem, stages, _, _, drop) in V2_TABLES.items():
        reg[f"efficientnetv2_{key}"] = NetSpec(f"efficientnetv2_{key}", Stem(stem), stages, head=1280,
                                               act="silu", dropout=drop, rounding=V2_ROUNDING)
    for key, (w, d, _, _, drop) in V2_COEFFICIENTS.items():
        reg[f"efficientnetv2_{key}"] = scale(v2_base(), width=w, depth=d, dropout=drop,
                                             name=f"efficientnetv2_{key}")
    reg["mobilenetv2_100"] = mobilenet_v2()
    reg["resnet50"] = resnet50()
    return reg


VARIANTS: dict[str, NetSpec] = _build_registry()


# --- The papers' preprocessing per variant (TPU preprocessing.py, AML V2; SPEC A.8, B, C.7) --------
def _v2_eval_crop(size: int) -> float:
    """AML V2 eval: below 320 px a size/(size+32) center crop, from 320 px a plain resize."""
    return 1.0 if size >= 320 else crop_pct_tpu(size)


def _build_preprocess() -> dict[str, Preprocess]:
    pre: dict[str, Preprocess] = {}
    for key, (_, _, res, _) in V1_COEFFICIENTS.items():
        pre[f"efficientnet_{key}"] = Preprocess(res, res, crop_pct=crop_pct_tpu(res))
    for key, (_, _, res, _) in LITE_COEFFICIENTS.items():
        pre[f"efficientnet_{key}"] = Preprocess(res, res, crop_pct=crop_pct_tpu(res),
                                                interpolation="bilinear", mean=HALF, std=HALF)
    for key, (_, _, train, evl, _) in V2_TABLES.items():
        pre[f"efficientnetv2_{key}"] = Preprocess(
            train, evl, crop_pct=_v2_eval_crop(evl), interpolation="bilinear", mean=HALF, std=HALF,
            crop_mode="squash" if evl >= 320 else "center")
    for key, (_, _, train, evl, _) in V2_COEFFICIENTS.items():
        # B0-B3 use the V1 legacy pipeline "for fair comparison to EfficientNetV1" (SPEC C.7)
        pre[f"efficientnetv2_{key}"] = Preprocess(train, evl, crop_pct=crop_pct_tpu(evl),
                                                  mean=IMAGENET_MEAN, std=IMAGENET_STD)
    for name in ("mobilenetv2_100", "resnet50"):  # torchvision's baselines
        pre[name] = Preprocess(224, 224, interpolation="bilinear")
    return pre


PREPROCESS: dict[str, Preprocess] = _build_preprocess()
