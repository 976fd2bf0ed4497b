"""The package's layers (docs/architecture.md): data flows one way, so no module imports a higher
layer, not even inside a function, no two modules import each other (directly or round a loop),
and the architecture layer stays pure data (no torch). Read from the source (ast), nothing runs."""

import ast
from pathlib import Path

import effnet

ROOT = Path(effnet.__file__).parent
# lowest first; modules of one rank may import each other's. inference.py serves the commands and
# tools (predict, eval, quantize, Grad-CAM) and reads exported programs, so it ranks with tools
LAYERS = [("errors", "fileio", "tables", "lazy", "signals"), ("arch",), ("nn", "devices"), ("data",), ("weights",),
          ("pretrained",), ("rundir",), ("models",), ("train",), ("tools", "inference"),
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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """effnet module -> the effnet modules it imports (`from .pkg import mod` names the module)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                mod = ".".join(base + ([node.module] if node.module else []))
                found |= {f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    assert not _cycles(_import_graph())


def test_the_cycle_finder_finds_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_has_a_layer():
    tops = {p.relative_to(ROOT).parts[0].removesuffix(".py") for p in ROOT.rglob("*.py")}
    assert not tops - set(RANK) - {"__init__"}, "add new modules to LAYERS (and docs/architecture.md)"


def test_docs_architecture_lists_the_same_layers():
    import re

    text = (ROOT.parents[1] / "docs" / "architecture.md").read_text()
    listed = [tuple(re.findall(r"`([\w_]+)`", line.split(":", 1)[1]))
              for line in text.splitlines() if re.match(r"\d+\. \w+: `", line)]
    assert listed == [tuple(names) for names in LAYERS]
