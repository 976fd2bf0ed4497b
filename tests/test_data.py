"""effnet.data: real datasets split as documented, every image mode read as RGB, bad files skipped
loudly (or refused), and transforms / mixing doing what the papers' pipelines do, in numbers."""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import tarfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from effnet.arch.preprocess import Preprocess
from effnet.data import (
    Cutout,
    RandAugmentM,
    Transformed,
    batch_mixer,
    eval_transform,
    load_data,
    load_rgb,
    stratified_split,
    train_transform,
)
from effnet.errors import UserError

SHARED_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


def save(path: Path, image: Image.Image, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kw)
    return path


def colour(rgb=(200, 40, 90), size=(12, 10)) -> Image.Image:
    return Image.new("RGB", size, rgb)


def make_tree(root: Path, counts: dict[str, int], start: int = 0) -> None:
    """root/<class>/<i>.png, each image a distinct flat colour (so images can be told apart)."""
    for k, (cls, n) in enumerate(counts.items()):
        for i in range(n):
            save(root / cls / f"{i:03d}.png", colour((k * 20, (i + start) % 256, 7)))


def photo(size: int = 64) -> Image.Image:
    from sklearn.datasets import load_sample_image

    return Image.fromarray(load_sample_image("china.jpg")).resize((size, size), Image.BILINEAR)


# ----------------------------------------------------------------------------- digits


def test_digits_split_sizes_balance_and_determinism():
    a, b = load_data(None), load_data("digits", seed=123)  # the run's seed does not move it
    assert a.name == "digits" and a.classes == [str(i) for i in range(10)]
    assert (len(a.train), len(a.val)) == (1437, 360)
    assert a.val.indices == b.val.indices and a.train.indices == b.train.indices
    assert set(a.train.indices).isdisjoint(a.val.indices)
    assert sorted(a.train.indices + a.val.indices) == list(range(1797))
    full = Counter(a.train.targets) + Counter(a.val.targets)
    for digit, n in full.items():  # each class 20 % +- one image
        assert abs(Counter(a.val.targets)[digit] - 0.2 * n) < 1.0
    image, label = a.train[0]
    pixels = np.asarray(image)
    assert image.mode == "RGB" and image.size == (8, 8) and pixels.dtype == np.uint8
    assert (pixels[..., 0] == pixels[..., 2]).all() and isinstance(label, int)
    levels = np.unique(np.concatenate([np.asarray(a.train[i][0]).ravel() for i in range(50)]))
    assert levels[0] == 0 and levels[-1] == 255  # 0..16 grey mapped onto the full uint8 range
    half = load_data("digits", val_split=0.5)
    assert (len(half.train), len(half.val)) == (898, 899)


def test_digits_read_from_the_package_file_equal_scikit_learns_loader():
    from sklearn.datasets import load_digits

    from effnet.data.datasets import digits_arrays

    images, target = digits_arrays()
    ref = load_digits()
    assert np.array_equal(images, ref.images) and np.array_equal(target, ref.target)
    assert images.shape == (1797, 8, 8)


def test_stratified_split_counts():
    labels = [0] * 50 + [1] * 30 + [2] * 3 + [3] * 1
    train, val = stratified_split(labels, 0.25, seed=7)
    assert len(val) == math.ceil(0.25 * 84) == 21
    per = Counter(labels[i] for i in val)
    assert per[0] in (12, 13) and per[1] in (7, 8) and per[3] == 0  # never a class's last image
    assert stratified_split(labels, 0.25, seed=7) == (train, val)
    assert stratified_split(labels, 0.25, seed=8)[1] != val


# ----------------------------------------------------------------------------- folders


