"""The parts of the teaching preset (issue 10): fresh and calibration splits, the calibrated ensemble
targets, the WiSE guard, and a calibrated, guarded transfer end to end."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from anyteach import AnyteachError, load_dataset
from anyteach.methods import (
    METHODS,
    TARGET_RULES,
    Calibration,
    MethodContext,
    RuleInputs,
    WeightInterpolation,
    choose_mixture_weight,
    choose_mixture_weight_nll,
    hard_logits,
    kl_divergence,
    mixture_log_probs,
)


def test_calib_and_fresh_splits_are_new_samples():
    d = load_dataset("mnist1d:size=2000,eval=500,seed=0,calib=300,fresh=700")
    assert d.size("calib") == 300 and d.size("transfer") == 700 and d.size("train") == 1500
    assert d.has_split("calib")
    assert len({d.split_identity(s) for s in ("train", "transfer", "eval", "calib")}) == 4
    train = d.inputs("train")
    for split in ("calib", "transfer"):
        assert not any(torch.equal(d.inputs(split)[0], row) for row in train)  # not a train sample
    assert not torch.equal(d.inputs("calib")[:300], d.inputs("transfer")[:300])
    again = load_dataset("mnist1d:size=2000,eval=500,seed=0,calib=300,fresh=700")
    assert torch.equal(again.inputs("calib"), d.inputs("calib"))
    plain = load_dataset("mnist1d:size=2000,eval=500,seed=0")
    assert plain.split_identity("eval") == d.split_identity("eval")  # the eval split and its caches are shared
    assert not plain.has_split("calib")
    with pytest.raises(AnyteachError, match="unknown split 'calib'"):
        plain.labels("calib")
    with pytest.raises(AnyteachError, match="exclude"):
        load_dataset("mnist1d:size=2000,eval=500,fresh=100,fraction=0.5")


def _calibration(student_right: float, teacher_right: float, n: int = 400) -> Calibration:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (n,), generator=g)

    def logits(p):
        right = torch.rand(n, generator=g) < p
        return 3.0 * F.one_hot(torch.where(right, labels, (labels + 1) % 5), 5).float()

    return Calibration(labels, logits(student_right), logits(teacher_right).unsqueeze(0))


def test_the_mixture_weight_follows_the_better_model():
    assert choose_mixture_weight(_calibration(0.5, 1.0))["teacher_weight"] > 0.5
    assert choose_mixture_weight(_calibration(1.0, 0.5))["teacher_weight"] < 0.5
    assert choose_mixture_weight_nll(_calibration(1.0, 0.3))["teacher_weight"] == 0.0


def test_ensemble_targets_are_the_mixture_and_its_class():
    frozen, teacher = torch.randn(6, 4), torch.randn(1, 6, 4)
    inputs = RuleInputs(torch.zeros(6, dtype=torch.long), frozen, teacher, frozen, {"teacher_weight": 0.25})
    target = TARGET_RULES["ens"].fn(inputs)
    expected = 0.75 * frozen.softmax(1) + 0.25 * teacher[0].softmax(1)
    assert torch.allclose(target.logits.softmax(1), expected, atol=1e-6)
    assert torch.allclose(mixture_log_probs(frozen, teacher[0], 0.0).exp(), frozen.softmax(1), atol=1e-6)
    hard = TARGET_RULES["ens-hard"].fn(inputs)
    assert torch.equal(hard.logits.argmax(1), expected.argmax(1))
    student = torch.randn(6, 4)  # KL to a one-hot target is cross-entropy on that pseudo-label
    ce = F.cross_entropy(student, expected.argmax(1))
    assert kl_divergence(student, hard_logits(expected.log())).item() == pytest.approx(ce.item(), abs=1e-5)
    assert METHODS["pl+ens+wise"].needs.calibration and not METHODS["kl+dp"].needs.calibration


def test_several_teachers_join_the_ensemble_as_their_mean():
    frozen, teachers = torch.randn(6, 4), torch.randn(3, 6, 4)
    inputs = RuleInputs(torch.zeros(6, dtype=torch.long), frozen, teachers, frozen, {"teacher_weight": 0.4})
    target = TARGET_RULES["ens"].fn(inputs)
    expected = 0.6 * frozen.softmax(1) + 0.4 * teachers.softmax(2).mean(0)
    assert torch.allclose(target.logits.softmax(1), expected, atol=1e-6)
    assert torch.equal(TARGET_RULES["ens-hard"].fn(inputs).logits.argmax(1), expected.argmax(1))
    one = RuleInputs(inputs.labels, frozen, teachers[:1], frozen, inputs.params)  # K = 1 is the plain pair ensemble
    assert torch.equal(TARGET_RULES["ens"].fn(one).logits, mixture_log_probs(frozen, teachers[0], 0.4))
    # the weight is chosen against the teachers' mean: two copies of a teacher choose what the one does
    single = _calibration(0.5, 0.9)
    double = Calibration(single.labels, single.frozen, single.teachers.expand(2, -1, -1))
    assert choose_mixture_weight(double)["teacher_weight"] == choose_mixture_weight(single)["teacher_weight"]
    assert all(METHODS[m].multi_teacher for m in ("pl+ens+wise", "kl+ens+wise") if m in METHODS)


def test_a_teaching_transfer_from_several_teachers(tiny_zoo, tmp_path):
    import anyteach

    data = "mnist1d:size=2000,eval=500,seed=0,calib=400,fresh=600"
    options = {"epochs": 1, "batch_size": 128, "optimizer": "adamw", "lr": 1e-3, "progress": False}
    result = anyteach.transfer(
        tiny_zoo["mlp_narrow"],
        [tiny_zoo["mlp"], tiny_zoo["cnn_small_sgd"]],
        data,
        "pl+ens+wise",
        tmp_path / "run",
        **options,
    )
    row = result.final
    assert len(row["teacher_accs"]) == 2 and row["teacher_acc"] == max(row["teacher_accs"])
    assert 0 <= row["calibration"]["teacher_weight"] <= 1 and 0 <= row["wise_alpha"] <= 1
    assert row["ensemble_acc"] is not None  # the available gain is the student + both teachers' ensemble


def test_the_wise_guard_interpolates_and_chooses_on_the_calib_score():
    torch.manual_seed(0)
    s0 = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    trained = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))

    def guard(score):
        return WeightInterpolation(s0, {}, MethodContext(2, calib_score=score))

    half = guard(lambda m: 0.0).interpolate(trained, 0.5)
    assert torch.allclose(half[0].weight, (s0[0].weight + trained[0].weight) / 2)
    near_s0 = guard(lambda m: -float((m[0].weight - s0[0].weight).abs().sum().detach()))
    assert torch.allclose(near_s0.exported(trained)[0].weight, s0[0].weight)  # S0 back, unchanged
    assert near_s0.chosen()["wise_alpha"] == 0.0
    near_trained = guard(lambda m: -float((m[0].weight - trained[0].weight).abs().sum().detach()))
    near_trained.exported(trained)
    assert near_trained.chosen()["wise_alpha"] == 1.0
    tie = guard(lambda m: 1.0)  # ties go to the smaller alpha, closer to S0
    tie.exported(trained)
    assert tie.chosen()["wise_alpha"] == 0.0
    with pytest.raises(AnyteachError, match="calibration split"):
        WeightInterpolation(s0, {}, MethodContext(2))


def test_a_calibrated_guarded_transfer_end_to_end(tiny_zoo, tmp_path):
    import anyteach

    data = "mnist1d:size=2000,eval=500,seed=0,calib=400,fresh=600"
    options = {
        "epochs": 2,
        "batch_size": 128,
        "optimizer": "adamw",
        "lr": 1e-3,
        "lr_schedule": "cosine",
        "progress": False,
    }
    result = anyteach.transfer(
        tiny_zoo["mlp_narrow"], tiny_zoo["mlp"], data, "pl+ens+wise", tmp_path / "run", **options
    )
    row = result.final
    assert 0 <= row["wise_alpha"] <= 1 and 0 <= row["calibration"]["teacher_weight"] <= 1
    assert result.config["data"]["calib"].endswith("calib-400-1000003")
    resumed = anyteach.transfer(
        tiny_zoo["mlp_narrow"], tiny_zoo["mlp"], data, "pl+ens+wise", tmp_path / "part", stop_after_epoch=1, **options
    )
    resumed = anyteach.transfer(
        tiny_zoo["mlp_narrow"], tiny_zoo["mlp"], data, "pl+ens+wise", tmp_path / "part", **options
    )
    assert resumed.final["student_acc"] == row["student_acc"] and resumed.final["wise_alpha"] == row["wise_alpha"]
    with pytest.raises(AnyteachError, match="calibration split"):  # refused before the directory is touched
        anyteach.transfer(
            tiny_zoo["mlp_narrow"],
            tiny_zoo["mlp"],
            "mnist1d:size=2000,eval=500,seed=0",
            "pl+ens+wise",
            tmp_path / "bad",
            **options,
        )
    assert not (tmp_path / "bad").exists()


def test_the_stronger_control_also_fine_tunes_on_the_calib_labels(tiny_zoo, tmp_path):
    import anyteach
    from anyteach.report.aggregate import UNLABELLED_CONTROLS

    data = "mnist1d:size=2000,eval=500,seed=0,calib=400,fresh=600"
    options = {
        "epochs": 2,
        "batch_size": 128,
        "optimizer": "adamw",
        "lr": 1e-3,
        "lr_schedule": "cosine",
        "progress": False,
    }
    control = METHODS["self+xe+wise"]
    assert control.needs.labelled == "calib" and not control.needs_teacher and control.name in UNLABELLED_CONTROLS
    result = anyteach.transfer(tiny_zoo["mlp_narrow"], None, data, "self+xe+wise", tmp_path / "run", **options)
    row = result.final
    assert row["train_loss_labelled"] > 0 and row["train_loss_kl"] >= 0 and 0 <= row["wise_alpha"] <= 1
    plain = anyteach.transfer(tiny_zoo["mlp_narrow"], None, data, "self+wise", tmp_path / "plain", **options).final
    assert "train_loss_labelled" not in plain  # the labels are what the stronger control adds
    resumed = anyteach.transfer(
        tiny_zoo["mlp_narrow"], None, data, "self+xe+wise", tmp_path / "part", stop_after_epoch=1, **options
    )
    resumed = anyteach.transfer(tiny_zoo["mlp_narrow"], None, data, "self+xe+wise", tmp_path / "part", **options)
    assert resumed.final["student_acc"] == row["student_acc"]  # the labelled batches are drawn the same on resume
    with pytest.raises(AnyteachError, match="calibration split"):
        anyteach.transfer(
            tiny_zoo["mlp_narrow"],
            None,
            "mnist1d:size=2000,eval=500,seed=0",
            "self+xe+wise",
            tmp_path / "bad",
            **options,
        )


def test_the_mixture_class_search_is_exact_and_the_weight_choice_unchanged():
    """`mixture_classes` searches the top-k classes of each model first (ImageNet-sized class counts); it must
    give argmax over all classes, ties included, and `choose_mixture_weight` the choice of the plain loop."""
    from anyteach.methods import MIXTURE_WEIGHTS, mixture_classes

    g = torch.Generator().manual_seed(0)
    for n, classes, scale in [(2000, 1000, 2.0), (2000, 1000, 0.01), (1000, 60, 0.5)]:
        labels = torch.randint(0, classes, (n,), generator=g)
        p_s = (torch.randn(n, classes, generator=g) * scale).softmax(1)
        p_t = (torch.randn(n, classes, generator=g) * scale).softmax(1)
        p_s[:200], p_t[:200] = (p_s[:200] * 20).round() / 20, (p_t[:200] * 20).round() / 20  # many ties
        p_t[200:300] = p_s[200:300]
        fast = mixture_classes(p_s, p_t, MIXTURE_WEIGHTS)
        for w, predicted in zip(MIXTURE_WEIGHTS, fast):
            assert torch.equal(predicted, ((1 - w) * p_s + w * p_t).argmax(1)), (classes, w)
        calibration = Calibration(labels, p_s.log(), p_t.log().unsqueeze(0))
        reference = []  # the plain loop: the log-mixture over all classes at every w
        for w in MIXTURE_WEIGHTS:
            logp = mixture_log_probs(calibration.frozen, calibration.teachers[0], w)
            accuracy = (logp.argmax(1) == labels).float().mean().item()
            reference.append((-accuracy, -logp.gather(1, labels.view(-1, 1)).mean().item(), w))
        chosen = choose_mixture_weight(calibration)
        assert chosen["teacher_weight"] == min(reference)[2]
        assert chosen["calib_ensemble_acc"] == pytest.approx(-100 * min(reference)[0])
