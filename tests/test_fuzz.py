"""Property-based fuzzing (hypothesis) of everything that reads outside input: image decoding,
weights files (.pth, .safetensors) and their key maps, command-line flags, progressive plans and
recipe values. The property is always the same: a valid value comes back, or the documented
one-line error is raised (UserError, ValueError for plans, READ_ERRORS for images), never anything
else; nothing runs code from a file.

The suite runs a bounded number of examples per property; `python scripts/fuzz.py` runs the same
properties for much longer (EFFNET_FUZZ_EXAMPLES). Crashes found became the regression cases in
`test_found_by_fuzzing`.
"""

import io
import os
import struct
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save as st_save

from effnet.cli import build_parser
from effnet.data.images import READ_ERRORS, load_rgb
from effnet.errors import UserError
from effnet.train.presets import get_recipe
from effnet.train.progressive import ProgressivePlan, plan_from_text
from effnet.train.recipe import FIELD_TYPES, Recipe, override
from effnet.train.recipe_files import read_config
from effnet.weights import convert, detect_format, load_state_dict_file, load_weights

EXAMPLES = int(os.environ.get("EFFNET_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="EFFNET_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


# --- images -----------------------------------------------------------------------------------
def _seed_images() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (9, 7, 3), dtype=np.uint8))
    out = {}
    for fmt, im, kw in (("PNG", rgb, {}), ("JPEG", rgb, {"quality": 90}), ("GIF", rgb.convert("P"), {}),
                        ("BMP", rgb, {}), ("TIFF", rgb, {}), ("WEBP", rgb, {}), ("PPM", rgb, {}),
                        ("PNG", Image.fromarray(rng.integers(0, 65535, (5, 6), dtype=np.uint16)), {}),
                        ("PNG", rgb.convert("RGBA"), {}), ("TIFF", rgb.convert("F"), {})):
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        out[f"{fmt}-{im.mode}"] = buf.getvalue()
    return out


SEED_IMAGES = _seed_images()


@st.composite
def mutated(draw, seeds: dict[str, bytes]):
    """A seed file with bytes overwritten, inserted or cut: mostly-valid input reaches the decoder's
    inner code, where random bytes alone would stop at the magic number."""
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(("set", "insert", "cut", "truncate")))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "set" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "cut":
            del data[i:i + draw(st.integers(1, 16))]
        else:
            del data[i:]
    return bytes(data)


def _decode(tmp_path, data: bytes, suffix: str):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        im = load_rgb(path)
    except READ_ERRORS:
        return None
    assert im.mode == "RGB" and im.width >= 1 and im.height >= 1
    return im


@FUZZ
@given(data=mutated(SEED_IMAGES))
def test_image_decoding_of_mutated_files(tmp_path, data):
    _decode(tmp_path, data, ".img")


@FUZZ
@given(data=st.binary(max_size=512))
def test_image_decoding_of_random_bytes(tmp_path, data):
    _decode(tmp_path, data, ".png")


# --- weights ----------------------------------------------------------------------------------
def _seed_weights() -> dict[str, bytes]:
    sd = {"stem.conv.weight": torch.randn(4, 3, 3, 3), "stages.0.0.dw.bn.running_var": torch.ones(4),
          "classifier.bias": torch.zeros(3, dtype=torch.float16), "n": torch.tensor(3)}
    buf = io.BytesIO()
    torch.save(sd, buf)
    wrapped = io.BytesIO()
    torch.save({"state_dict": sd, "epoch": 3}, wrapped)
    return {".safetensors": st_save(sd, {"format": "pt"}), ".pth": buf.getvalue(),
            ".pth.wrapped": wrapped.getvalue()}


SEED_WEIGHTS = _seed_weights()


def _load_weights_file(tmp_path, data: bytes, suffix: str):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        sd = load_state_dict_file(path)
    except UserError as e:
        assert "\n" not in str(e)
        return None
    assert sd and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items())
    return sd


@FUZZ
@given(data=mutated(SEED_WEIGHTS), suffix=st.sampled_from([".safetensors", ".pth"]))
def test_weights_files_mutated(tmp_path, data, suffix):
    _load_weights_file(tmp_path, data, suffix)


_DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "X9", ""]


@st.composite
def safetensors_bytes(draw):
    """A safetensors file built field by field: header length, JSON header (dtypes, shapes,
    offsets, metadata), data; any of them may lie."""
    import json

    n = draw(st.integers(0, 3))
    header, data_len = {}, 0
    for i in range(n):
        shape = draw(st.lists(st.integers(-2, 5), max_size=3))
        start = draw(st.integers(0, 64))
        end = draw(st.integers(0, 96))
        header[f"t{i}"] = {"dtype": draw(st.sampled_from(_DTYPES)), "shape": shape,
                           "data_offsets": [start, end]}
        data_len = max(data_len, end)
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=4), st.one_of(
            st.text(max_size=4), st.integers()), max_size=2))
    text = json.dumps(header).encode()
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]
    claimed = draw(st.one_of(st.just(len(text)), st.integers(0, 2**64 - 1)))
    body = draw(st.binary(min_size=0, max_size=data_len + 8))
    return struct.pack("<Q", claimed) + text + body


@FUZZ
@given(data=safetensors_bytes())
def test_safetensors_headers(tmp_path, data):
    _load_weights_file(tmp_path, data, ".safetensors")


class _Evil:
    """Unpickling this creates the directory `marker` (os.mkdir): a trace if the pickle ever ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


# (what a .pth holds around the pickled object, whether it holds the object at all)
_FOREIGN = [(lambda evil: evil, True), (lambda evil: {"w": evil}, True),
            (lambda evil: {"state_dict": {"w": torch.zeros(1), "x": evil}}, True),
            (lambda evil: [torch.zeros(1)], False), (lambda evil: "text", False), (lambda evil: 3, False)]


@FUZZ
@given(foreign=st.sampled_from(_FOREIGN), protocol=st.integers(2, 5))
def test_pth_with_foreign_objects_is_refused(tmp_path, foreign, protocol):
    wrap, runs_code = foreign
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save(wrap(_Evil(marker)), buf, pickle_protocol=protocol)
    path = tmp_path / "x.pth"
    path.write_bytes(buf.getvalue())
    with pytest.raises(UserError):
        load_state_dict_file(path)
    assert not marker.exists()
    # the file is really hostile: an unsafe load of it runs the code (so this test could fail)
    torch.load(path, weights_only=False)
    assert marker.exists() == runs_code
    if runs_code:
        marker.rmdir()


@FUZZ
@given(entries=st.lists(st.tuples(st.sampled_from(["data.pkl", "version", "data/0", "byteorder", "x"]),
                                  st.binary(max_size=64)), max_size=4))
def test_pth_zip_members(tmp_path, entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, blob in entries:
            z.writestr(f"archive/{name}", blob)
    _load_weights_file(tmp_path, buf.getvalue(), ".pth")


_PARTS = ["stem", "stages", "0", "1", "blocks", "features", "_blocks", "conv", "bn", "dw", "se",
          "classifier", "head", "conv_stem", "_conv_stem", "weight", "bias", "running_mean", "module",
          "_orig_mod", "block", "fc"]


@st.composite
def state_dicts(draw):
    keys = draw(st.lists(st.lists(st.sampled_from(_PARTS), min_size=1, max_size=5).map(".".join),
                         min_size=1, max_size=8, unique=True))
    return {k: torch.zeros(draw(st.lists(st.integers(0, 3), max_size=4)),
                           dtype=draw(st.sampled_from([torch.float32, torch.int64, torch.bool])))
            for k in keys}


@pytest.fixture(scope="module")
def tiny_model():
    from effnet.arch.scaling import scale_compound
    from effnet.models import build, get_spec

    spec, _ = scale_compound(get_spec("efficientnet_b0"), -6)
    return build(spec, num_classes=3)


@FUZZ
@given(sd=state_dicts(), fmt=st.sampled_from([None, "effnet", "timm", "torchvision", "lukemelas", "x"]))
def test_key_maps_and_convert(tiny_model, sd, fmt):
    try:
        found = detect_format(sd)
        assert found in ("effnet", "timm", "torchvision", "lukemelas")
        convert(sd, tiny_model, fmt)
    except UserError as e:
        assert "\n" not in str(e)


@FUZZ
@given(noise=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["drop", "reshape", "int", "rename"])),
                      max_size=3), adapt=st.booleans())
def test_load_weights_of_damaged_state_dicts(tiny_model, noise, adapt):
    import copy

    model = copy.deepcopy(tiny_model)
    sd = dict(model.state_dict())
    keys = sorted(sd)
    for pick, op in noise:
        k = keys[pick % len(keys)]
        if k not in sd:
            continue
        if op == "drop":
            del sd[k]
        elif op == "reshape":
            sd[k] = sd[k].reshape(-1)[:1] if sd[k].numel() else torch.zeros(2)
        elif op == "int":
            sd[k] = sd[k].to(torch.int64)
        else:
            sd[k + "x"] = sd.pop(k)
    try:
        load_weights(model, sd, adapt=adapt)
    except UserError as e:
        assert "\n" not in str(e)


# --- flags, plans, recipes ----------------------------------------------------------------------
COMMANDS = [["models"], ["scale"], ["profile"], ["predict"], ["train"], ["eval"], ["schedule"],
            ["search", "compound"], ["experiment", "scaling"]]
_FLAG_WORDS = ["--phi", "--alpha", "--size", "--batch", "--topk", "--num-classes", "--lr", "--epochs",
               "-b", "--img-size", "--drop-path", "--set", "--stages", "--dropout", "--device",
               "--weights", "--base", "--trials", "--target-flops-ratio", "--amp", "-j", "--seed",
               "nan", "inf", "-inf", "1e999", "-1", "0", "3", "0.5", "x", "", "--", "-", "=", "a=b",
               "efficientnet_b0", "128:300", "\x00", "é"]


@FUZZ
@given(cmd=st.sampled_from(COMMANDS), words=st.lists(st.one_of(st.sampled_from(_FLAG_WORDS), st.text(max_size=6)),
                                                         max_size=6))
def test_flag_parsing_answers_or_exits_2(cmd, words, capsys):
    parser = build_parser([*cmd, *words])
    try:
        args = parser.parse_args([*cmd, *words])
    except SystemExit as e:
        assert e.code in (0, 2)
        err = capsys.readouterr().err
        assert e.code == 0 or err.strip().splitlines()[-1].startswith("effnet: error:")
        return
    for v in vars(args).values():  # every float flag that parsed is a real number
        if isinstance(v, float):
            assert np.isfinite(v)


_PLAN_WORDS = ["v2-s", "v2-m", "v2-l", "v2-s-code", "stages=", "size=", "randaug=", "mixup=", "cutmix=",
               "dropout=", "convention=", "size_divisor=", "paper", "code", "128:300", "0:0", ":", "nan",
               "inf", "-1", "0", "1e9", "3", "0.5", ","]


@FUZZ
@given(text=st.one_of(st.lists(st.sampled_from(_PLAN_WORDS), max_size=8).map("".join), st.text(max_size=30)))
def test_progressive_plan_text(text):
    try:
        plan = plan_from_text(text)
    except ValueError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(plan, ProgressivePlan)
    from effnet.train.progressive import table

    table(plan)  # a plan that parsed can be laid out


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=8), st.lists(st.floats(), max_size=3), st.sampled_from(
                        ["nan", "inf", "none", "1e999", "0:1", "resize", "true", "rmsproptf", "cosine"]))


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(sorted(FIELD_TYPES) + ["bogus_key", ""]), _VALUES, max_size=4))
def test_recipe_overrides(changes):
    try:
        r = override(get_recipe("quick"), changes, "fuzz")
    except UserError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(r, Recipe)
    for k, v in r.to_dict().items():
        if isinstance(v, float):
            assert np.isfinite(v), k


@FUZZ
@given(text=st.one_of(st.text(max_size=60), st.lists(st.sampled_from(
    ["lr: ", "recipe:", "  ", "epochs: ", "- ", "nan", "{", "}", "[", "!!python/object:os.system", "\n",
     "scale: ", "0.1", "x", "&a", "*a", ": "]), max_size=10).map("".join)),
    suffix=st.sampled_from([".yaml", ".json"]))
def test_recipe_config_files(tmp_path, text, suffix):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    try:
        data = read_config(path)
        override(get_recipe("quick"), data, str(path))
    except UserError as e:
        assert "\n" not in str(e)


# --- regressions found by fuzzing ---------------------------------------------------------------
@pytest.mark.parametrize("damage, message", [
    (lambda sd: sd.pop("classifier.bias"), "half a classifier"),  # was a KeyError
    (lambda sd: sd.update({"classifier.weight": sd["classifier.weight"].reshape(-1)[:1]}),
     "expected \\(classes, features\\)"),  # was an IndexError
])
def test_found_by_fuzzing_damaged_classifier(tiny_model, damage, message):
    import copy

    model = copy.deepcopy(tiny_model)
    sd = dict(model.state_dict())
    damage(sd)
    for adapt in (False, True):
        with pytest.raises(UserError, match=message):
            load_weights(model, sd, adapt=adapt)


def test_found_by_fuzzing_control_characters_stay_on_one_line(capsys):
    """An argument holding a carriage return or newline split the error over two lines."""
    from effnet.cli import main

    assert main(["models", "nan", "\r0", "a\nb"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("effnet: error: ") and "\\r0" in err


@pytest.mark.parametrize("text", ["0:", "1: 2\n", "recipe: {3: 1}\n"])
def test_found_by_fuzzing_config_keys_that_are_not_names(tmp_path, text):
    """A YAML mapping with a number (or list) as key was a TypeError deep in override()."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match="mapping of recipe keys"):
        read_config(path)


def test_found_by_fuzzing_plan_key_with_a_newline():
    """A schedule key holding a newline put the newline into the error message."""
    with pytest.raises(ValueError) as e:
        plan_from_text("0\n0=")
    assert "\n" not in str(e.value) and "unknown schedule key '0\\n0'" in str(e.value)