def test_imagefolder_train_val(tmp_path):
    make_tree(tmp_path / "train", {"cat": 4, "dog": 3, "emu": 2})
    make_tree(tmp_path / "val", {"dog": 2, "emu": 1})  # val may lack a class
    s = load_data(str(tmp_path))
    assert s.classes == ["cat", "dog", "emu"] and s.name == f"imagefolder:{tmp_path.resolve()}"
    assert (len(s.train), len(s.val)) == (9, 3)
    assert s.train.targets == [0] * 4 + [1] * 3 + [2] * 2
    assert s.val.targets == [1, 1, 2]  # numbered by train's classes, not val's own
    image, label = s.val[2]
    # the image of val/emu/000.png (second class written to val, so red 20)
    assert label == 2 and image.mode == "RGB" and image.getpixel((0, 0)) == (20, 0, 7)
    assert len(load_data(f"imagefolder:{tmp_path}").train) == 9
    assert load_data(tmp_path).val.targets == [1, 1, 2]  # a Path works as well as a str
    with pytest.raises(UserError, match="drop --val-split"):
        load_data(str(tmp_path), val_split=0.2)
    make_tree(tmp_path / "val", {"yak": 1})
    with pytest.raises(UserError, match="yak"):
        load_data(str(tmp_path))


def test_single_folder_val_split_stratified_and_deterministic(tmp_path):
    make_tree(tmp_path, {"a": 20, "b": 10, "c": 5})
    s1 = load_data(str(tmp_path), val_split=0.2, seed=3)
    s2 = load_data(str(tmp_path), val_split=0.2, seed=3)
    s3 = load_data(str(tmp_path), val_split=0.2, seed=4)
    assert (len(s1.train), len(s1.val)) == (28, 7)
    assert Counter(s1.val.targets) == {0: 4, 1: 2, 2: 1}
    assert s1.val.indices == s2.val.indices and s1.val.indices != s3.val.indices
    assert set(s1.train.indices).isdisjoint(s1.val.indices)
    # the same split whatever the images are: it depends on labels and seed only
    assert [s1.val[i][1] for i in range(len(s1.val))] == s1.val.targets


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.1])
def test_val_split_out_of_range(tmp_path, bad):
    make_tree(tmp_path, {"a": 3, "b": 3})
    with pytest.raises(UserError, match="between 0 and 1"):
        load_data(str(tmp_path), val_split=bad)


