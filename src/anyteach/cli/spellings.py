"""Old spellings of the command line, still accepted for one release with a deprecation message.

The CLI gives each short flag one meaning across verbs (`-o` is `--out` everywhere), `--json`
prints JSON everywhere (a file to write is `--json-out`), and seeds are named for what they seed
(`study --pair-seed` draws the pairs; `--seed` seeds a run's training). `DEPRECATED` lists what
changed; `CommandGroup` rewrites an old spelling into the new one before the arguments are parsed
(so the `anyteach` command, `python -m anyteach` and a test's `CliRunner` all accept it) and says so
on stderr.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

from typer.core import TyperGroup


@dataclass(frozen=True)
class OldSpelling:
    """One flag spelling of an earlier release.

    Attributes:
        verb: the command it belongs to.
        old: the flag as it was written (`-o`).
        new: the flag that replaces it (`--option`).
        applies: whether the value that follows is meant the old way (None: always).
        why: one line on what changed.
    """

    verb: str
    old: str
    new: str
    applies: Callable[[str | None], bool] | None = None
    why: str = ""


def _key_value(value: str | None) -> bool:
    return value is not None and "=" in value and not value.startswith("-")


def _a_path(value: str | None) -> bool:
    return value is not None and not value.startswith("-") and (value.endswith(".json") or "/" in value)


DEPRECATED: tuple[OldSpelling, ...] = (
    OldSpelling("transfer", "-o", "--option", _key_value, "-o means --out in every command"),
    OldSpelling("flips", "--json", "--json-out", _a_path, "--json prints JSON in every command; --json-out writes it"),
    OldSpelling("study", "--seed", "--pair-seed", None, "the study's seed draws the pairs; runs are seeded by --seeds"),
)
"""The spellings of the previous release that are rewritten (with a message) until the next one."""


def _verb(args: list[str]) -> str | None:
    return next((a for a in args if not a.startswith("-")), None)


def modernise(args: list[str], warn: Callable[[str], None] | None = None) -> list[str]:
    """`args` with every old spelling (`DEPRECATED`) replaced by the new one; `warn` is told of each."""
    verb = _verb(args)
    out = list(args)
    for spelling in DEPRECATED:
        if spelling.verb != verb:
            continue
        for i, arg in enumerate(out):
            flag, eq, inline = arg.partition("=")
            if flag != spelling.old:
                continue
            value = inline if eq else (out[i + 1] if i + 1 < len(out) else None)
            if spelling.applies is not None and not spelling.applies(value):
                continue
            out[i] = spelling.new + (eq + inline if eq else "")
            if warn is not None:
                warn(f"`anyteach {verb} {spelling.old}` is deprecated ({spelling.why}); use {spelling.new}")
    return out


def _to_stderr(message: str) -> None:
    print(f"deprecated: {message}", file=sys.stderr)


class CommandGroup(TyperGroup):
    """The `anyteach` command group: rewrites old spellings (`modernise`) before parsing."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, modernise(args, _to_stderr))


__all__ = ["DEPRECATED", "CommandGroup", "OldSpelling", "modernise"]
