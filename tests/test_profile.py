"""Parameter and MAC counts against the SPEC C.8 totals; profile() memory and timing; BN folding."""

import pytest
import torch
from torch import nn

from effnet import create_model, get_spec
from effnet.errors import UserError
from effnet.tools.fuse import fuse_conv_bn
from effnet.tools.profile import count_macs, count_params, format_profile, profile

# SPEC C.8, "Exact totals (derived)": 1000 classes
PARAMS = {
    "efficientnet_b0": 5_288_548,
    "efficientnet_b3": 12_233_232,
    "efficientnet_lite0": 4_652_008,
    "efficientnetv2_b0": 7_139_704,
    "efficientnetv2_s": 21_458_488,
    "efficientnet_l2": 480_309_308,
    "efficientnetv2_xl": 208_119_808,
}
MACS = {
    "efficientnet_b0": (224, 385_814_752),
    "efficientnet_b3": (300, 1_827_141_392),
    "efficientnet_b7": (600, 37_745_884_192),
    "efficientnet_lite0": (224, 385_187_552),
    "efficientnetv2_b0": (224, 718_086_176),
    "efficientnetv2_s": (384, 8_365_617_152),
    "efficientnetv2_m": (480, 24_582_460_384),
}


@pytest.mark.parametrize("name", PARAMS)
def test_params_match_reference_without_allocating(name):
    # names and specs are built on the meta device: L2's 480M parameters cost no memory
    assert count_params(name) == PARAMS[name]
    assert count_params(get_spec(name)) == PARAMS[name]


def test_params_of_a_real_model_follow_its_head():
    model = create_model("efficientnet_b0", num_classes=10)
    assert count_params(model) == PARAMS["efficientnet_b0"] - 1280 * 990 - 990
    model.classifier.weight.requires_grad_(False)  # frozen parameters are not trainable
    assert count_params(model) == PARAMS["efficientnet_b0"] - 1280 * 1000 - 990


@pytest.mark.parametrize("name", MACS)
def test_macs_match_reference_exactly(name):
    size, ref = MACS[name]
    assert count_macs(name, size) == ref


def test_macs_of_a_real_model_leave_it_untouched():
    model = create_model("efficientnet_b0").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert count_macs(model, 224) == MACS["efficientnet_b0"][1]
    assert model.training and next(model.parameters()).device.type == "cpu"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_macs_follow_padding_size_and_channels():
    ref = MACS["efficientnet_b0"][1]
    # TF 'same' padding pads the input but gives the same output sizes, so the same MACs
    assert count_macs("tf_efficientnet_b0", 224) == ref
    # a non-square input: every conv scales with the output area
    assert count_macs("efficientnet_b0", (224, 448)) > 1.9 * ref
    gray = create_model("efficientnet_b0", in_chans=1)
    stem_rgb_minus_gray = 112 * 112 * 9 * 32 * 2  # stem: 3 -> 1 input channels
    assert count_macs(gray, 224) == ref - stem_rgb_minus_gray


def test_profile_reports_sane_numbers_and_memory_grows_with_batch():
    model = create_model("efficientnet_b0")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small = profile(model, 64, 1, steps=1, warmup=0)
    big = profile(model, 64, 4, steps=0)
    assert small["params"] == PARAMS["efficientnet_b0"]
    assert small["macs"] == count_macs(model, 64) and small["gmacs"] == pytest.approx(small["macs"] / 1e9)
    assert small["forward_ms"] > 0 and small["train_step_ms"] > 0 and small["train_img_s"] > 0
    assert "forward_ms" not in big
    # the gradients (4 bytes per parameter) are part of the peak; saved activations scale with batch
    assert small["peak_bytes"] > 4 * PARAMS["efficientnet_b0"]
    assert big["peak_bytes"] > small["peak_bytes"]
    assert 3.5 * small["saved_bytes"] < big["saved_bytes"] < 4.5 * small["saved_bytes"]
    # the train steps ran on a copy: the caller's weights and BN statistics are unchanged
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    text = format_profile(small)
    assert "5,288,548" in text and "train step" in text


def test_profile_channels_last_and_autocast_and_bad_values():
    r = profile("efficientnet_lite0", 32, 2, channels_last=True, amp_dtype="bf16", steps=0)
    assert r["amp_dtype"] == "bfloat16" and r["channels_last"] and r["peak_bytes"] > 0
    with pytest.raises(UserError, match="batch"):
        profile("efficientnet_b0", 32, 0)
    with pytest.raises(UserError, match="autocast"):
        profile("efficientnet_b0", 32, 1, amp_dtype="fp8")
    with pytest.raises(UserError, match="unknown model"):
        count_params("efficientnet_b99")


@pytest.mark.parametrize("name", ["efficientnet_b0", "tf_efficientnetv2_b0"])
def test_fused_model_gives_the_same_logits_without_batchnorm(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10)
    with torch.no_grad():  # non-trivial BN statistics, so folding has something to fold
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.eval()
    fused = fuse_conv_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is kept
    x = torch.randn(2, 3, 67, 67)  # odd size: exercises TF 'same' padding on the fused convs
    with torch.no_grad():
        ref, out = model(x), fused(x)
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())


def test_cpu_forward_runs_channels_last_with_the_same_results():
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    seen = []
    model.stages[0].register_forward_hook(lambda m, i, o: seen.append(o.is_contiguous(
        memory_format=torch.channels_last)))
    with torch.no_grad():
        fast = model(x)
        model.cpu_channels_last = False
        plain = model(x)
    assert seen == [True, False]  # the speed default (BENCHMARKS.md) and the switch that turns it off
    assert torch.allclose(fast, plain, rtol=1e-4, atol=1e-4)
