"""Public names of a package that load on first use (PEP 562), so importing the package stays
cheap: `effnet -h` answers without torch, the model factory reads the data config without
torchvision's transforms."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_names(package: str, names: Mapping[str, str], namespace: dict
               ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The package's `__getattr__` and `__dir__`: `names` maps a public name to the submodule
    (relative to `package`) that defines it; a loaded name is kept in `namespace`."""

    def __getattr__(name: str):
        if name in names:
            value = getattr(importlib.import_module(f".{names[name]}", package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
