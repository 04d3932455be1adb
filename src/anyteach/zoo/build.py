"""Building a zoo: train the missing members in parallel worker processes and save each one.

Every member is trained by `fit` (its recipe), measured on the eval split, checked for its plateau
(one more epoch of plain supervised fine-tuning at a small learning rate must not move it) and
saved atomically as an anyteach model, so an interrupted build resumes with the members it lacks. A
member built on the same training data but measured on another eval split (the zoo's data changed only
where the members are measured: `Zoo.measured_elsewhere`) is measured again, not trained again.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..core.io import write_json
from ..data.predictions import model_logits
from ..data.references import load_dataset
from ..models.references import (
    SIDECAR_FORMAT,
    Classifier,
    Preprocessing,
    build_classifier,
    load_saved,
    save_model,
    timm_classifier,
)
from ._train import fit
from .recipe import ZooMember
from .zoos import Zoo, list_zoo, zoo_row

PLATEAU_LR = 1e-4  # the "small learning rate" of the plateau check: one epoch of AdamW on plain CE


def plateau_delta(model, data, lr: float = PLATEAU_LR, seed: int = 0) -> float:
    """Eval-accuracy change (points) after one more epoch of plain CE fine-tuning at a small lr."""
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


def new_member_model(member: ZooMember, data) -> Classifier:
    """A member's untrained classifier: an anyteach architecture, or a timm one (`timm:<arch>`)
    created at the dataset's image size, normalising its input with timm's mean and std."""
    if not member.architecture.startswith("timm:"):
        return build_classifier(
            member.architecture, name=member.name, num_classes=data.num_classes, **member.arch_kwargs
        )
    made = timm_classifier(
        member.architecture.removeprefix("timm:"), num_classes=data.num_classes, **member.arch_kwargs
    )
    p = made.info.preprocessing
    # the dataset's own size (timm's configs say 224): no resizing, no crop when read from an image folder
    size = Preprocessing(
        mean=p.mean,
        std=p.std,
        input_size=tuple(data.input_size),
        crop_pct=1.0,
        interpolation="bilinear",
        crop_mode="center",
    )
    info = dataclasses.replace(made.info, name=member.name, preprocessing=size, source="")
    return Classifier(made.net, info)


def _measure(model: Classifier, member: ZooMember, data, data_ref: str) -> None:
    """Eval accuracy and plateau of a trained member on `data`, recorded in its metadata."""
    acc = (
        100.0 * (model_logits(model, data, "eval", device="cpu").argmax(1) == data.labels("eval")).float().mean().item()
    )
    plateau = plateau_delta(model, data, seed=member.recipe.seed)
    model.info.extra.update(eval_acc=round(acc, 2), plateau_delta=round(plateau, 2), data=data_ref)
    model.info.class_names = list(data.class_names)


def _train_member(member: ZooMember, data_ref: str, path: str) -> dict[str, Any]:
    """Worker: train one member, measure it, save it atomically. Runs in its own process."""
    torch.set_num_threads(1)
    data = load_dataset(data_ref)
    torch.manual_seed(member.recipe.seed)
    model = new_member_model(member, data)
    start = time.perf_counter()
    fit(model, data, member.recipe)
    seconds = time.perf_counter() - start
    _measure(model, member, data, data_ref)
    model.info.extra.update(train_seconds=round(seconds, 1), recipe=dataclasses.asdict(member.recipe))
    save_model(model, path)
    return zoo_row(model.info.to_dict())


def _remeasure_member(member: ZooMember, data_ref: str, path: str) -> dict[str, Any]:
    """Worker: measure a built member on the zoo's current data and rewrite its sidecar only (the weights
    were trained on the same training split and stay as they are)."""
    torch.set_num_threads(1)
    data = load_dataset(data_ref)
    model = load_saved(Path(path), member.name)
    _measure(model, member, data, data_ref)
    write_json(Path(path).with_suffix(".json"), {"format": SIDECAR_FORMAT, **model.info.to_dict()})
    return zoo_row(model.info.to_dict())


def build_zoo(
    zoo: Zoo, workers: int | None = None, on_done: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Train the zoo's missing members (longest first, `workers` processes) and measure again the members
    measured on other data (`Zoo.measured_elsewhere`); return all rows."""
    load_dataset(zoo.data)  # generate (and cache) the data once, before the workers read it
    jobs = [(_remeasure_member, zoo.member(m)) for m in zoo.measured_elsewhere()]
    jobs += [(_train_member, m) for m in sorted((zoo.member(m) for m in zoo.missing()), key=lambda m: -m.cost)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    if jobs:
        zoo.directory.mkdir(parents=True, exist_ok=True)
        if workers == 1:
            for job, m in jobs:
                row = job(m, zoo.data, str(zoo.path(m.name)))
                if on_done:
                    on_done(row)
        else:
            import multiprocessing as mp

            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                futures = [pool.submit(job, m, zoo.data, str(zoo.path(m.name))) for job, m in jobs]
                for f in as_completed(futures):
                    row = f.result()
                    if on_done:
                        on_done(row)
    return list_zoo(zoo)


__all__ = ["PLATEAU_LR", "build_zoo", "new_member_model", "plateau_delta"]
