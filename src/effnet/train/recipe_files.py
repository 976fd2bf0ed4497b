"""Recipe files: the YAML or JSON that `effnet train --config FILE` reads (a run's own config.yaml
too), parsed safely (`yaml.safe_load`: a `!!python/object` tag is an error, not an object)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UserError, error_line


def read_config(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML or JSON config file; a run's `config.yaml` holds it under `recipe`."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such config file: {path}")
    try:
        data = yaml.safe_load(path.read_text()) if path.suffix != ".json" else json.loads(
            path.read_text())
    except (yaml.YAMLError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"cannot parse config file {path}: {error_line(e)}") from None
    if data is None:
        data = {}
    if isinstance(data, dict) and isinstance(data.get("recipe"), dict):
        data = data["recipe"]
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise UserError(f"config file {path} must hold a mapping of recipe keys")
    return dict(data)
