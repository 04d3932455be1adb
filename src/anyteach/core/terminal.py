"""What reaches the terminal: text from users' files (model, dataset and study names, labels, paths) shown with
its control characters written out, so an escape sequence in a name is displayed, never obeyed by the terminal;
and a rich console that applies this to everything it prints. Every console of anyteach is a `SafeConsole`.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.markup import escape

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """`text` with its control characters (all but newline and tab) written out, e.g. ESC as `\\x1b`."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class SafeConsole(Console):
    """A rich console that never passes control characters of the text it prints on to the terminal, and prints
    a text whose brackets are not valid markup (a name like `x[/b]`) as it is instead of failing."""

    def render_str(self, text: str, **kwargs: Any):
        from rich.errors import MarkupError

        text = visible(text)
        try:
            return super().render_str(text, **kwargs)
        except MarkupError:
            return super().render_str(escape(text), **kwargs)


__all__ = ["SafeConsole", "visible"]
