"""Which zoos exist, where their models live, and the `zoo:` model reference.

A zoo is a recipe (its members) applied to a dataset; `get_zoo("mnist1d", seed)` makes it concrete.
Its models live under the cache directory in a folder whose name carries a digest of the recipe
and the data they are trained on, so a changed recipe never reuses stale models; options of the data that
change only what the members are measured on (a recipe's `MEASURED_ONLY`: the glyphs' eval, calib and
fresh sizes, each split its own stream of the generator) are left out of it, so a larger eval split
re-measures the built members instead of training them again (`build.build_zoo`). `zoo:<zoo>[@<seed>]/<member>` is a
model reference kind (registered with `models.REFERENCE_KINDS`) that resolves to a built member.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..core.errors import AnyteachError
from ..core.io import cache_dir, text_digest
from ..core.registry import Registry
from ..models.references import Classifier, load_saved, register_reference_kind
from . import glyphs as _glyphs
from . import mnist1d as _mnist1d
from .recipe import ZooMember

ZOOS: Registry = Registry("zoo")
"""The built-in zoos by name: each a module with the zoo's recipe (`MEMBERS`, its data, ...)."""
ZOOS.add("mnist1d", _mnist1d)
ZOOS.add("glyphs", _glyphs)
"""Built-in zoo recipes by name: modules with `MEMBERS` (a list of `ZooMember`) and `DATA`."""


