"""Input mixing (mixup, cutmix): the mix is a function of the seed, cutmix cuts a segment of a signal and a box of
an image, every model of a step sees the same mixed batch, label terms weigh both labels, and a mixed run
resumes bitwise."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from anyteach import AnyteachError, TrainingOptions, load_model
from anyteach.core.seeds import mix_seed
from anyteach.data.mixing import Mix, mix_batch
from anyteach.methods import (
    METHODS,
    MethodPreset,
    RuleInputs,
    data_partitioning,
    label_cross_entropy,
    register_method,
    resolve_method_options,
)
from anyteach.training.trainer import Trainer
from anyteach.training.transfer import transfer

FAST = {"epochs": 2, "batch_size": 128, "lr": 1e-3, "optimizer": "adamw", "progress": False}
UNMIXED = "test-kl+dp+unmixed-xe"


def _unmixed_preset() -> str:
    """A preset that adds cross-entropy on the unmixed batch (registered once per process)."""
    if UNMIXED not in METHODS:
        register_method(MethodPreset(UNMIXED, "kl+dp plus xe on the unmixed batch", "dp", "kl", unmixed_xe=True))
    return UNMIXED


def _distinct(*shape: int) -> torch.Tensor:
    """A batch whose every value is distinct, so a value says which sample and position it came from."""
    return torch.arange(math.prod(shape), dtype=torch.float32).view(shape)


# ---------------------------------------------------------------------------------------------
# The mix itself


@pytest.mark.parametrize("mode", ["mixup", "cutmix", "both"])
def test_the_mix_is_a_function_of_the_seed(mode):
    x = torch.randn(64, 40)
    first, mix = mix_batch(x, 11, mode)
    again, mix_again = mix_batch(x, 11, mode)
    other, mix_other = mix_batch(x, 12, mode)
    assert torch.equal(first, again) and torch.equal(mix.partner, mix_again.partner)
    assert torch.equal(mix.share, mix_again.share) and torch.equal(mix.cut, mix_again.cut)
    assert not torch.equal(first, other)
    assert torch.equal(mix.unmixed, x) and first.shape == x.shape and first.dtype == x.dtype
    assert (mix.partner != torch.arange(64)).all()  # nobody is mixed with itself
    assert sorted(mix.partner.tolist()) == list(range(64))  # every sample is someone's partner once
    assert ((mix.share >= 0) & (mix.share <= 1)).all()


def test_mixup_is_the_weighted_average_and_alpha_shapes_the_shares():
    x = torch.randn(256, 40)
    mixed, mix = mix_batch(x, 3, "mixup", alpha=1.0)
    expected = mix.share[:, None] * x + (1 - mix.share[:, None]) * x[mix.partner]
    torch.testing.assert_close(mixed, expected)
    assert not mix.cut.any()
    extreme = mix_batch(x, 3, "mixup", alpha=0.1)[1].share
    central = mix_batch(x, 3, "mixup", alpha=50.0)[1].share
    assert (extreme - 0.5).abs().mean() > 0.35 and (central - 0.5).abs().mean() < 0.1


@pytest.mark.parametrize("shape", [(32, 40), (32, 3, 40)])
def test_cutmix_on_signals_pastes_one_contiguous_segment_of_the_partner(shape):
    x = _distinct(*shape)
    mixed, mix = mix_batch(x, 5, "cutmix")
    assert mix.cut.all()
    own, theirs = mixed == x, mixed == x[mix.partner]
    assert (own ^ theirs).all()  # every value is exactly one of the two samples'
    pasted = theirs.reshape(shape[0], -1, shape[-1])
    assert (pasted == pasted[:, :1]).all()  # the same segment in every channel
    length = shape[-1]
    for row, share in zip(pasted[:, 0], mix.share):
        where = row.nonzero().squeeze(1)
        if len(where):
            assert where.tolist() == list(range(int(where[0]), int(where[-1]) + 1))  # contiguous
        assert share.item() == pytest.approx(1 - len(where) / length)


def test_cutmix_on_images_pastes_one_box_of_the_partner():
    x = _distinct(16, 3, 12, 10)
    mixed, mix = mix_batch(x, 7, "cutmix")
    theirs = mixed == x[mix.partner]
    assert ((mixed == x) ^ theirs).all()
    assert (theirs == theirs[:, :1]).all()  # the same box in every channel
    for box, share in zip(theirs[:, 0], mix.share):
        rows, cols = box.any(1).nonzero().squeeze(1), box.any(0).nonzero().squeeze(1)
        if len(rows):
            top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            assert box[top:bottom, left:right].all() and box.sum() == (bottom - top) * (right - left)
        assert share.item() == pytest.approx(1 - box.sum().item() / (12 * 10))


def test_both_mixes_some_samples_each_way():
    x = _distinct(64, 40)
    mixed, mix = mix_batch(x, 9, "both")
    assert 0 < int(mix.cut.sum()) < 64
    exact = ((mixed == x) | (mixed == x[mix.partner])).all(1)
    assert torch.equal(exact[mix.cut], torch.ones(int(mix.cut.sum()), dtype=torch.bool))
    blended = mix.share[~mix.cut][:, None] * x[~mix.cut] + (1 - mix.share[~mix.cut][:, None]) * x[mix.partner][~mix.cut]
    torch.testing.assert_close(mixed[~mix.cut], blended)


def test_mix_options_are_declared_and_validated():
    assert TrainingOptions().mix == "none" and TrainingOptions().mix_alpha == 1.0
    with pytest.raises(AnyteachError, match="option mix='sideways' is out of range: it must be one of none, mixup"):
        TrainingOptions(mix="sideways")
    with pytest.raises(AnyteachError, match=r"option mix_alpha=0 is out of range: it must be in \(0, 1000\]"):
        TrainingOptions(mix_alpha=0)
    # mixed inputs change at every step: the outputs a step imitates cannot come from the cache
    assert METHODS["kl+dp"].needs_for(TrainingOptions(mix="cutmix")).live
    assert not METHODS["kl+dp"].needs_for(TrainingOptions()).live
    assert METHODS["xe+mix"].recipe["mix"] == "mixup" and not METHODS["xe+mix"].needs_teacher
    # a method that uses the transfer labels meets both label-only controls, the plain and the mixed one
    assert METHODS["kl+dp"].no_teacher_controls({}) == ("self", "xe", "xe+mix")
    assert METHODS[_unmixed_preset()].labelled_splits({}) == {"transfer"}


# ---------------------------------------------------------------------------------------------
# Label terms on a mixed batch


def test_the_label_terms_weigh_both_labels_by_their_shares():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 1])
    mix = Mix(torch.tensor([1, 0]), torch.tensor([0.75, 0.5]), torch.zeros(2, 4), torch.tensor([False, False]))
    # golden value, computed once by hand: (0.75·0.23954 + 0.25·2.23954 + 0.5·0.55144 + 0.5·1.55144) / 2
    assert label_cross_entropy(logits, labels, mix).item() == pytest.approx(0.89549, abs=1e-4)
    whole = Mix(torch.tensor([1, 0]), torch.ones(2), torch.zeros(2, 4), torch.tensor([False, False]))
    assert label_cross_entropy(logits, labels, whole) == pytest.approx(label_cross_entropy(logits, labels).item())
    # DP on a mixed input: the candidate more confident in the mixed label, not in the sample's own
    frozen = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    teacher = torch.tensor([[[5.0, 5.0, 0.0], [5.0, 5.0, 0.0]]])  # p = 0.498 on both classes
    halves = Mix(torch.tensor([1, 0]), torch.tensor([0.5, 0.5]), torch.zeros(2, 4), torch.tensor([False, False]))
    plain = data_partitioning(RuleInputs(labels, frozen, teacher, frozen))
    mixed = data_partitioning(RuleInputs(labels, frozen, teacher, frozen, mix=halves))
    assert plain.routing.tolist() == [0, 0] and mixed.routing.tolist() == [1, 1]


# ---------------------------------------------------------------------------------------------
# In the trainer, on tiny real models


def _record_inputs(module: torch.nn.Module, into: list, only_training: bool = False):
    def hook(mod, args):
        if not only_training or mod.training:
            into.append(args[0].detach().clone())

    return module.register_forward_pre_hook(hook)


@pytest.mark.parametrize("mode", ["mixup", "both"])
def test_every_model_of_a_step_sees_the_same_mixed_batch(mode, tiny_zoo, tiny_data):
    options = TrainingOptions(epochs=1, batch_size=256, lr=1e-3, optimizer="adamw", mix=mode, seed=5, device="cpu")
    student, teacher = load_model(tiny_zoo["mlp"]), load_model(tiny_zoo["gru_chunk4"])
    trainer = Trainer(student, [teacher], tiny_data, "kl+dp", resolve_method_options("kl+dp"), options)
    assert trainer.needs.live and not trainer.outputs.cache  # live: no cached teacher outputs
    seen: dict[str, list] = {"student": [], "frozen": [], "teacher": []}
    _record_inputs(trainer.student, seen["student"], only_training=True)
    _record_inputs(trainer.outputs.frozen_model, seen["frozen"])
    _record_inputs(trainer.teachers[0], seen["teacher"])
    outcome = trainer.run()
    assert outcome.finished
    batches = list(tiny_data.loader("transfer", batch_size=256, shuffle=True, seed=5, epoch=1, drop_last=True))
    assert len(seen["student"]) == len(seen["frozen"]) == len(seen["teacher"]) == len(batches) == 5
    for step, (x, _, _) in enumerate(batches):
        expected, mix = mix_batch(x, mix_seed(5, step), mode)  # reproducible from the run's seed and the step
        for name in seen:
            assert torch.equal(seen[name][step], expected), (name, step)
        assert not torch.equal(expected, x)


def test_the_unmixed_label_term_sees_the_batch_before_mixing(tiny_zoo, tiny_data):
    method = _unmixed_preset()
    options = TrainingOptions(epochs=1, batch_size=256, lr=1e-3, optimizer="adamw", mix="cutmix", seed=2, device="cpu")
    student, teacher = load_model(tiny_zoo["mlp"]), load_model(tiny_zoo["gru_chunk4"])
    trainer = Trainer(student, [teacher], tiny_data, method, resolve_method_options(method), options)
    assert trainer.needs.unmixed
    seen: list = []
    _record_inputs(trainer.student, seen, only_training=True)
    outcome = trainer.run()
    assert outcome.final["train_loss_unmixed"] > 0 and outcome.final["train_loss_kl"] > 0
    x = next(iter(tiny_data.loader("transfer", batch_size=256, shuffle=True, seed=2, epoch=1, drop_last=True)))[0]
    mixed, _ = mix_batch(x, mix_seed(2, 0), "cutmix")
    assert torch.equal(seen[0], torch.cat([mixed, x]))  # one forward pass over the mixed and the unmixed batch


def test_a_mixed_run_records_its_mix_and_resumes_bitwise(tiny_zoo, tiny_data, tmp_path):
    options = {**FAST, "epochs": 3, "mix": "both", "mix_alpha": 0.4}
    student, teacher = tiny_zoo["mlp"], tiny_zoo["gru_chunk4"]
    full = transfer(student, teacher, tiny_data, "kl+dp", tmp_path / "full", **options)
    part = transfer(student, teacher, tiny_data, "kl+dp", tmp_path / "part", stop_after_epoch=1, **options)
    assert not part.finished
    resumed = transfer(student, teacher, tiny_data, "kl+dp", tmp_path / "part", **options)
    a, b = load_file(str(full.student_path)), load_file(str(resumed.student_path))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((tmp_path / "full" / "config.json").read_text())
    assert config["training"]["mix"] == "both" and config["training"]["mix_alpha"] == 0.4
    unmixed = transfer(student, teacher, tiny_data, "kl+dp", tmp_path / "plain", **{**options, "mix": "none"})
    c = load_file(str(unmixed.student_path))
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the mix changed the training


def test_the_mixed_label_control_trains_on_mixed_labels(tiny_zoo, tiny_data, tmp_path):
    result = transfer(tiny_zoo["mlp"], None, tiny_data, "xe+mix", tmp_path / "run", **FAST)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["training"]["mix"] == "mixup"  # the preset's recipe
    plain = transfer(tiny_zoo["mlp"], None, tiny_data, "xe", tmp_path / "plain", **FAST)
    # mixed labels are soft: the training loss cannot fall as low as on the plain labels
    assert result.final["train_loss_ce"] > plain.final["train_loss_ce"]
