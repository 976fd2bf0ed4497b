"""Decoding at the size the pipeline needs: a large JPEG is decoded at a reduced DCT scale (PIL's
draft mode) and the model sees nearly the pixels of a full decode; other formats decode in full;
an image claiming more than MAX_PIXELS is refused whatever PIL's own limit is."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from crafted import png_header_only
from effnet.arch.conventions import default_preprocess
from effnet.data import Transformed, eval_transform, load_rgb, scan_folder, train_transform
from effnet.data.images import MAX_PIXELS, READ_ERRORS, check_image, decoding_for
from effnet.inference import preprocess_image

PRE = default_preprocess("efficientnet_b0")  # eval: short side to 256, center crop 224
# What the model may see differently from a full decode, in 0..255 grey levels of the image:
# measured 4 at worst and 0.4 on average on this photo at these sizes (images.DRAFT_GAP says why).
MAX_LEVELS, MEAN_LEVELS = 8, 1.0


def large_photo(path: Path, width: int, height: int, fmt: str = "JPEG") -> Path:
    """A real photo (scikit-learn's china.jpg) enlarged, with fine noise for detail at full size."""
    from sklearn.datasets import load_sample_image

    image = Image.fromarray(load_sample_image("china.jpg")).resize((width, height), Image.BICUBIC)
    noise = np.random.default_rng(0).normal(0, 10, (height, width, 3))
    pixels = (np.asarray(image) + noise).clip(0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return path


def levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| of two normalised model inputs, in grey levels of the image (0..255)."""
    return (a - b).abs() * torch.tensor(PRE.std).view(3, 1, 1) * 255


@pytest.mark.parametrize("width, height", [(2400, 1800), (2404, 1802)])
def test_a_large_jpeg_is_decoded_smaller_and_the_model_sees_nearly_the_same(tmp_path, width, height):
    path = large_photo(tmp_path / "d" / "cat" / "big.jpg", width, height)
    transform = eval_transform(PRE, PRE.eval_size)
    needed = transform.decode_size
    assert needed == math.floor(PRE.eval_size / PRE.crop_pct) == 256
    files = scan_folder(tmp_path / "d")
    with decoding_for(needed):  # what Transformed does around every read
        decoded, _ = files[0]
    assert decoded.size[0] < width and decoded.size[1] < height
    assert min(decoded.size) >= needed
    seen, _ = Transformed(files, transform)[0]
    diff = levels(seen, transform(load_rgb(path)))
    assert diff.max() <= MAX_LEVELS and diff.mean() <= MEAN_LEVELS, (diff.max(), diff.mean())
    assert diff.max() > 0  # it really was another decode


def test_a_jpeg_whose_sides_no_scale_divides_decodes_in_full(tmp_path):
    # a reduced scale that does not divide a side stretches the image by up to a decoded pixel
    path = large_photo(tmp_path / "odd.jpg", 2401, 1801)
    assert load_rgb(path, 256).size == (2401, 1801)


def test_predict_decodes_as_the_dataset_does(tmp_path):
    path = large_photo(tmp_path / "big.jpg", 2400, 1800)
    transform = eval_transform(PRE, PRE.eval_size)
    x = preprocess_image(path, PRE)
    assert torch.equal(x, transform(load_rgb(path, transform.decode_size)))
    assert not torch.equal(x, transform(load_rgb(path)))  # not the full decode
    assert levels(x, transform(load_rgb(path))).max() <= MAX_LEVELS


def test_train_crops_keep_full_resolution_pixels(tmp_path):
    # the smallest random-resized crop (8 % of the area, aspect 3/4) still has >= size pixels a
    # side in the decoded image
    transform = train_transform(PRE, 64)
    assert transform.decode_size == math.ceil(64 / math.sqrt(0.75 * 0.08)) == 262
    path = large_photo(tmp_path / "big.jpg", 2400, 1800)
    decoded = load_rgb(path, transform.decode_size)
    assert decoded.size[0] < 2400 and min(decoded.size) * math.sqrt(0.75 * 0.08) >= 64
    assert train_transform(PRE, 64, scale=None).decode_size == 64  # a plain resize to 64 x 64


def test_other_formats_decode_in_full(tmp_path):
    path = large_photo(tmp_path / "big.png", 1200, 900, "PNG")
    assert load_rgb(path, 64).size == (1200, 900)


def test_the_pixel_limit_is_effnets_whatever_pil_is_told(tmp_path, monkeypatch):
    over = tmp_path / "over.png"
    png_header_only(over, MAX_PIXELS // 1000 + 1, 1000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # as a library that turns PIL's check off
    with pytest.raises(READ_ERRORS, match=rf"exceeds the limit of {MAX_PIXELS} pixels"):
        load_rgb(over)
    assert f"limit of {MAX_PIXELS} pixels" in check_image(over)
    under = tmp_path / "under.png"
    png_header_only(under, MAX_PIXELS // 1000, 1000)
    assert check_image(under) is None  # at the limit: its header is accepted