@dataclass
class Zoo:
    """One concrete zoo: a recipe, the data it is trained on, and where its models live."""

    name: str
    seed: int
    data: str
    members: list[ZooMember]

    @property
    def training_data(self) -> str:
        """The data reference less the options that change only what the members are measured on."""
        return training_data_key(self.data, getattr(ZOOS[self.name], "MEASURED_ONLY", ()))

    @property
    def directory(self) -> Path:
        spec = json.dumps(
            [self.training_data, [dataclasses.asdict(m) for m in self.members]], sort_keys=True, default=str
        )
        return cache_dir() / "zoo" / f"{self.name}-seed{self.seed}-{text_digest(spec, 8)}"

    def path(self, member: str) -> Path:
        return self.directory / f"{member}.safetensors"

    def member(self, name: str) -> ZooMember:
        for m in self.members:
            if m.name == name:
                return m
        raise AnyteachError(f"zoo {self.name!r} has no model {name!r}; it has {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def refs(self) -> list[str]:
        at = f"@{self.seed}" if self.seed else ""
        return [f"zoo:{self.name}{at}/{m}" for m in self.names]

    def missing(self) -> list[str]:
        return [m for m in self.names if not self.path(m).exists()]

    def measured_elsewhere(self) -> list[str]:
        """Built members whose eval accuracy and plateau were measured on another eval split than the zoo's
        (the same training data): `build.build_zoo` measures them again."""
        from ..data.references import load_dataset

        if not getattr(ZOOS[self.name], "MEASURED_ONLY", ()):  # the whole data reference is the training data
            return []
        out = []
        for m in self.names:
            sidecar = self.path(m).with_suffix(".json")
            if self.path(m).exists() and sidecar.exists():
                measured_on = (json.loads(sidecar.read_text()).get("extra") or {}).get("data", self.data)
                if measured_on != self.data and load_dataset(measured_on).split_identity("eval") != load_dataset(
                    self.data
                ).split_identity("eval"):
                    out.append(m)
        return out


def training_data_key(data: str, measured_only: Sequence[str]) -> str:
    """`data` without the options named in `measured_only`: `glyphs:train=4000,eval=10000,seed=1` with
    `("eval", "calib", "fresh")` -> `glyphs:train=4000,seed=1`."""
    kind, colon, rest = data.partition(":")
    if not colon or not measured_only:
        return data
    kept = [item for item in rest.split(",") if item and item.partition("=")[0].strip() not in measured_only]
    return f"{kind}:{','.join(kept)}" if kept else kind


def get_zoo(
    name: str, seed: int = 0, data: str | None = None, members: Sequence[str] | None = None, epochs: int | None = None
) -> Zoo:
    """A zoo by name. `data`, `members` and `epochs` override the recipe (tests build tiny zoos)."""
    if name not in ZOOS:
        raise AnyteachError(f"unknown zoo {name!r}; built-in zoos: {', '.join(ZOOS)}")
    recipe = ZOOS[name]
    chosen = list(recipe.MEMBERS)
    if members:
        known = {m.name: m for m in chosen}
        unknown = [m for m in members if m not in known]
        if unknown:
            raise AnyteachError(f"zoo {name!r} has no model {unknown[0]!r}; it has {', '.join(known)}")
        chosen = [known[m] for m in members]
    if epochs is not None:
        chosen = [dataclasses.replace(m, recipe=dataclasses.replace(m.recipe, epochs=epochs)) for m in chosen]
    joiner = "," if ":" in recipe.DATA else ":"
    data = data or (recipe.DATA if seed == 0 else f"{recipe.DATA}{joiner}seed={seed}")
    return Zoo(name, seed, data, chosen)


def parse_zoo_ref(ref: str) -> tuple[str, int, str]:
    """`zoo:mnist1d/cnn_bn` -> ("mnist1d", 0, "cnn_bn"); `zoo:mnist1d@3/cnn_bn` -> seed 3."""
    body = ref.removeprefix("zoo:")
    zoo, slash, member = body.partition("/")
    if not slash or not zoo or not member:
        raise AnyteachError(f"bad zoo reference {ref!r}: expected zoo:<zoo>/<model> or zoo:<zoo>@<seed>/<model>")
    name, at, seed = zoo.partition("@")
    if at and not seed.isdigit():
        raise AnyteachError(f"bad zoo seed in {ref!r}: expected an integer after @")
    return name, int(seed) if at else 0, member


def zoo_data(spec: str) -> tuple[str, str]:
    """The dataset reference a built-in zoo was trained on, and that in words: `glyphs`, `glyphs@1`
    or `zoo:glyphs@1` -> (`glyphs:train=4000,eval=10000,calib=2000,seed=1`, "the draw zoo glyphs
    (seed 1) was trained on").

    Raises:
        AnyteachError: an unknown zoo or a seed that is not an integer.
    """
    name, at, seed = spec.strip().removeprefix("zoo:").partition("@")
    if at and not seed.isdigit():
        raise AnyteachError(f"bad zoo seed in {spec!r}: expected <zoo> or <zoo>@<seed>, e.g. glyphs@1")
    zoo = get_zoo(name, int(seed) if at else 0)
    return zoo.data, f"the draw zoo {zoo.name} (seed {zoo.seed}) was trained on"


def zoo_model_path(ref: str) -> Path:
    """The weights file of a built zoo member.

    Raises:
        AnyteachError: a malformed reference, an unknown zoo or member, or a member not built yet.
    """
    name, seed, member = parse_zoo_ref(ref)
    zoo = get_zoo(name, seed)
    zoo.member(member)
    path = zoo.path(member)
    if not path.exists():
        seed_opt = f" --seed {seed}" if seed else ""
        raise AnyteachError(f"zoo model {ref!r} is not built yet; run `anyteach zoo build {name}{seed_opt}`")
    return path


@register_reference_kind("zoo")
def load_zoo_model(ref: str) -> Classifier:
    """`zoo:<zoo>[@<seed>]/<member>`: a built member of a built-in zoo."""
    return load_saved(zoo_model_path(ref), ref)


def zoo_row(meta: dict[str, Any]) -> dict[str, Any]:
    """A zoo table row from a member's sidecar metadata."""
    extra = meta.get("extra") or {}
    return {
        "name": meta["name"],
        "family": meta["family"],
        "params": meta["num_params"],
        "eval_acc": extra.get("eval_acc"),
        "plateau_delta": extra.get("plateau_delta"),
        "train_seconds": extra.get("train_seconds"),
    }


def list_zoo(zoo: Zoo) -> list[dict[str, Any]]:
    """One row per built member: name, family, parameters, eval accuracy, plateau Δ, train seconds."""
    rows = []
    for m in zoo.names:
        sidecar = zoo.path(m).with_suffix(".json")
        if sidecar.exists():
            rows.append(zoo_row(json.loads(sidecar.read_text())))
    return rows


__all__ = [
    "ZOOS",
    "Zoo",
    "get_zoo",
    "list_zoo",
    "load_zoo_model",
    "parse_zoo_ref",
    "training_data_key",
    "zoo_data",
    "zoo_model_path",
    "zoo_row",
]
