"""The layers of docs/architecture.md hold in the code: every folder (and top-level module) is in the
table, every module lives in one, imports go only to its own or a lower layer, and there is no import
circle (imports inside functions included)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "anyteach"


def documented_layers() -> dict[str, int]:
    """Folder (`core`) or top-level module (`demo`; `anyteach` is the package itself) -> layer."""
    layers = {}
    for line in (REPO / "docs" / "architecture.md").read_text().splitlines():
        match = re.match(r"^\|\s*(\d+)\s*\|(.*?)\|", line)
        if match:
            for unit in re.findall(r"`([\w.]+)/?`", match.group(2)):
                assert unit not in layers, f"{unit} is listed twice in docs/architecture.md"
                layers[unit] = int(match.group(1))
    return layers


def layer_of(module: str, layers: dict[str, int]) -> int:
    """A module's layer: its folder's, or its own for a module at the top of the package."""
    return layers[module.split(".")[0]]


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
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
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


def test_every_module_is_in_a_documented_folder_or_layer():
    layers = documented_layers()
    units = {module.split(".")[0] for module in import_graph()}
    assert units == set(layers)


def test_every_folder_says_what_it_holds_and_what_it_may_import():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        text = init.read_text()
        assert text.startswith('"""') and "May import:" in text, f"{init.parent.name}/__init__.py"


def test_modules_import_only_their_own_or_lower_layers():
    layers = documented_layers()
    upward = [
        f"{m} (layer {layer_of(m, layers)}) imports {d} (layer {layer_of(d, layers)})"
        for m, deps in import_graph().items()
        for d in deps
        if layer_of(d, layers) > layer_of(m, layers)
    ]
    assert upward == []


def test_there_is_no_import_circle():
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                circles.append(" -> ".join(path[path.index(dep) :] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_old_module_paths_work_for_one_release_with_a_warning():
    import importlib
    import warnings

    import pytest

    import anyteach
    from anyteach.core.moved import MOVED_MODULES
    from anyteach.training.trainer import Trainer

    with pytest.warns(DeprecationWarning, match="anyteach.trainer has moved to anyteach.training.trainer"):
        from anyteach.trainer import Trainer as old
    assert old is Trainer
    import anyteach.transfer  # noqa: F401  (the old module path must not hide the API function)

    assert callable(anyteach.transfer) and anyteach.transfer.__module__ == "anyteach.training.transfer"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for old_name, new_name in MOVED_MODULES.items():
            assert dir(importlib.import_module(f"anyteach.{old_name}")) == dir(
                importlib.import_module(f"anyteach.{new_name}")
            )
