"""Fetch a pretrained row's file and convert it once to effnet safetensors.

Where files go: torch.hub's standard cache, `torch.hub.get_dir()/checkpoints` ($TORCH_HOME), under
the published file name, with the converted `<stem>.effnet.safetensors` beside it; files from the
Hugging Face hub stay in its own cache. Later loads read only the converted file (nothing unpickled).

Order of sources: an installed pip package that ships the weights (offline), a file already placed
in the cache, the row's URL (torch.hub.download_url_to_file with the sha256 prefix in the file
name checked), then the Hugging Face hub when huggingface_hub is installed (`pip install effnet[hub]`).
"""

from __future__ import annotations

import hashlib
import os
import sys
from http.client import HTTPException
from pathlib import Path
from urllib.parse import urlparse

import torch

from ..errors import UserError, error_line
from ..nn.model import EfficientNet
from ..weights import detect_format, load_state_dict_file, load_weights, save_weights
from .config import row_config
from .table import OfflineSource, PretrainedWeights

URL_BASE_ENV = "EFFNET_HUB_URL"  # serve every file from this mirror directory (tests, air-gapped sites)
HF_FILENAME = "model.safetensors"  # what timm's hub repos hold


def checkpoints_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def file_name(row: PretrainedWeights) -> str:
    """The published file's name (hub-only rows: `<tag>.safetensors`)."""
    return Path(urlparse(row.url).path).name if row.url else f"{row.tag}.safetensors"


def converted_path(row: PretrainedWeights) -> Path:
    return checkpoints_dir() / f"{Path(file_name(row)).stem}.effnet.safetensors"


def local_weights(row: PretrainedWeights, url_base: str | None = None, progress: bool | None = None) -> Path:
    """The row's converted effnet safetensors, fetched and converted on first use. `progress`
    (default: when stderr is a terminal) shows torch.hub's download bar."""
    progress = sys.stderr.isatty() if progress is None else progress
    out = converted_path(row)
    if out.is_file():
        return out
    src, key_map, downloaded = _source_file(row, url_base, progress)
    try:
        _convert(row, src, key_map, out)
    except UserError:
        if downloaded:  # a damaged download must not stay to be found next time
            src.unlink(missing_ok=True)
        raise
    return out


def offline_path(source: OfflineSource) -> Path | None:
    """The file an installed package ships, or None when the package is not installed."""
    import importlib

    try:
        obj = importlib.import_module(source.module)
    except ImportError:
        return None
    for part in source.getter.split("."):
        obj = getattr(obj, part)
    path = Path(os.fspath(obj()))
    return path if path.is_file() else None


def _source_file(row: PretrainedWeights, url_base: str | None, progress: bool) -> tuple[Path, str, bool]:
    if row.offline is not None:
        path = offline_path(row.offline)
        if path is not None:
            return path, row.offline.key_map, False
    placed = checkpoints_dir() / file_name(row)
    if placed.is_file():
        _check_hash(placed)
        return placed, row.key_map, False
    base = url_base or os.environ.get(URL_BASE_ENV)
    url = f"{base.rstrip('/')}/{file_name(row)}" if base else row.url
    if url:
        _download(row, url, placed, progress)
        return placed, row.key_map, True
    if row.hf_hub:
        return _hf_download(row, placed), row.key_map, True
    raise UserError(f"{row.tag} has no download source; place its file at {placed}")


def _hash_prefix(name: str) -> str | None:
    m = torch.hub.HASH_REGEX.search(name)
    return m.group(1) if m else None


def _check_hash(path: Path) -> None:
    """A file placed by hand must be the published one: same sha256 prefix as its name."""
    prefix = _hash_prefix(path.name)
    if not prefix:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if not digest.hexdigest().startswith(prefix):
        path.unlink()
        raise UserError(f"removed {path}: its sha256 does not start with {prefix}, so it is not the "
                        f"published file (corrupt or incomplete); fetch it again")


def _download(row: PretrainedWeights, url: str, dst: Path, progress: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    prefix = _hash_prefix(dst.name)
    try:
        # writes a temp file beside dst, checks the sha256 prefix, then renames; the temp file is
        # removed on any failure, so dst is the whole verified file or nothing
        torch.hub.download_url_to_file(url, str(dst), hash_prefix=prefix, progress=progress)
    except RuntimeError as e:
        dst.unlink(missing_ok=True)
        if "invalid hash value" not in str(e):
            raise
        raise UserError(f"refused {url}: its sha256 does not start with {prefix} (corrupt or "
                        f"incomplete download); nothing was kept") from None
    except (OSError, HTTPException, ValueError) as e:
        dst.unlink(missing_ok=True)
        raise UserError(f"cannot download {row.tag} from {url} ({error_line(e)}); without network, "
                        f"fetch that file elsewhere and place it at {dst}") from None


def _hf_download(row: PretrainedWeights, placed: Path) -> Path:
    where = f"https://huggingface.co/{row.hf_hub}/resolve/main/{HF_FILENAME}"
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise UserError(f"{row.tag} is published on the Hugging Face hub only: pip install "
                        f"huggingface_hub (effnet[hub]), or fetch {where} and place it at "
                        f"{placed}") from None
    try:
        return Path(hf_hub_download(repo_id=row.hf_hub, filename=HF_FILENAME))
    except Exception as e:  # offline, no such repo, HTTP errors: huggingface_hub has many types
        raise UserError(f"cannot download {row.tag} from the Hugging Face hub ({error_line(e)}); "
                        f"without network, fetch {where} and place it at {placed}") from None


def _convert(row: PretrainedWeights, src: Path, key_map: str, out: Path) -> None:
    sd = load_state_dict_file(src)
    found = detect_format(sd)
    if found != key_map:
        raise UserError(f"{src} has {found} keys but {row.tag} is published in {key_map} layout; "
                        f"is it the right file?")
    model = EfficientNet.from_config(row_config(row))
    load_weights(model, sd)
    save_weights(model, out, metadata={"pretrained": row.tag, "source_file": src.name})
