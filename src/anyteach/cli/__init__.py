"""The `anyteach` command: a thin layer over the Python API (every command has an API twin).

Each command parses its flags, calls one API function and prints what it returns; any decision (which
data, which method, which control) is made by the API, so a script can make it too. `app` holds the
command group, the consoles and the error handling; `zoo`, `analysis`, `transfer` and `study` hold
the commands; `spellings` the old spellings of the command line, still accepted for one release.

May import: everything.
"""

from . import analysis, study, transfer, zoo  # noqa: F401  (each registers its commands on `app`)
from .app import app, main

__all__ = ["app", "main"]
