"""Behaviour of the built modules: features, stochastic depth, checkpointing, heads."""

import copy

import pytest
import torch

import procs
from effnet import create_model
from effnet.nn.blocks import FusedMBConv, MBConv
from effnet.nn.layers import ConvNormAct, tf_same_pad


@pytest.fixture(scope="module")
def b0():
    torch.manual_seed(0)
    return create_model("efficientnet_b0", num_classes=10).eval()


def test_forward_shapes_and_feature_maps(b0):
    x = torch.randn(2, 3, 96, 96)
    assert b0(x).shape == (2, 10)
    maps = b0.forward_feature_maps(x)
    assert [m.shape[-1] for m in maps] == [48, 24, 12, 6, 3]
    assert [m.shape[1] for m in maps] == [i["num_chs"] for i in b0.feature_info] == [16, 24, 40, 112, 320]
    assert [i["reduction"] for i in b0.feature_info] == [2, 4, 8, 16, 32]
    assert b0.forward_head(b0.forward_features(x), pre_logits=True).shape == (2, 1280)


def test_v2_feature_maps():
    model = create_model("efficientnetv2_s", num_classes=0).eval()
    assert [i["num_chs"] for i in model.feature_info] == [24, 48, 64, 160, 256]
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1280)  # num_classes=0: pooled features


def test_stochastic_depth_schedule_is_linear_over_all_blocks():
    model = create_model("efficientnet_b0", drop_path_rate=0.2)
    rates = [getattr(b.drop_path, "p", 0.0) for b in model.blocks()]
    # block i of 16 gets 0.2 * i / 16; blocks without a residual get none (SPEC A.6)
    for i, (b, r) in enumerate(zip(model.blocks(), rates, strict=True)):
        assert r == (pytest.approx(0.2 * i / 16) if b.has_skip else 0.0)
    assert max(rates) == pytest.approx(0.2 * 14 / 16)  # block 15 (192 -> 320) has no residual


def test_drop_path_is_per_sample_in_training_only():
    block = MBConv(16, 16, 3, 1, 6, se=0.25, drop_path=0.5).train()
    x = torch.randn(64, 16, 4, 4)
    branch = block.project(block.se(block.dw(block.expand(x))))
    out = block(x)
    dropped = torch.isclose(out, x).flatten(1).all(1)
    assert 10 < int(dropped.sum()) < 54  # about half of the samples lost the whole branch
    kept = ~dropped
    torch.testing.assert_close(out[kept], x[kept] + branch[kept] / 0.5)
    block.eval()
    torch.testing.assert_close(block(x), x + block.project(block.se(block.dw(block.expand(x)))))


def test_set_dropout_and_drop_path():
    model = create_model("efficientnet_b0")
    model.set_dropout(0.35)
    assert model.head_drop.p == 0.35
    model.set_drop_path(0.0)
    assert all(not hasattr(b.drop_path, "p") for b in model.blocks())


