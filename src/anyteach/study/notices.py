"""What a study should say before it starts, about choices that are easy to miss in its definition:
models of a built-in zoo measured on another draw of the data than the one they were trained on
(`models: mnist1d@7` with `data: mnist1d`: those models never saw that data's splits, so their
"complementary knowledge" is partly a shift of data), and a transfer split cut to a fraction of
train (a named recipe such as `paper-imagenet` does it: 10%). The CLI prints these lines at start.
"""

from __future__ import annotations

from ..core.errors import AnyteachError
from ..data.references import load_dataset
from .spec import StudySpec


def _zoo_of(refs: tuple[str, ...]) -> tuple[str, int] | None:
    """The (zoo, seed) every reference belongs to, or None when they are not all of one built-in zoo."""
    from ..zoo.zoos import parse_zoo_ref

    zoos = set()
    for ref in refs:
        if not ref.startswith("zoo:"):
            return None
        try:
            name, seed, _ = parse_zoo_ref(ref)
        except AnyteachError:
            return None
        zoos.add((name, seed))
    return next(iter(zoos)) if len(zoos) == 1 else None


def study_notices(spec: StudySpec) -> list[str]:
    """Lines to show before a study runs (empty when there is nothing to say)."""
    from ..zoo import get_zoo

    notices = []
    zoo = _zoo_of(spec.models)
    if zoo is not None:
        own = get_zoo(*zoo).data
        # the draw the models were trained on (a larger glyphs eval split is the same draw, measured on more)
        if load_dataset(own).split_identity("train") != load_dataset(spec.data).split_identity("train"):
            notices.append(
                f"the models are zoo {zoo[0]}@{zoo[1]}'s, trained on {own!r}, but the study measures them on "
                f"{spec.data!r}, another draw whose splits they never saw; for the zoo's own draw use "
                f"data: {own}"
            )
    if "fraction=" in spec.data:
        fraction = spec.data.split("fraction=", 1)[1].split(",", 1)[0]
        notices.append(
            f"runs transfer on a stratified fraction {fraction} of the train split ({spec.data}); the "
            "recipe or the data reference sets it"
        )
    return notices


__all__ = ["study_notices"]
