"""timm's pretrained models as a zoo: listing, filtering and expansion to model references.

Unlike the built-in zoos, nothing is trained here: the zoo is timm's registry of pretrained tags
(`resnet50.a1_in1k`, ...), each a model reference `timm:<tag>` whose weights come from the Hugging
Face hub (or its offline cache) when a run first loads it. Everything listed comes from what the
installed timm package bundles, never from the network: the family (from the architecture),
the input size and class count (from the tag's pretrained config), the parameter count (the
architecture built on the meta device, no weights allocated; cached per timm version, since
building a thousand architectures takes minutes on one core), and the top-1 accuracy where the
bundled metadata states one (timm 1.0 bundles none: its result tables live in its repository,
not in the package, so that column is empty).
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any, Callable

from ..core.errors import AnyteachError
from ..core.io import cache_dir, write_json
from ..models.references import count_parameters, timm_family

NAME = "timm"
IMAGENET_CLASSES = 1000
GLOB = set("*?[")
TOP1_KEYS = ("top1", "top1_acc", "imagenet_top1")
"""Keys of a pretrained config that would state a top-1 accuracy (none in timm 1.0's bundled configs)."""


def is_filter(text: str) -> bool:
    """True when `text` (after `timm:`) is a glob pattern rather than one model name."""
    return bool(GLOB & set(text))


def _pretrained_tags(pattern: str | None) -> list[str]:
    import timm

    tags = timm.list_pretrained()
    if pattern:
        tags = [t for t in tags if fnmatch.fnmatchcase(t, pattern)]
    return sorted(tags)


def _architectures(pattern: str | None) -> list[str]:
    import timm

    return sorted(timm.list_models(pattern or "", pretrained=False))


def _cfg(name: str) -> dict[str, Any]:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name) if "." in name else None
    if cfg is None:  # an architecture: its default pretrained config (first tag), if any
        import timm

        tags = timm.list_pretrained(f"{name}.*")
        cfg = get_pretrained_cfg(tags[0]) if tags else None
    return cfg.to_dict() if cfg is not None else {}


def _parameter_counts(
    names: list[str], classes: dict[str, int | None], on_count: Callable[[str], None] | None
) -> dict[str, int | None]:
    """Parameters of each model with its tag's class count (meta device; cached per timm version)."""
    import timm
    import torch

    path = cache_dir() / "timm" / f"params-{timm.__version__}.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    counts, added = {}, False
    for name in names:
        key = f"{name.split('.')[0]}|{classes[name]}"
        if key not in known:
            if on_count is not None:
                on_count(name)
            try:
                with torch.device("meta"):
                    kwargs: dict[str, Any] = {"num_classes": classes[name]} if classes[name] else {}
                    known[key] = count_parameters(timm.create_model(name.split(".")[0], **kwargs))
            except Exception:  # noqa: BLE001 - an architecture that cannot be built here: count unknown
                known[key] = None
            added = True
        counts[name] = known[key]
    if added:
        write_json(path, known)
    return counts


def list_timm(
    pattern: str | None = None,
    pretrained: bool = True,
    parameters: bool = True,
    on_count: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Rows of timm's zoo: one per pretrained tag (or, with `pretrained=False`, per architecture).

    Args:
        pattern: a glob over the names (`resnet*`, `*.a1_in1k`); None: all.
        pretrained: list pretrained tags (`resnet50.a1_in1k`); False: architectures (`resnet50`),
            usable with local weights as `timm:<architecture>@<file>`.
        parameters: count parameters (slow the first time, see the module doc).
        on_count: called with each model whose parameters are counted now (progress).

    Returns:
        Rows `{"ref", "name", "family", "params", "input_size", "num_classes", "top1"}`, by name.
    """
    names = _pretrained_tags(pattern) if pretrained else _architectures(pattern)
    cfgs = {n: _cfg(n) for n in names}
    classes = {n: cfgs[n].get("num_classes") for n in names}
    counts = _parameter_counts(names, classes, on_count) if parameters else {n: None for n in names}
    rows = []
    for name in names:
        cfg = cfgs[name]
        top1 = next((cfg[k] for k in TOP1_KEYS if cfg.get(k) is not None), None)
        rows.append(
            {
                "ref": f"timm:{name}",
                "name": name,
                "family": timm_family(cfg.get("architecture") or name),
                "params": counts[name],
                "input_size": list(cfg["input_size"]) if cfg.get("input_size") else None,
                "num_classes": classes[name],
                "top1": top1,
            }
        )
    return rows


def timm_refs(pattern: str | None = None, num_classes: int | None = IMAGENET_CLASSES) -> list[str]:
    """Model references of timm's pretrained tags matching `pattern` with `num_classes` classes
    (default: ImageNet-1k heads; None: any).

    Raises:
        AnyteachError: no tag matches.
    """
    refs = [
        f"timm:{t}"
        for t in _pretrained_tags(pattern)
        if num_classes is None or _cfg(t).get("num_classes") == num_classes
    ]
    if not refs:
        what = f" with {num_classes} classes" if num_classes is not None else ""
        raise AnyteachError(
            f"no pretrained timm model matches {pattern or '*'!r}{what} "
            "(`anyteach zoo list timm --filter ...` lists them)"
        )
    return refs


__all__ = ["IMAGENET_CLASSES", "NAME", "is_filter", "list_timm", "timm_refs"]