def _one_step(model, x, mode):
    """Gradients, BN running stats and the output after one training step with `mode`."""
    model.zero_grad()
    model.set_recompute(mode)
    torch.manual_seed(0)  # the same drop-path draws in every mode
    out = model(x)
    out.square().mean().backward()
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    return out.detach(), [p.grad.clone() for p in model.parameters()], buffers


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_lite0", "efficientnetv2_b0"])
def test_recomputing_in_the_backward_pass_changes_no_number_and_bn_updates_once(name):
    """"activations" and "blocks" (nn/recompute.py) give the plain pass's output, gradients and
    BatchNorm running statistics: a recomputed BN layer must not update its statistics twice."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, drop_rate=0.0, drop_path_rate=0.3).train()
    x = torch.randn(2, 3, 64, 64)
    start = copy.deepcopy(model.state_dict())
    ref = _one_step(model, x, "off")
    moved = max((ref[2][k] - start[k]).abs().max().item() for k in ref[2])
    assert moved > 1e-3  # the plain step did update the running statistics
    for mode in ("activations", "blocks"):
        model.load_state_dict(start)
        out, grads, buffers = _one_step(model, x, mode)
        assert torch.equal(out, ref[0]), mode
        for g, r in zip(grads, ref[1], strict=True):
            torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)
        for k, v in buffers.items():
            assert torch.equal(v, ref[2][k]), (mode, k)
    assert model.grad_checkpointing and not any(
        getattr(m, "inplace", False) for m in model.modules())
    model.set_recompute("off")
    assert any(getattr(m, "inplace", False) for m in model.modules())


@pytest.mark.parametrize("mode", ["off", "activations", "blocks"])
def test_frozen_stages_keep_their_weights_and_bn_statistics(mode):
    """The stem and the first stages take no gradient and keep their running statistics through a
    training step, in every recompute mode; the rest trains; unfreezing restores both."""
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", num_classes=5)
    model.set_recompute(mode)
    model.set_frozen_stages(2)
    model.train()
    frozen = [model.stem, *model.stages[:2]]
    assert all(not m.training for part in frozen for m in part.modules())
    assert model.stages[2].training and model.head.training
    start = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(4, 3, 64, 64)).square().mean().backward()
    opt.step()
    for name, v in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        in_frozen = name.startswith(("stem.", "stages.0.", "stages.1."))
        assert torch.equal(v, start[name]) == in_frozen, name
    assert all(p.grad is None for part in frozen for p in part.parameters())
    model.set_frozen_stages(0)
    assert all(p.requires_grad for p in model.parameters()) and model.stem.training
    with pytest.raises(ValueError, match="frozen stages"):
        model.set_frozen_stages(len(model.stages) + 1)


def test_fused_expansion_one_has_no_projection():
    block = FusedMBConv(24, 24, 3, 1, 1)
    assert isinstance(block.project, torch.nn.Identity)
    assert isinstance(block.conv.act, torch.nn.SiLU)


def test_fused_expansion_one_with_se_builds_amls_block(tmp_path):
    """AML's FusedMBConvBlock with expand_ratio 1 gates the block input with SE (squeezed from
    the input width) before its single k x k conv; a spec file with such a row builds it."""
    import json
    from dataclasses import replace

    from effnet.arch.spec import spec_to_dict

    spec = create_model("efficientnetv2_s").spec
    stage1 = replace(spec.stages[0], se=0.25)  # Fused-MBConv1 24 -> 24, 2 layers
    path = tmp_path / "v2s_fused_se.json"
    path.write_text(json.dumps(spec_to_dict(spec.with_(stages=(stage1, *spec.stages[1:])))))
    model = create_model(str(path)).eval()
    se_params = (24 * 6 + 6) + (6 * 24 + 24)  # reduce 24 -> int(24 * 0.25), expand 6 -> 24, biases
    assert sum(p.numel() for p in model.parameters()) == 21_458_488 + 2 * se_params
    block = model.stages[0][0]
    assert block.layout == "fused1" and block.se.reduce.in_channels == 24
    seen = {}
    block.conv.register_forward_hook(lambda m, args, out: seen.setdefault("conv_in", args[0]))
    x = torch.randn(2, 24, 8, 8)
    gate = block.se.expand(block.se.act(block.se.reduce(x.mean((2, 3), keepdim=True)))).sigmoid()
    with torch.no_grad():
        y = block(x)
    torch.testing.assert_close(seen["conv_in"], x * gate)  # the SE acts on the input, first
    torch.testing.assert_close(y, block.conv(x * gate) + x)


def test_se_width_comes_from_block_input():
    block = MBConv(16, 24, 3, 2, 6, se=0.25)
    assert block.se.reduce.out_channels == 4 and block.se.reduce.in_channels == 96


@pytest.mark.parametrize("size, k, s, expect", [(224, 3, 2, (0, 1)), (225, 3, 2, (1, 1)),
                                                (224, 5, 2, (1, 2)), (7, 3, 1, (1, 1))])
def test_tf_same_padding(size, k, s, expect):
    assert tf_same_pad(size, k, s) == expect


def test_reset_classifier_and_in_chans():
    model = create_model("efficientnet_lite0", in_chans=1, num_classes=3)
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 3)
    model.reset_classifier(7)
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 7)


def test_init_follows_tf_initialisers():
    torch.manual_seed(0)
    model = create_model("efficientnet_b4")
    dw = model.stages[5][0].dw.conv.weight  # depthwise 5x5: fan_out = 25 whatever the width
    assert dw.std().item() == pytest.approx((2 / 25) ** 0.5, rel=0.05)
    bound = 1 / 1000**0.5
    assert model.classifier.weight.abs().max().item() <= bound


def test_forward_features_keeps_the_callers_memory_format(b0):
    x = torch.randn(2, 3, 64, 64)
    y = b0.forward_features(x)
    assert y.is_contiguous() and y.view(2, -1).shape == (2, 1280 * 2 * 2)
    y_cl = b0.forward_features(x.contiguous(memory_format=torch.channels_last))
    assert y_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, y_cl)


def test_reset_classifier_keeps_dtype_and_config():
    model = create_model("efficientnet_lite0", num_classes=10).to(torch.float64)
    model.reset_classifier(5)
    assert model.classifier.weight.dtype == torch.float64 and model.config.num_classes == 5
    assert model.eval()(torch.randn(1, 3, 32, 32, dtype=torch.float64)).shape == (1, 5)


def test_drop_path_draws_as_torchvision_stochastic_depth():
    from torchvision.ops import StochasticDepth

    from effnet.nn.layers import DropPath

    x = torch.randn(16, 4, 3, 3)
    torch.manual_seed(0)
    ours = DropPath(0.3).train()(x)
    torch.manual_seed(0)
    assert torch.equal(ours, StochasticDepth(0.3, "row").train()(x))
    assert torch.equal(DropPath(0.3).eval()(x), x)


def test_import_effnet_loads_neither_torchvision_ops_nor_optuna():
    import sys

    out = procs.run([sys.executable, "-X", "importtime", "-c", "import effnet"], check=True).stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in out.splitlines()}
    assert not {m for m in loaded if m.startswith(("torchvision.ops", "optuna"))}
    assert "effnet" in loaded


def test_every_block_kind_has_one_registered_class_and_unknown_kinds_are_refused():
    from effnet.arch.spec import BLOCK_KINDS
    from effnet.nn.blocks import BLOCKS, Bottleneck, block_kind

    assert set(BLOCKS) == set(BLOCK_KINDS)
    assert all(cls.kind == kind for kind, cls in BLOCKS.items())
    with pytest.raises(ValueError, match="'mystery'"):
        block_kind("mystery")(type("Mystery", (Bottleneck,), {}))
    with pytest.raises(ValueError, match="'fused'"):  # a second class for a taken kind
        block_kind("fused")(type("Fused2", (FusedMBConv,), {}))
    assert BLOCKS["fused"] is FusedMBConv


def test_block_layout_names_expansion_one_as_the_papers_do():
    assert MBConv(16, 16, 3, 1, 1).layout == "mbconv1" and MBConv(16, 16, 3, 1, 6).layout == "mbconv"
    assert FusedMBConv(16, 16, 3, 1, 1).layout == "fused1"
    assert FusedMBConv(16, 16, 3, 1, 4).layout == "fused"


@pytest.mark.parametrize("kernel,stride,tf_padding", [(3, 1, False), (3, 2, True), (5, 2, False), (5, 1, True)])
def test_depthwise_conv_on_a_1x1_map_is_its_centre_tap(kernel, stride, tf_padding):
    """The training path's shortcut for a depthwise conv on a 1 x 1 map (the last stages of a small
    image) gives the convolution's output and gradients, and is taken only in training."""
    torch.manual_seed(0)
    fast = ConvNormAct(8, 8, kernel, stride, groups=8, tf_padding=tf_padding).train()
    plain = copy.deepcopy(fast)
    plain.depthwise = False  # always the convolution
    calls = []
    fast.conv.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(4, 8, 1, 1, requires_grad=True)
    xp = x.detach().clone().requires_grad_()
    g = torch.randn(4, 8, 1, 1)
    out_fast, out_plain = fast(x), plain(xp)
    assert not calls  # the shortcut ran
    torch.testing.assert_close(out_fast, out_plain)
    (out_fast * g).sum().backward()
    (out_plain * g).sum().backward()
    torch.testing.assert_close(x.grad, xp.grad)
    torch.testing.assert_close(fast.conv.weight.grad, plain.conv.weight.grad)  # off-centre taps: 0
    torch.testing.assert_close(fast.bn.running_mean, plain.bn.running_mean)
    torch.testing.assert_close(fast.bn.running_var, plain.bn.running_var)
    with torch.no_grad():
        fast(x)
    assert len(calls) == 1  # without autograd, the convolution itself
    fast.eval()
    fast(x)
    assert len(calls) == 2  # in eval mode (inference, torch.export, int8) too
