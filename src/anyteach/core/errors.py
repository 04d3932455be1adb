"""User-facing errors.

An `AnyteachError` is a problem reported as one clear line: a mistake in what the user asked for
(an unknown model name, a missing file, an option out of range; exit status 2), or a run that could
not finish for a reason the user must act on (`RunFailed`: training diverged, the disk is full;
exit status 1). The CLI prints the message without a traceback (`--debug` shows it); an operating
system error on a path the user gave (permission denied, a file where a directory should be) is
reported the same way. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno


class AnyteachError(Exception):
    """A problem with the user's input, reported as one clear line (CLI exit status 2)."""

    exit_code = 2


class RunFailed(AnyteachError):
    """A run stopped without a result: its input was valid but training or writing failed (exit status 1)."""

    exit_code = 1


class TrainingDiverged(RunFailed):
    """The loss or the weights became NaN or infinite; the last good checkpoint is kept."""


class CorruptCheckpoint(RunFailed):
    """A run's checkpoint cannot be read; `restart` discards it and starts the run again."""


class AnyteachWarning(UserWarning):
    """Something the user should know that does not stop the command (the CLI prints it as one line)."""


_NO_SPACE = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def os_error_message(error: OSError) -> tuple[str, int]:
    """One line and an exit status for an operating-system error on a path.

    A full disk (or a file-size limit) is a failed run (status 1); permissions, missing directories
    and a file where a directory belongs are the user's to fix (status 2).
    """
    where = f": {error.filename}" if error.filename else ""
    reason = (error.strerror or str(error)).lower()
    if error.errno in _NO_SPACE:
        return f"cannot write{where}: {reason} (earlier results and checkpoints are kept)", RunFailed.exit_code
    return f"{reason}{where}", AnyteachError.exit_code


__all__ = ["AnyteachError", "AnyteachWarning", "CorruptCheckpoint", "RunFailed", "TrainingDiverged", "os_error_message"]
