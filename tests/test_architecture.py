"""The layers of docs/architecture.md hold in the code: every module is in the table, imports go only
to its own or a lower layer, and there is no import circle (imports inside functions included)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "anyteach"


def documented_layers() -> dict[str, int]:
    """Module name (relative to the package; `anyteach` is the package itself) -> layer."""
    layers = {}
    for line in (REPO / "docs" / "architecture.md").read_text().splitlines():
        match = re.match(r"^\|\s*(\d+)\s*\|(.*?)\|", line)
        if match:
            for module in re.findall(r"`([\w.]+)`", match.group(2)):
                assert module not in layers, f"{module} is listed twice in docs/architecture.md"
                layers[module] = int(match.group(1))
    return layers


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "anyteach"


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules `path` imports, anywhere in the file (`from . import x` counts as `x`)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = [p for p in package.split(".") if p and p != "anyteach"]
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("anyteach"):
                target = node.module.removeprefix("anyteach").lstrip(".")
            else:
                continue
            submodules = {f"{target}.{a.name}".lstrip(".") for a in node.names} & modules
            found |= submodules or ({target or "anyteach"} & (modules | {"anyteach"}))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("anyteach"):
                    found.add(alias.name.removeprefix("anyteach").lstrip(".") or "anyteach")
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def test_every_module_is_in_the_documented_layers():
    assert set(import_graph()) == set(documented_layers())


def test_modules_import_only_their_own_or_lower_layers():
    layers = documented_layers()
    upward = [f"{m} (layer {layers[m]}) imports {d} (layer {layers[d]})"
              for m, deps in import_graph().items() for d in deps if layers[d] > layers[m]]
    assert upward == []


def test_there_is_no_import_circle():
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                circles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []
