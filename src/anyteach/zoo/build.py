"""Building a zoo: train the missing members in parallel worker processes and save each one.

Every member is trained by `fit` (its recipe), measured on the eval split, checked for its plateau
(one more epoch of plain supervised fine-tuning at a small learning rate must not move it) and
saved atomically as an anyteach model, so an interrupted build resumes with the members it lacks.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..data.predictions import model_logits
from ..data.references import load_dataset
from ..models.references import Classifier, Preprocessing, build_classifier, save_model, timm_classifier
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


def _train_member(member: ZooMember, data_ref: str, path: str) -> dict[str, Any]:
    """Worker: train one member, measure it, save it atomically. Runs in its own process."""
    torch.set_num_threads(1)
    data = load_dataset(data_ref)
    torch.manual_seed(member.recipe.seed)
    model = new_member_model(member, data)
    start = time.perf_counter()
    fit(model, data, member.recipe)
    seconds = time.perf_counter() - start
    acc = (
        100.0 * (model_logits(model, data, "eval", device="cpu").argmax(1) == data.labels("eval")).float().mean().item()
    )
    plateau = plateau_delta(model, data, seed=member.recipe.seed)
    model.info.extra.update(
        eval_acc=round(acc, 2),
        plateau_delta=round(plateau, 2),
        train_seconds=round(seconds, 1),
        data=data_ref,
        recipe=dataclasses.asdict(member.recipe),
    )
    model.info.class_names = list(data.class_names)
    save_model(model, path)
    return zoo_row(model.info.to_dict())


def build_zoo(
    zoo: Zoo, workers: int | None = None, on_done: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Train the zoo's missing members (longest first, `workers` processes); return all rows."""
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


__all__ = ["PLATEAU_LR", "build_zoo", "new_member_model", "plateau_delta"]
