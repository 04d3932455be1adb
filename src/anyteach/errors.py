"""User-facing errors.

An `AnyteachError` is a mistake in what the user asked for (an unknown model name, a missing file,
an option out of range). The CLI prints its message on one line and exits with status 2, without a
traceback; everything else is a bug and keeps its traceback.
"""


class AnyteachError(Exception):
    """A problem with the user's input, reported as one clear line."""
