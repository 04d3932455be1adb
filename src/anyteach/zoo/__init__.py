"""Built-in model zoos: recipes that train a diverse set of classifiers, cached and reused.

`build_zoo("mnist1d")` trains whatever members are missing (in parallel worker processes, one
thread each) and saves each as an anyteach model under the cache directory; `zoo:mnist1d/<member>`
then resolves to it. The cache directory name carries a digest of the recipe and the data, so a
changed recipe never reuses stale models. `--seed N` builds an independent zoo of the same recipe
on a dataset generated with seed N (`zoo:mnist1d@N/<member>`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from .._io import cache_dir, text_digest
from ..errors import AnyteachError
from . import mnist1d as _mnist1d
from .mnist1d import ZooMember

ZOOS = {"mnist1d": _mnist1d}

PLATEAU_LR = 1e-4  # the "small learning rate" of the plateau check: one epoch of AdamW on plain CE


@dataclass
class Zoo:
    """One concrete zoo: a recipe, the data it is trained on, and where its models live."""

    name: str
    seed: int
    data: str
    members: list[ZooMember]

    @property
    def directory(self) -> Path:
        spec = json.dumps([self.data, [dataclasses.asdict(m) for m in self.members]], sort_keys=True, default=str)
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


def get_zoo(name: str, seed: int = 0, data: str | None = None, members: Sequence[str] | None = None,
            epochs: int | None = None) -> Zoo:
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
    data = data or (recipe.DATA if seed == 0 else f"{recipe.DATA}:seed={seed}")
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


def zoo_model_path(ref: str) -> Path:
    name, seed, member = parse_zoo_ref(ref)
    zoo = get_zoo(name, seed)
    zoo.member(member)
    path = zoo.path(member)
    if not path.exists():
        seed_opt = f" --seed {seed}" if seed else ""
        raise AnyteachError(f"zoo model {ref!r} is not built yet; run `anyteach zoo build {name}{seed_opt}`")
    return path


# ---------------------------------------------------------------------------------------------
# Building


def plateau_delta(model, data, lr: float = PLATEAU_LR, seed: int = 0) -> float:
    """Eval-accuracy change (points) after one more epoch of plain CE fine-tuning at a small lr."""
    from ..predictions import model_logits

    labels = data.labels("eval")
    before = (model_logits(model, data, "eval", device="cpu").argmax(1) == labels).float().mean().item()
    tuned = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(tuned.parameters(), lr=lr, weight_decay=0.0)
    for x, y, _ in data.loader("train", batch_size=128, shuffle=True, seed=seed, drop_last=True):
        loss = F.cross_entropy(tuned(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    after = (model_logits(tuned, data, "eval", device="cpu").argmax(1) == labels).float().mean().item()
    return 100.0 * (after - before)


def _train_member(member: ZooMember, data_ref: str, path: str) -> dict[str, Any]:
    """Worker: train one member, measure it, save it atomically. Runs in its own process."""
    torch.set_num_threads(1)
    from ..data import load_dataset
    from ..models import build_classifier, save_model
    from ..predictions import model_logits
    from ._train import fit

    data = load_dataset(data_ref)
    torch.manual_seed(member.recipe.seed)
    model = build_classifier(member.architecture, name=member.name, num_classes=data.num_classes,
                             **member.arch_kwargs)
    start = time.perf_counter()
    fit(model, data, member.recipe)
    seconds = time.perf_counter() - start
    acc = 100.0 * (model_logits(model, data, "eval", device="cpu").argmax(1) == data.labels("eval")).float().mean().item()
    plateau = plateau_delta(model, data, seed=member.recipe.seed)
    model.info.extra.update(eval_acc=round(acc, 2), plateau_delta=round(plateau, 2), train_seconds=round(seconds, 1),
                            data=data_ref, recipe=dataclasses.asdict(member.recipe))
    save_model(model, path)
    return zoo_row(model.info)


def zoo_row(info) -> dict[str, Any]:
    return {"name": info.name, "family": info.family, "params": info.num_params,
            "eval_acc": info.extra.get("eval_acc"), "plateau_delta": info.extra.get("plateau_delta"),
            "train_seconds": info.extra.get("train_seconds")}


def build_zoo(zoo: Zoo, workers: int | None = None,
              on_done: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Train the zoo's missing members (longest first, `workers` processes); return all rows."""
    from ..data import load_dataset

    load_dataset(zoo.data)  # generate (and cache) the data once, before the workers read it
    todo = sorted((zoo.member(m) for m in zoo.missing()), key=lambda m: -m.cost)
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    if todo:
        zoo.directory.mkdir(parents=True, exist_ok=True)
        if workers == 1:
            for m in todo:
                row = _train_member(m, zoo.data, str(zoo.path(m.name)))
                if on_done:
                    on_done(row)
        else:
            import multiprocessing as mp

            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                futures = [pool.submit(_train_member, m, zoo.data, str(zoo.path(m.name))) for m in todo]
                for f in as_completed(futures):
                    row = f.result()
                    if on_done:
                        on_done(row)
    return list_zoo(zoo)


def list_zoo(zoo: Zoo) -> list[dict[str, Any]]:
    """One row per built member: name, family, parameters, eval accuracy, plateau Δ, train seconds."""
    rows = []
    for m in zoo.names:
        sidecar = zoo.path(m).with_suffix(".json")
        if sidecar.exists():
            from ..models import ModelInfo

            rows.append(zoo_row(ModelInfo.from_dict(json.loads(sidecar.read_text()))))
    return rows
