"""Registries: named things of one kind (methods, target rules, losses, ...), reachable by name.

Every extension point of anyteach is a `Registry` (torchdistill style): a method preset, a target
rule, a loss, a weight regulariser, an architecture or a model-reference kind is added by one
decorated function or class, and is then reachable by its name from the Python API, the CLI and
study definitions. A registry behaves like a dict, refuses a second thing under a name that is
taken, and answers an unknown name with an error that lists the known ones.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Callable, Generic, Iterator, TypeVar

from .errors import AnyteachError

T = TypeVar("T")


class RegistrationError(AnyteachError, ValueError):
    """A name registered twice, or a preset naming parts that are not registered."""


class UnknownName(AnyteachError, KeyError):
    """A name that is not in a registry (a `KeyError`, so `registry.get(name)` works as for a dict)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


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

    def decorator(self, name: str, wrap: Callable[[object], T] | None = None) -> Callable:
        """A decorator registering what it decorates under `name` (passed through `wrap` first, if
        given, e.g. to attach metadata) and returning the decorated object unchanged."""

        def register(obj):
            self.add(name, wrap(obj) if wrap is not None else obj)
            return obj

        return register


__all__ = ["Registry", "RegistrationError", "UnknownName"]
