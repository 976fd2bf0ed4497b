"""Architectures as data: exact parameter counts, rounding rules, compound scaling."""

import math

import pytest
import torch

from effnet import build, compound, create_model, get_spec, scale, scale_compound
from effnet.arch.conventions import default_preprocess
from effnet.arch.spec import Rounding, round_channels, round_repeats
from effnet.arch.zoo import VARIANTS

# SPEC C.8 (1000 classes): trainable parameters, BN gamma/beta counted, running stats not
REFERENCE_PARAMS = {
    "efficientnet_b0": 5_288_548, "efficientnet_b1": 7_794_184, "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232, "efficientnet_b4": 19_341_616, "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704, "efficientnet_b7": 66_347_960, "efficientnet_b8": 87_413_142,
    "efficientnet_l2": 480_309_308,
    "efficientnet_lite0": 4_652_008, "efficientnet_lite1": 5_416_680,
    "efficientnet_lite2": 6_092_072, "efficientnet_lite3": 8_197_096,
    "efficientnet_lite4": 13_006_568,
    "efficientnetv2_b0": 7_139_704, "efficientnetv2_b1": 8_141_052, "efficientnetv2_b2": 10_096_086,
    "efficientnetv2_b3": 14_358_406, "efficientnetv2_s": 21_458_488, "efficientnetv2_m": 54_139_356,
    "efficientnetv2_l": 118_515_272, "efficientnetv2_xl": 208_119_808,
}
# V1 Table 3 baselines, built from stage rows (torchvision's counts)
BASELINE_PARAMS = {"mobilenetv2_100": 3_504_872, "resnet50": 25_557_032}


def meta_params(name: str) -> int:
    with torch.device("meta"):  # counts L2's 480 M parameters without allocating them
        model = create_model(name)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_parameter_counts_match_reference_to_the_unit(name):
    assert meta_params(name) == REFERENCE_PARAMS[name]
    assert meta_params("tf_" + name) == REFERENCE_PARAMS[name]


@pytest.mark.parametrize("name", sorted(BASELINE_PARAMS))
def test_baselines_from_rows_match_torchvision_and_scale(name):
    assert meta_params(name) == BASELINE_PARAMS[name]
    spec, _ = scale_compound(get_spec(name), 1.0)
    with torch.device("meta"):
        model = build(spec)
    assert sum(p.numel() for p in model.parameters()) > 1.3 * BASELINE_PARAMS[name]


def test_every_variant_has_a_reference_count():
    assert set(VARIANTS) == set(REFERENCE_PARAMS) | set(BASELINE_PARAMS)


# SPEC A.5 / B / C.2 derived stage layouts: (out, repeats) per stage, stem, head
@pytest.mark.parametrize("name, stem, stages, head", [
    ("efficientnet_b3", 40, [(24, 2), (32, 3), (48, 3), (96, 5), (136, 5), (232, 6), (384, 2)], 1536),
    ("efficientnet_b7", 64, [(32, 4), (48, 7), (80, 7), (160, 10), (224, 10), (384, 13), (640, 4)], 2560),
    ("efficientnet_l2", 136, [(72, 6), (104, 11), (176, 11), (344, 16), (480, 16), (824, 22), (1376, 6)], 5504),
    ("efficientnet_lite4", 32, [(24, 1), (32, 4), (56, 4), (112, 6), (160, 6), (272, 8), (448, 1)], 1280),
    ("efficientnetv2_b3", 40, [(16, 2), (40, 3), (56, 3), (112, 5), (136, 7), (232, 12)], 1536),
])
def test_scaled_stage_tables(name, stem, stages, head):
    spec = get_spec(name)
    assert spec.stem.out == stem
    assert [(s.out, s.repeats) for s in spec.stages] == stages
    assert spec.head == head


def test_ten_percent_guard_only_in_v1_rounding():
    v1, v2 = Rounding(ten_percent_guard=True), Rounding(ten_percent_guard=False)
    assert round_channels(16, 1.2, v1) == 24  # 19.2 -> 16 < 0.9 * 19.2, so one more divisor
    assert round_channels(16, 1.2, v2) == 16
    assert round_channels(40, 1.1, v1) == 48  # 44 is an exact half: rounds up
    assert round_channels(40, 4.3, v1) == 176
    assert round_channels(4, 1.5, v1) == 8  # never below the divisor
    assert round_repeats(3, 1.1) == 4 and round_repeats(1, 3.1) == 4


