"""Published pretrained weights by name: `effnet.create_model("efficientnet_b0", pretrained=True)`.

`table` holds the rows (data), `hub` fetches a row's file into torch.hub's cache and converts it once
to effnet safetensors. `resolve_pretrained(tag)` is the one entry point for callers (the model
factory, effnet.models): it returns the row and a local effnet safetensors path; `row_config(row)`
is the config of the network that holds a row's weights. Nothing here builds a named model
(effnet.models sits above this package and builds through it).
"""

from __future__ import annotations

import difflib
import fnmatch
from pathlib import Path

from ..errors import UserError
from .config import row_config
from .table import ROWS, OfflineSource, PretrainedWeights

__all__ = ["ROWS", "OfflineSource", "PretrainedWeights", "default_tag", "find_pretrained",
           "list_pretrained", "resolve_pretrained", "row_config"]

_BY_TAG = {r.tag: r for r in ROWS}


def list_pretrained(pattern: str = "*") -> list[PretrainedWeights]:
    """Rows whose tag or effnet model name matches a shell-style pattern, e.g. "*lite*"."""
    return [r for r in ROWS if fnmatch.fnmatch(r.tag, pattern) or fnmatch.fnmatch(r.model, pattern)]


def default_tag(model: str) -> str | None:
    """The tag `pretrained=True` loads for an effnet model name (None when none is published)."""
    return next((r.tag for r in ROWS if r.model == model), None)


def find_pretrained(name: str) -> PretrainedWeights:
    """The row for a tag (`efficientnet_b0.ra_in1k`), an effnet model name or a bare arch
    (`efficientnet_v2_s`): the latter two give their default row."""
    if name in _BY_TAG:
        return _BY_TAG[name]
    row = next((r for r in ROWS if name in (r.model, r.arch)), None)
    if row is not None:
        return row
    same_arch = [r.tag for r in ROWS if r.arch == name.split(".")[0]]
    close = same_arch or difflib.get_close_matches(name, [*_BY_TAG, *{r.model for r in ROWS}], n=3,
                                                   cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `effnet models --pretrained`"
    raise UserError(f"no pretrained weights named {name!r}{hint}")


def resolve_pretrained(name: str | PretrainedWeights, url_base: str | None = None,
                       progress: bool | None = None) -> tuple[PretrainedWeights, Path]:
    """(row, local effnet safetensors file) for a tag, model name or row; fetches and converts the
    published file on first use. `url_base` (or $EFFNET_HUB_URL) serves every file from a mirror
    directory instead: `<url_base>/<file name>` (http://, https:// or file://)."""
    from .hub import local_weights

    row = name if isinstance(name, PretrainedWeights) else find_pretrained(name)
    return row, local_weights(row, url_base=url_base, progress=progress)

