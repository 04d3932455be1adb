"""Every choice a method makes (the WiSE guard's α, an ensemble's teacher weight) is made on samples it does
not train on: checked for every preset in the registry, so a preset added later is checked too."""

from __future__ import annotations

import copy

import pytest
import torch

from anyteach import TrainingOptions, load_dataset, load_model
from anyteach.data.predictions import cached_logits
from anyteach.methods import METHODS, resolve_method_options
from anyteach.training.trainer import Trainer, held_out_choice

DATA = "mnist1d:size=2000,eval=500,seed=0,calib=300,fresh=400"


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.detach().cpu().float().reshape(len(x), -1)}


def _inputs(data, split: str, preprocessing) -> torch.Tensor:
    return torch.cat([x for x, _, _ in data.loader(split, batch_size=512, preprocessing=preprocessing)])


@pytest.mark.parametrize("name", list(METHODS))
def test_every_choice_is_made_on_samples_the_method_does_not_train_on(name, tiny_zoo):
    preset = METHODS[name]
    data = load_dataset(DATA)
    student = load_model(tiny_zoo["mlp"])
    teachers = [load_model(tiny_zoo["gru_chunk4"])] if preset.needs_teacher else []
    options = TrainingOptions(epochs=1, batch_size=64, device="cpu")
    trainer = Trainer(student, teachers, data, name, resolve_method_options(name), options)
    context = trainer.method_context()
    prep = student.info.preprocessing
    calib = _inputs(data, "calib", prep)

    chosen_on: set[bytes] = set()
    if context.calib_score is not None:  # the guard: every input the model it scores is shown
        seen: list[torch.Tensor] = []
        spy = copy.deepcopy(student)
        spy.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
        context.calib_score(spy)
        assert seen, f"{name}: the guard scored a model without running it"
        chosen_on |= _rows(torch.cat(seen))
    if context.calibration is not None:  # a calibrated target rule: the samples behind its outputs
        frozen = cached_logits(student, data, "calib", device="cpu")
        used = [int((frozen == row).all(1).nonzero()[0]) for row in context.calibration.frozen]
        assert torch.equal(context.calibration.labels, data.labels("calib")[used])
        chosen_on |= _rows(calib[used])
    if preset.needs.calibration:
        assert chosen_on, f"{name}: chooses on a calibration split but was shown no sample of it"

    trained_on = _rows(_inputs(data, "transfer", prep))
    if context.labelled_batch is not None:
        for k in range(40):
            x, _ = context.labelled_batch(torch.arange(64) + 64 * k)
            trained_on |= _rows(x)
    overlap = chosen_on & trained_on
    assert not overlap, f"{name}: chooses on {len(overlap)} samples it trains on"


def test_the_calib_halves_are_disjoint_stratified_and_cover_the_split():
    data = load_dataset(DATA)
    choice, labelled = held_out_choice(METHODS["self+xe+wise"], data, seed=0)
    assert choice is not None and labelled is not None
    assert set(choice.tolist()).isdisjoint(labelled.tolist())
    assert sorted(choice.tolist() + labelled.tolist()) == list(range(data.size("calib")))
    labels = data.labels("calib")
    counts = torch.bincount(labels[choice], minlength=10), torch.bincount(labels, minlength=10)
    assert ((counts[0] - counts[1] / 2).abs() <= 1).all()  # half of every class
    assert held_out_choice(METHODS["pl+ens+wise"], data, seed=0) == (None, None)  # trains on no calib label
    other = held_out_choice(METHODS["self+xe+wise"], data, seed=1)[0]
    assert not torch.equal(choice, other)  # each run seed draws its own halves
