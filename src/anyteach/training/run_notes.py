"""What a finished transfer run should tell its user in one line: that it exported the original
student because the WiSE guard chose α = 0, or that the student did not move at all (no eval
sample changed from right to wrong or back), which a too-small update (steps x lr far below the
preset's recipe) gives. The CLI prints the line at the end of a run; a study's summary counts them.
Pure functions over a run's final metrics: no models, no files.
"""

from __future__ import annotations

from typing import Any, Mapping

KEPT_ORIGINAL = "kept the original student (WiSE α = 0)"
DID_NOT_MOVE = "did not move the student"
NOTE_KINDS = (KEPT_ORIGINAL, DID_NOT_MOVE)
"""The kinds of notes, as the summary names them."""


def note_kind(final: Mapping[str, Any], trains: bool) -> str | None:
    """`KEPT_ORIGINAL`, `DID_NOT_MOVE` or None for a run's final metrics.

    Args:
        final: the run's `final.json` (`wise_alpha`, `gain_count`, `loss_count`).
        trains: the method trains the student (not the `ensemble` baseline).
    """
    if not trains:
        return None
    if final.get("wise_alpha") is not None and float(final["wise_alpha"]) == 0.0:
        return KEPT_ORIGINAL
    if int(final.get("gain_count") or 0) == 0 and int(final.get("loss_count") or 0) == 0:
        return DID_NOT_MOVE
    return None


def _number(value: float) -> str:
    return f"{value:.3g}"


def run_note(
    final: Mapping[str, Any], trains: bool, steps: int | None, lr: float | None, recipe: Mapping[str, Any] | None = None
) -> str | None:
    """The one line a run ends with when it changed nothing, else None.

    Args:
        final: the run's final metrics.
        trains: the method trains the student.
        steps: optimiser steps the run took (None: unknown).
        lr: the run's (peak) learning rate.
        recipe: the preset's recipe (`methods.preset_recipe`), named as what to try.
    """
    kind = note_kind(final, trains)
    if kind is None:
        return None
    budget = f"{steps} steps at lr {_number(lr)}" if steps is not None and lr is not None else "its steps and lr"
    if recipe:
        shown = ", ".join(f"{k} {_number(v) if isinstance(v, float) else v}" for k, v in recipe.items())
        suggestion = f"the preset's recipe is {shown}"
    else:
        suggestion = "more steps or a higher lr may move it"
    if kind == KEPT_ORIGINAL:
        return (
            f"note: the WiSE guard chose α = 0, so the exported student is the original one unchanged (the "
            f"trained student scored lower on the calib split after {budget}); {suggestion}"
        )
    return (
        f"note: the student did not move: no eval sample changed between right and wrong after {budget}, an "
        f"update too small to matter; {suggestion}"
    )


__all__ = ["DID_NOT_MOVE", "KEPT_ORIGINAL", "NOTE_KINDS", "note_kind", "run_note"]
