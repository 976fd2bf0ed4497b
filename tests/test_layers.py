"""The package's layers (DESIGN.md): data flows one way, so no module imports a higher layer, not
even inside a function, and the architecture layer stays pure data (no torch)."""

import ast
from pathlib import Path

import effnet

ROOT = Path(effnet.__file__).parent
# lowest first; modules of one rank may import each other's. inference.py serves the commands and
# tools (predict, eval, quantize, Grad-CAM) and reads exported programs, so it ranks with tools
LAYERS = [("errors", "fileio", "tables", "lazy", "signals"), ("arch",), ("nn",), ("data",), ("weights",),
          ("pretrained",), ("models",), ("rundir",), ("train",), ("tools", "inference"),
          ("search",), ("cli", "__main__")]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _imports(path: Path) -> list[str]:
    """Every module an effnet file imports (absolute names), at any depth of the file."""
    package = list(path.relative_to(ROOT.parent).parts[:-1])  # what `from .` names
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            out.append(".".join(base + ([node.module] if node.module else [])))
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "effnet" and len(parts) > 1 else None


def test_no_module_imports_a_higher_layer():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        here = path.relative_to(ROOT).parts[0].removesuffix(".py")
        if here == "__init__":  # the package's lazy public names point anywhere
            continue
        for target in _imports(path):
            there = _layer(target)
            if there in RANK and RANK[there] > RANK[here]:
                wrong.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_arch_is_pure_data_and_pretrained_builds_no_named_model():
    for path in (ROOT / "arch").rglob("*.py"):
        assert not [t for t in _imports(path) if t.split(".")[0] in ("torch", "torchvision")], path
    for path in (ROOT / "pretrained").rglob("*.py"):
        assert "effnet.models" not in _imports(path), path
