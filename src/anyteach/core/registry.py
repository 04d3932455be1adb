"""Registries: named things of one kind (methods, target rules, losses, ...), reachable by name.

Every extension point of anyteach is a `Registry` (torchdistill style): a method preset, a target
rule, a loss, a weight regulariser, an architecture or a model-reference kind is added by one
decorated function or class, and is then reachable by its name from the Python API, the CLI and
study definitions. A registry behaves like a dict, refuses a second thing under a name that is
taken, and answers an unknown name with an error that lists the known ones. `import_plugins`
imports a user's own module of registrations (what a study's `imports` key names).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar

from .errors import AnyteachError

T = TypeVar("T")


class RegistrationError(AnyteachError, ValueError):
    """A name registered twice, or a preset naming parts that are not registered."""


class UnknownName(AnyteachError, KeyError):
    """A name that is not in a registry (a `KeyError`, so `registry.get(name)` works as for a dict)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def import_plugins(plugins: Sequence[str]) -> None:
    """Import user modules that register methods, losses, target rules, ... (once per process).

    A plugin is a module name (`mylab.methods`, importable on `sys.path`) or the path of a Python
    file (`./my_methods.py`). Studies import their plugins in the driver and in every worker
    process or Ray task before a run, so a user-registered method works wherever runs execute (on a
    Ray cluster the module or file must exist on every node).

    Raises:
        AnyteachError: a plugin that cannot be found or fails to import (the message names it).
    """
    for plugin in plugins:
        try:
            if plugin.endswith(".py") or os.sep in plugin or "/" in plugin:
                path = Path(plugin).expanduser().resolve()
                digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
                name = f"anyteach_plugin_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{digest}"
                if name in sys.modules:
                    continue
                if not path.is_file():
                    raise AnyteachError(f"plugin file not found: {plugin}")
                spec = importlib.util.spec_from_file_location(name, path)
                if spec is None or spec.loader is None:
                    raise AnyteachError(f"cannot import plugin file {plugin}: not a Python module")
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
            else:
                importlib.import_module(plugin)
        except AnyteachError:
            raise
        except SystemExit as e:  # a plugin must not end the study (with exit 0, having run nothing)
            raise AnyteachError(f"plugin {plugin!r} called sys.exit({e.code!r}) while being imported") from e
        except Exception as e:  # noqa: BLE001 - whatever a user's module raises, name the module
            raise AnyteachError(f"cannot import plugin {plugin!r}: {type(e).__name__}: {e}") from e


class Registry(MutableMapping[str, T], Generic[T]):
    """Things of one kind by name.

    Args:
        kind: what the registry holds, for messages (`"method"`, `"target rule"`, ...).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownName(f"unknown {self.kind} {name!r}; known: {', '.join(self._items) or 'none'}") from None

    def __setitem__(self, name: str, item: T) -> None:
        if name in self._items:
            raise RegistrationError(f"a {self.kind} named {name!r} is already registered")
        self._items[name] = item

    def __delitem__(self, name: str) -> None:
        del self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"

    def add(self, name: str, item: T) -> T:
        """Register `item` under `name` and return it.

        Raises:
            RegistrationError: `name` is taken.
        """
        self[name] = item
        return item

    def decorator(self, name: str, wrap: Callable[[Any], T] | None = None) -> Callable:
        """A decorator registering what it decorates under `name` (passed through `wrap` first, if
        given, e.g. to attach metadata) and returning the decorated object unchanged."""

        def register(obj):
            self.add(name, wrap(obj) if wrap is not None else obj)
            return obj

        return register


__all__ = ["Registry", "RegistrationError", "UnknownName", "import_plugins"]