def test_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_data(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no class folders"):
        load_data(str(tmp_path / "empty"), val_split=0.5)
    save(tmp_path / "loose" / "a.png", colour())
    with pytest.raises(UserError, match="no class folders: put each class"):
        load_data(str(tmp_path / "loose"), val_split=0.5)
    make_tree(tmp_path / "holes", {"a": 2})
    (tmp_path / "holes" / "b").mkdir()
    with pytest.raises(UserError, match=r"class folder .*b has no images"):
        load_data(str(tmp_path / "holes"), val_split=0.5)
    for c in "xy":
        (tmp_path / "noimg" / c).mkdir(parents=True)
    (tmp_path / "noimg" / "x" / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="no images found"):
        load_data(str(tmp_path / "noimg"), val_split=0.5)
    make_tree(tmp_path / "one", {"a": 2, "b": 2})
    with pytest.raises(UserError, match="--val-split"):
        load_data(str(tmp_path / "one"))
    with pytest.raises(UserError, match="cifar10:ROOT"):
        load_data("cifar10")


# ----------------------------------------------------------------------------- image modes


def test_image_modes_become_rgb(tmp_path):
    d = tmp_path / "modes" / "x"
    save(d / "grey.png", Image.new("L", (5, 4), 77))
    rgba = Image.new("RGBA", (5, 4), (10, 20, 30, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black: shown as white
    save(d / "rgba.png", rgba)
    save(d / "cmyk.jpg", Image.new("CMYK", (16, 16), (0, 255, 255, 0)), quality=100)
    save(d / "deep.png", Image.fromarray(np.full((4, 5), 40000, np.uint16)))  # 16-bit grey
    pal = Image.new("P", (5, 4), 1)
    pal.putpalette([0, 0, 0, 255, 128, 0] + [0] * 762)
    save(d / "pal.png", pal)
    save(d / "bw.bmp", Image.new("1", (5, 4), 1))
    assert Image.open(d / "deep.png").mode.startswith("I")  # really stored 16-bit
    s = load_data(str(tmp_path / "modes"), val_split=0.5)
    images = {Path(p).stem: load_rgb(p) for p, _ in s.train.base.samples}
    assert all(im.mode == "RGB" for im in images.values())
    assert images["grey"].getpixel((1, 1)) == (77, 77, 77)
    assert images["rgba"].getpixel((0, 0)) == (255, 255, 255)
    assert images["rgba"].getpixel((1, 1)) == (10, 20, 30)
    r, g, b = images["cmyk"].getpixel((8, 8))
    assert r > 240 and g < 15 and b < 15  # CMYK (0, 100 %, 100 %, 0) is red
    assert images["deep"].getpixel((0, 0)) == (156,) * 3  # 40000 / 257, not clipped to 255
    assert images["pal"].getpixel((2, 2)) == (255, 128, 0)
    assert images["bw"].getpixel((2, 2)) == (255, 255, 255)


def test_exif_orientation_applied(tmp_path):
    im = Image.new("RGB", (20, 10), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display
    path = save(tmp_path / "o.jpg", im, exif=exif)
    assert load_rgb(path).size == (10, 20)


# ----------------------------------------------------------------------------- bad files


def corrupt_tree(root: Path) -> None:
    make_tree(root, {"a": 3, "b": 3})
    (root / "a" / "zz_garbage.jpg").write_bytes(os.urandom(500))
    (root / "b" / "empty.jpg").write_bytes(b"")
    png = (root / "b" / "000.png").read_bytes()
    (root / "b" / "zz_cut.png").write_bytes(png[: len(png) // 2])


def test_corrupt_files_skipped_with_one_warning(tmp_path):
    corrupt_tree(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = load_data(str(tmp_path), val_split=0.5)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "skipped 3 unreadable image(s) of 9" in messages[0]
    assert len(s.train) + len(s.val) == 6
    with pytest.raises(UserError, match=r"unreadable image .*zz_garbage\.jpg.* and 2 more"):
        load_data(str(tmp_path), val_split=0.5, strict=True)


def test_all_images_of_a_class_unreadable(tmp_path):
    make_tree(tmp_path, {"a": 2})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match="skipped 1"), pytest.raises(UserError, match="every"):
        load_data(str(tmp_path), val_split=0.5)


def test_dataloader_workers_survive_bad_files(tmp_path):
    corrupt_tree(tmp_path)
    make_tree(tmp_path, {"a": 10, "b": 10})
    with pytest.warns(UserWarning, match="skipped 3"):
        s = load_data(str(tmp_path), val_split=0.25)
    os.remove(s.train.base.samples[s.train.indices[1]][0])  # gone after the load-time check
    with pytest.warns(UserWarning, match="cannot read image"):
        s.train[1]  # in-process: the next sample stands in, with a warning
    ds = Transformed(s.train, eval_transform(Preprocess(16, 16), 16))
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    seen = 0
    for images, labels in loader:
        assert images.shape[1:] == (3, 16, 16) and torch.isfinite(images).all()
        assert set(labels.tolist()) <= {0, 1}
        seen += len(labels)
    assert seen == len(s.train) == 15


# ----------------------------------------------------------------------------- transforms


def test_train_transform_shape_dtype_normalisation():
    pre = Preprocess(224, 224)  # ImageNet mean/std, bicubic
    rgb = (100, 150, 200)
    out = train_transform(pre, 48)(colour(rgb, (90, 70)))
    assert out.shape == (3, 48, 48) and out.dtype == torch.float32 and type(out) is torch.Tensor
    want = (torch.tensor(rgb) / 255 - torch.tensor(pre.mean)) / torch.tensor(pre.std)
    assert torch.allclose(out.mean((1, 2)), want, atol=1e-5)
    assert torch.allclose(out.amax((1, 2)), out.amin((1, 2)), atol=1e-5)  # a flat image stays flat
    half = Preprocess(224, 224, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)
    x = train_transform(half, 32, randaug_magnitude=9, cutout=True)(photo())
    assert x.shape == (3, 32, 32) and x.min() >= -1.0 and x.max() <= 1.0
    assert train_transform(half, 20, scale=None)(photo()).shape == (3, 20, 20)
    with pytest.raises(UserError, match="interpolation"):
        train_transform(Preprocess(8, 8, interpolation="spline"), 8)


def gradient(width: int = 200, height: int = 100) -> Image.Image:
    """Red rises left to right and green top to bottom, so a crop's position can be read off."""
    a = np.zeros((height, width, 3), np.float64)
    a[..., 0] = (np.arange(width) + 0.5)[None, :] / width
    a[..., 1] = (np.arange(height) + 0.5)[:, None] / height
    return Image.fromarray((a * 255).round().astype(np.uint8))


@pytest.mark.parametrize("crop_pct, mode, span_x, span_y", [
    (0.875, "center", (36.5 / 128, 91.5 / 128), (4.5 / 64, 59.5 / 64)),  # short side 56/0.875 = 64
    (1.0, "center", (28.5 / 112, 83.5 / 112), (0.5 / 56, 55.5 / 56)),     # short side 56, sides cut
    (1.0, "squash", (0.5 / 56, 55.5 / 56), (0.5 / 56, 55.5 / 56)),        # squashed, nothing cut
    (0.875, "squash", (4.5 / 64, 59.5 / 64), (4.5 / 64, 59.5 / 64)),      # 64 x 64, then crop 56
])
def test_eval_transform_crop_geometry(crop_pct, mode, span_x, span_y):
    pre = Preprocess(56, 56, crop_pct=crop_pct, interpolation="bilinear",
                     mean=(0.0,) * 3, std=(1.0,) * 3, crop_mode=mode)
    out = eval_transform(pre, 56)(gradient())
    assert out.shape == (3, 56, 56)
    red, green = out[0].mean(0), out[1].mean(1)  # per column, per row
    assert red[0] == pytest.approx(span_x[0], abs=0.01)
    assert red[-1] == pytest.approx(span_x[1], abs=0.01)
    assert green[0] == pytest.approx(span_y[0], abs=0.01)
    assert green[-1] == pytest.approx(span_y[1], abs=0.01)


def test_randaugment_has_tfs_ops_at_tfs_strengths_linear_in_m_and_extrapolated():
    from effnet.data.transforms import RANDAUG_OPS, randaug_argument

    # SPEC F.1: 16 ops, no Identity; the argument of each at M = 10 (TF's _MAX_LEVEL)
    assert len(RANDAUG_OPS) == 16 and "Identity" not in RANDAUG_OPS
    at10 = {op: randaug_argument(op, 10) for op in RANDAUG_OPS}
    assert [op for op, a in at10.items() if a is None] == ["AutoContrast", "Equalize", "Invert"]
    assert at10 == pytest.approx({**dict.fromkeys(("AutoContrast", "Equalize", "Invert"), None),
                                  "Rotate": 30.0, "ShearX": 0.3, "ShearY": 0.3,
                                  "TranslateX": 100.0, "TranslateY": 100.0, "Posterize": 4,
                                  "Solarize": 256, "SolarizeAdd": 110, "Cutout": 40,
                                  **dict.fromkeys(("Color", "Contrast", "Brightness", "Sharpness"), 1.9)})
    for m in (2.5, 5.0, 7.5, 15.0, 25.0):  # M / 10 of the M = 10 value, on past 10
        assert randaug_argument("Rotate", m) == pytest.approx(3 * m)
        assert randaug_argument("ShearY", m) == pytest.approx(0.03 * m)
        assert randaug_argument("TranslateX", m) == pytest.approx(10 * m)
        assert randaug_argument("Sharpness", m) == pytest.approx(0.18 * m + 0.1)
        assert randaug_argument("Cutout", m) == int(4 * m)
    # posterize keeps int(4 M / 10) bits (TF: more bits, weaker, as M grows), at most 8
    assert [randaug_argument("Posterize", m) for m in (2, 5, 10, 15, 20, 25)] == [0, 2, 4, 6, 8, 8]
    assert randaug_argument("Solarize", 5) == 128 and randaug_argument("SolarizeAdd", 15) == 165
    with pytest.raises(ValueError, match="Identity"):
        randaug_argument("Identity", 5)
    with pytest.raises(UserError):
        RandAugmentM(2, -1)


def _augment(op: str, m: float, image, seed: int = 0, as_tensor: bool = False) -> np.ndarray:
    """One op at magnitude m on a uint8 HxWx3 array, through PIL or a uint8 tensor."""
    x = torch.from_numpy(image).permute(2, 0, 1).contiguous() if as_tensor else Image.fromarray(image)
    torch.manual_seed(seed)
    out = RandAugmentM(1, m, ops=(op,))(x)
    assert type(out) is type(x)
    return out.permute(1, 2, 0).numpy() if as_tensor else np.asarray(out)


def flat(value: int, height: int = 32, width: int = 32) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


@pytest.mark.parametrize("as_tensor", [False, True], ids=["pil", "tensor"])
def test_randaugment_ops_move_and_change_pixels_as_tf_says(as_tensor):
    def run(op, m, image, seed=0):
        return _augment(op, m, image, seed, as_tensor)

    line = flat(0, 64, 448)
    line[:, 224] = 255  # a vertical line: translate moves it by M / 10 * 100 px, either way
    for m in (5, 10, 15):
        for seed in range(4):
            out = run("TranslateX", m, line, seed)
            assert np.flatnonzero(out[10, :, 0] == 255).tolist() in ([224 - 10 * m], [224 + 10 * m])
            assert (out[10, :, 0] == 128).sum() == 10 * m  # the vacated side is grey
    grid = flat(0, 224, 224)
    grid[:, 112] = 255
    for seed in range(4):  # shear 0.3 about the top-left corner: row 100 moves 30 px, row 0 stays
        out = run("ShearX", 10, grid, seed)
        assert np.flatnonzero(out[100, :, 0] == 255).tolist() in ([82], [142])
        assert np.flatnonzero(out[0, :, 0] == 255).tolist() == [112]
    bar = flat(0, 225, 225)
    bar[112, :] = 255  # a horizontal line through the centre turns by 30 degrees
    for seed in range(4):
        out = run("Rotate", 10, bar, seed)
        rise = [float(np.flatnonzero(out[:, x, 0] == 255).mean()) - 112 for x in (62, 162)]
        assert abs(rise[0]) == pytest.approx(50 * math.tan(math.radians(30)), abs=1)
        assert rise[1] == pytest.approx(-rise[0], abs=1)
    # per-pixel ops on grey levels
    assert run("Posterize", 10, flat(183))[0, 0, 0] == 176  # 4 bits: 1011 0111 -> 1011 0000
    assert run("Posterize", 5, flat(183))[0, 0, 0] == 128 and run("Posterize", 2, flat(183)).max() == 0
    assert run("Posterize", 25, flat(183))[0, 0, 0] == 183
    assert run("Solarize", 5, flat(200))[0, 0, 0] == 55 and run("Solarize", 5, flat(100))[0, 0, 0] == 100
    assert run("Solarize", 10, flat(255))[0, 0, 0] == 255  # threshold 256: TF's no-op
    assert run("SolarizeAdd", 10, flat(100))[0, 0, 0] == 210
    assert run("SolarizeAdd", 10, flat(200))[0, 0, 0] == 200
    assert run("Invert", 3, flat(100))[0, 0, 0] == 155
    assert [run("Brightness", m, flat(50))[0, 0, 0] for m in (5, 10, 15)] == [50, 95, 140]
    # cutout: one grey square of half-side M / 10 * 40, clipped only where it meets a border
    for seed in range(6):
        out = run("Cutout", 10, flat(0, 200, 200), seed)[..., 0]
        rows, cols = np.flatnonzero((out == 128).any(1)), np.flatnonzero((out == 128).any(0))
        assert (out == 128).sum() == len(rows) * len(cols) and 0 < len(rows) <= 80 and len(cols) <= 80
        assert len(rows) == 80 or rows[0] == 0 or rows[-1] == 199
        assert len(cols) == 80 or cols[0] == 0 or cols[-1] == 199


def test_randaugment_draws_uniformly_is_seeded_and_takes_pil_and_uint8_tensors():
    from torchvision import tv_tensors

    from effnet.data.transforms import RANDAUG_OPS

    img = photo(64)
    ra = RandAugmentM(16, 9)
    torch.manual_seed(0)
    counts = Counter(op for _ in range(200) for op, _, _ in ra.make_params([img])["draws"])
    assert set(counts) == set(RANDAUG_OPS) and all(130 <= c <= 270 for c in counts.values())
    tensor = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()
    differ = 0
    for seed in range(12):
        outs = []
        for x in (img, img, tensor):
            torch.manual_seed(seed)
            outs.append(np.asarray(RandAugmentM(2, 15)(x), np.int16))
        pil, again, tens = outs[0], outs[1], outs[2].transpose(1, 2, 0)
        assert (pil == again).all()  # the seed fixes the draws
        # the same draws on either type: torchvision's PIL and tensor kernels round differently
        # (a grey level in the colour ops, the odd pixel on a rotated edge)
        assert (np.abs(pil - tens) > 4).mean() < 0.01
        torch.manual_seed(seed + 100)
        differ += int(np.abs(np.asarray(RandAugmentM(2, 15)(img), np.int16) - pil).mean() > 2)
    assert differ >= 8  # other seeds, other draws (only AutoContrast / Equalize / Invert can tie)
    for seed in range(40):  # extreme magnitudes never produce an invalid op argument
        torch.manual_seed(seed)
        assert RandAugmentM(3, 30)(img).size == img.size
        assert RandAugmentM(3, 30)(tensor).shape == tensor.shape
    for seed in range(20):  # a tv_tensors.Image stays one, whichever ops ran
        torch.manual_seed(seed)
        assert type(RandAugmentM(2, 9)(tv_tensors.Image(tensor))) is tv_tensors.Image
    with pytest.raises(TypeError, match="uint8"):
        RandAugmentM(2, 9)(tensor.float() / 255)


def test_transformed_transform_is_swappable():
    s = load_data("digits")
    pre = Preprocess(32, 32)
    ds = Transformed(s.train, train_transform(pre, 16))
    assert ds[0][0].shape == (3, 16, 16) and len(ds) == 1437
    ds.transform = train_transform(pre, 24)
    assert ds[0][0].shape == (3, 24, 24)
    assert ds[5][1] == s.train[5][1]


# ----------------------------------------------------------------------------- mixing, cutout


def test_batch_mixer_off_is_none():
    assert batch_mixer(10) is None and batch_mixer(10, 0.0, 0.0) is None
    with pytest.raises(UserError):
        batch_mixer(10, -1.0)


def test_mixup_targets_and_images():
    torch.manual_seed(0)
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4, 5])
    xm, t = batch_mixer(7, mixup_alpha=0.4)(x, y)
    assert t.shape == (6, 7) and torch.allclose(t.sum(1), torch.ones(6))
    lam = float(t[0, 0])
    assert torch.allclose(xm, lam * x + (1 - lam) * x.roll(1, 0), atol=1e-6)
    assert torch.allclose(t[torch.arange(6), y.roll(1)], torch.full((6,), 1 - lam))


def test_cutmix_label_weight_is_pasted_area():
    torch.manual_seed(1)
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    for _ in range(5):
        xm, t = batch_mixer(4, cutmix_alpha=1.0)(x, y)
        pasted = (xm != x).any(1).float().mean((1, 2))  # fraction of pixels from the partner
        assert torch.allclose(t[torch.arange(4), y.roll(1)], pasted, atol=1e-6)
    both = batch_mixer(4, 0.2, 1.0)
    for _ in range(4):
        _, t = both(x, y)
        assert t.shape == (4, 4) and torch.allclose(t.sum(1), torch.ones(4))


def test_cutout_box_geometry():
    half, size = 4, 32
    cut = Cutout(half)
    full = 0
    for seed in range(60):
        torch.manual_seed(seed)
        top, bottom, left, right = cut.box(size, size)
        torch.manual_seed(seed)
        out = cut(torch.full((3, size, size), -5.0))
        hit = out != -5.0
        assert hit.all(0).eq(hit.any(0)).all()  # the same box in every channel
        rows, cols = hit[0].any(1).nonzero()[:, 0], hit[0].any(0).nonzero()[:, 0]
        assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (top, bottom, left, right)
        assert hit[0].sum() == (bottom - top) * (right - left)  # a filled rectangle
        assert bottom - top <= 2 * half and right - left <= 2 * half
        noise = out[:, top:bottom, left:right]
        assert noise.min() >= 0.0 and noise.max() < 1.0
        full += int((bottom - top, right - left) == (2 * half, 2 * half))
    assert full > 30  # centres away from the border give the whole 2*half square (~60 %)
    assert Cutout(224 // 4).half == 56  # train_transform(cutout=True) at 224: side ~ size/2


# ----------------------------------------------------------------------------- public datasets


def write_cifar10(root: Path, per_batch: int = 3) -> dict[str, str]:
    """The real on-disk CIFAR-10 python format with tiny batches; returns each file's md5."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["airplane", "automobile", "bird", "cat", "deer",
             "dog", "frog", "horse", "ship", "truck"]
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)  # R plane, G, B, row-major
        entry = {"batch_label": f, "labels": rng.integers(0, 10, per_batch).tolist(),
                 "data": data, "filenames": [f"{f}_{i}.png" for i in range(per_batch)]}
        (base / f).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"num_cases_per_batch": per_batch, "label_names": names, "num_vis": 3072}
    (base / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in base.iterdir()}


def test_cifar10_from_local_root(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    md5 = write_cifar10(tmp_path)
    # torchvision checks every file against the official md5 before unpickling it, so a fixture
    # is refused as it should be...
    with pytest.raises(UserError, match="not found .* under .*--download"):
        load_data(f"cifar10:{tmp_path}")
    # ...and is accepted once the expected checksums are the fixture's own; the check still runs.
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]]
                                                for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    s = load_data(f"cifar10:{tmp_path}")
    assert s.name == "cifar10" and s.classes[:2] == ["airplane", "automobile"]
    assert (len(s.train), len(s.val)) == (15, 3)
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())
    image, label = s.val[2]
    assert image.mode == "RGB" and image.size == (32, 32) and label == raw["labels"][2]
    assert image.getpixel((5, 1)) == tuple(int(raw["data"][2, c * 1024 + 32 + 5]) for c in range(3))
    with pytest.raises(UserError, match="official test split"):
        load_data(f"cifar10:{tmp_path}", val_split=0.1)


@pytest.mark.parametrize("name", ["cifar100", "flowers102", "imagenette"])
def test_public_dataset_missing(tmp_path, name):
    with pytest.raises(UserError, match=f"{name} not found .*pass --download"):
        load_data(f"{name}:{tmp_path}")


def test_cars_cannot_download(tmp_path):
    with pytest.raises(UserError, match="no longer be downloaded"):
        load_data(f"cars:{tmp_path}", download=True)


@pytest.mark.skipif(not SHARED_CIFAR.exists(), reason=f"{SHARED_CIFAR} absent (optional data)")
def test_real_cifar10_jpeg_subset(tmp_path):
    wanted = {"train": 6, "test": 3}
    taken: Counter = Counter()
    with tarfile.open(SHARED_CIFAR, "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3:
                continue
            split, cls = parts[-3], parts[-2]
            if split in wanted and cls in ("cat", "dog") and taken[split, cls] < wanted[split]:
                taken[split, cls] += 1
                data = tar.extractfile(member).read()
                (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
                (tmp_path / split / cls / parts[-1]).write_bytes(data)
            if sum(taken.values()) == 18:
                break
    s = load_data(str(tmp_path))
    assert s.classes == ["cat", "dog"] and (len(s.train), len(s.val)) == (12, 6)
    image, _ = s.val[0]
    assert image.mode == "RGB" and image.size == (32, 32)
    x = eval_transform(Preprocess(32, 32, crop_pct=1.0), 32)(image)
    assert x.shape == (3, 32, 32) and x.std() > 0.1  # a real photo, not a blank