def test_block_counts_and_resolutions():
    counts = {n: get_spec(n).num_blocks for n in ("efficientnet_b0", "efficientnet_b7",
                                                  "efficientnetv2_s", "efficientnetv2_xl")}
    assert counts == {"efficientnet_b0": 16, "efficientnet_b7": 55, "efficientnetv2_s": 40,
                      "efficientnetv2_xl": 100}
    pre = default_preprocess("tf_efficientnetv2_s")
    assert (pre.train_size, pre.eval_size, pre.crop_pct, pre.mean) == (300, 384, 1.0, (0.5, 0.5, 0.5))
    assert default_preprocess("efficientnet_lite3").eval_size == 280


def test_compound_multipliers_follow_the_paper_rule():
    m = compound(1.0)
    assert (m.depth, m.width, m.resolution) == (1.2, 1.1, 1.15)
    assert m.flops_factor == pytest.approx(1.2 * 1.1**2 * 1.15**2)
    m2 = compound(2.5, 1.3, 1.05, 1.1)
    assert m2.depth == pytest.approx(1.3**2.5) and m2.resolution == pytest.approx(1.1**2.5)
    with pytest.raises(ValueError):
        compound(1, alpha=0.9)


def test_scale_compound_b0_phi1():
    spec, m = scale_compound(get_spec("efficientnet_b0"), 1.0)
    assert m.scaled_size(224) == 258  # 224 * 1.15 = 257.6
    assert [s.repeats for s in spec.stages] == [1, 2, 2, 4, 4, 5, 1]  # nearest of 1.2 x (1,2,2,3,3,4,1)
    ceil, _ = scale_compound(get_spec("efficientnet_b0"), 1.0, depth_rounding="ceil")
    assert [s.repeats for s in ceil.stages] == [math.ceil(1.2 * r) for r in (1, 2, 2, 3, 3, 4, 1)]
    assert spec.stem.out == 32 and spec.head == 1408  # 35.2 rounds to 32, within the 10 % guard
    assert spec.name.endswith("phi1")


def test_lite_scaling_keeps_stem_head_and_end_repeats():
    spec = scale(get_spec("efficientnet_lite0"), width=2.0, depth=2.0)
    assert spec.stem.out == 32 and spec.head == 1280
    assert spec.stages[0].repeats == 1 and spec.stages[-1].repeats == 1
    assert spec.stages[1].repeats == 4 and spec.stages[1].out == 48


def test_spec_table_prints_paper_rows():
    table = get_spec("efficientnet_b0").table()
    lines = table.splitlines()
    assert len(lines) == 2 + 1 + 7 + 1  # header, rule, stem, 7 stages, head
    assert "MBConv6 k5x5" in table and "112x112" in table and "7x7" in lines[-1]


def test_each_block_kind_says_what_its_expansion_is_a_ratio_of():
    from dataclasses import replace

    from effnet.arch.spec import BLOCK_KINDS, BlockKind, Stage

    assert {k: b.expand_ratio for k, b in BLOCK_KINDS.items()} == {
        "mbconv": "mid/in", "fused": "mid/in", "bottleneck": "out/mid"}
    # the rows keep the papers' numbers: MBConv6 16 -> 24 is 96 wide inside, ResNet's 4 is out/mid
    assert BLOCK_KINDS["mbconv"].mid_width(16, 24, 6) == 96
    assert BLOCK_KINDS["bottleneck"].mid_width(64, 256, 4) == 64
    resnet = build(get_spec("resnet50"))
    assert [s[0].conv.conv.out_channels for s in resnet.stages] == [64, 128, 256, 512]
    assert get_spec("resnet50").table().splitlines()[0].split()[4] == "e=out/mid"
    b0 = get_spec("efficientnet_b0")
    assert b0.table().splitlines()[0].split()[4] == "e=mid/in"
    mixed = b0.with_(stages=(*b0.stages, replace(get_spec("resnet50").stages[0], out=320)))
    header, *_, legend = mixed.table().splitlines()
    assert header.split()[4] == "e" and legend == "e: mid/in for MBConv; out/mid for Bottleneck"
    with pytest.raises(ValueError, match="expand_ratio"):
        BlockKind("odd", "Odd", "O", expand_ratio="in/out")
    with pytest.raises(ValueError, match="unknown block kind"):
        Stage("odd", 3, 1, 1, 8, 1)


def test_stem_kind_is_checked_and_resnet_stem_pools():
    from effnet.arch.spec import Stem

    with pytest.raises(ValueError, match="unknown stem kind 'rsnet'"):
        Stem(64, kind="rsnet")
    assert Stem(32).pool_stride == 1 and Stem(64, 7, kind="resnet").pool_stride == 2
    # 224 -> conv/2 -> pool/2: the first stage sees 56x56 as in the ResNet paper
    assert "56x56" in get_spec("resnet50").table().splitlines()[3]
