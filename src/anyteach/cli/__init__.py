"""The `anyteach` command: a thin layer over the Python API (every command has an API twin).

Each command parses its flags, calls one API function and prints what it returns; any decision (which
data, which method, which control) is made by the API, so a script can make it too.

May import: everything.
"""

from .commands import app, main

__all__ = ["app", "main"]
