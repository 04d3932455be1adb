"""Methods registry: golden loss values, target-rule invariants, options, MCL slow weights.

The golden values in `fixtures/loss_golden.json` were computed once by running this file as a script
(`python tests/test_methods.py --write-golden`); the tests only read them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from anyteach.core.errors import AnyteachError
from anyteach.methods import (
    FROZEN,
    LOSSES,
    METHODS,
    MIXED,
    SKIPPED,
    TARGET_RULES,
    LossInputs,
    MethodContext,
    MethodPreset,
    RuleInputs,
    SlowWeights,
    Target,
    TransferLoss,
    build_method,
    ensemble_predictions,
    get_method,
    kl_divergence,
    method_table,
    nce_loss,
    register_loss,
    register_method,
    register_target_rule,
    resolve_method_options,
    similarity_structure_loss,
)

GOLDEN = Path(__file__).parent / "fixtures" / "loss_golden.json"


# ---------------------------------------------------------------------------------------------
# Golden values


def _golden_inputs() -> dict[str, list]:
    """Fixed small tensors (written into the fixture, so the tests never regenerate them)."""
    g = torch.Generator().manual_seed(1234)

    def r(*shape, scale=2.0):
        return (torch.randn(*shape, generator=g) * scale).round(decimals=3).tolist()

    return {
        "student": r(4, 5),
        "target": r(4, 5),
        "teacher": r(4, 5),
        "labels": [0, 3, 1, 4],
        "weight": [1.0, 0.0, 1.0, 1.0],
        "student_features": r(4, 3, scale=1.0),
        "teacher_features": r(4, 6, scale=1.0),
        "scores": (torch.rand(3, 5, generator=g) * 1e-3).round(decimals=6).tolist(),
    }


def _crd_module(inputs: dict[str, list]) -> TransferLoss:
    torch.manual_seed(0)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    context = MethodContext(3, student_feature_dim=3, teacher_feature_dim=6, transfer_labels=labels, seed=5)
    options = resolve_method_options("crd", {"crd_feature_dim": 2, "crd_negatives": 3})
    return LOSSES["crd"](options, context)


def _compute_golden(inputs: dict[str, list]) -> dict[str, float]:
    t = {k: torch.tensor(v) for k, v in inputs.items()}
    out = {
        "kl_t1": kl_divergence(t["student"], t["target"]).item(),
        "kl_t2": kl_divergence(t["student"], t["target"], temperature=2.0).item(),
        "kl_top2_teacher": kl_divergence(t["student"], t["target"], top_k=2, reference=t["teacher"]).item(),
        "kl_weighted": kl_divergence(t["student"], t["target"], weight=t["weight"]).item(),
        "cd": similarity_structure_loss(t["student_features"], t["teacher_features"]).item(),
        "nce": nce_loss(t["scores"], num_samples=100).item(),
    }
    xekl = LOSSES["kl"](resolve_method_options("xekl"), MethodContext(5))
    target = Target(t["target"], torch.ones(4, dtype=torch.long))
    terms = xekl(LossInputs(t["student"], None, t["labels"].long(), torch.arange(4), target, None, None))
    out["xekl_kl"], out["xekl_ce"] = terms["loss_kl"].item(), terms["loss_ce"].item()
    cd = LOSSES["cd"](resolve_method_options("cd"), MethodContext(5))
    terms = cd(
        LossInputs(
            t["student"], t["student_features"], t["labels"].long(), torch.arange(4), None, None, t["teacher_features"]
        )
    )
    out["cd_ce"], out["cd_cd"] = terms["loss_ce"].item(), terms["loss_cd"].item()
    crd = _crd_module(inputs)
    labels = torch.tensor([0, 1, 2, 0])
    terms = crd(
        LossInputs(
            t["student"][:, :3],
            t["student_features"],
            labels,
            torch.tensor([0, 1, 2, 3]),
            None,
            None,
            t["teacher_features"],
        )
    )
    out["crd_ce"], out["crd_crd"] = terms["loss_ce"].item(), terms["loss_crd"].item()
    return out


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize(
    "name",
    [
        "kl_t1",
        "kl_t2",
        "kl_top2_teacher",
        "kl_weighted",
        "cd",
        "nce",
        "xekl_kl",
        "xekl_ce",
        "cd_ce",
        "cd_cd",
        "crd_ce",
        "crd_crd",
    ],
)
def test_loss_golden_values(golden, name):
    computed = _compute_golden(golden["inputs"])
    assert computed[name] == pytest.approx(golden["expected"][name], rel=1e-5, abs=1e-7)


def test_kl_golden_matches_the_definition(golden):
    """The stored KL value is the textbook sum p_t (log p_t - log p_s), times τ², batch mean."""
    s, t = torch.tensor(golden["inputs"]["student"]), torch.tensor(golden["inputs"]["target"])
    tau = 2.0
    p_t = (t / tau).softmax(1)
    manual = (p_t * ((t / tau).log_softmax(1) - (s / tau).log_softmax(1))).sum(1).mean() * tau**2
    assert golden["expected"]["kl_t2"] == pytest.approx(manual.item(), rel=1e-5)


def test_cd_and_nce_golden_values_match_an_independent_numpy_computation(golden):
    import numpy as np

    inputs, expected = golden["inputs"], golden["expected"]

    def log_softmax(a):
        a = a - a.max(1, keepdims=True)
        return a - np.log(np.exp(a).sum(1, keepdims=True))

    s, t = np.array(inputs["student_features"]), np.array(inputs["teacher_features"])
    s, t = s / np.linalg.norm(s, axis=1, keepdims=True), t / np.linalg.norm(t, axis=1, keepdims=True)
    log_s, log_t = log_softmax(s @ s.T), log_softmax(t @ t.T)
    cd = (np.exp(log_t) * (log_t - log_s)).sum() / len(s)
    assert expected["cd"] == pytest.approx(cd, rel=1e-5)

    x = np.array(inputs["scores"], dtype=np.float64)
    noise, eps = (x.shape[1] - 1) / 100, 1e-7
    nce = -(np.log(x[:, 0] / (x[:, 0] + noise + eps)).sum() + np.log(noise / (x[:, 1:] + noise + eps)).sum()) / len(x)
    assert expected["nce"] == pytest.approx(nce, rel=1e-4)


# ---------------------------------------------------------------------------------------------
# Loss invariants


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("top_k", [None, 1, 3])
def test_kl_to_itself_is_zero(temperature, top_k):
    z = torch.randn(16, 10) * 3
    assert kl_divergence(z, z.clone(), temperature, top_k).item() == pytest.approx(0.0, abs=1e-6)


def test_kl_top_k_of_all_classes_is_plain_kl_and_top_1_is_zero():
    s, t = torch.randn(8, 6), torch.randn(8, 6)
    assert kl_divergence(s, t, top_k=6).item() == pytest.approx(kl_divergence(s, t).item())
    assert kl_divergence(s, t, top_k=1).item() == pytest.approx(0.0, abs=1e-7)


def test_kl_weight_zero_everywhere_gives_zero_and_ones_give_mean():
    s, t = torch.randn(8, 6), torch.randn(8, 6)
    assert kl_divergence(s, t, weight=torch.zeros(8)).item() == 0.0
    assert kl_divergence(s, t, weight=torch.ones(8)).item() == pytest.approx(kl_divergence(s, t).item())


def test_kl_is_positive_for_different_distributions():
    s, t = torch.randn(8, 6), torch.randn(8, 6)
    assert kl_divergence(s, t).item() > 0


def test_crd_negatives_never_share_the_anchor_class():
    torch.manual_seed(0)
    labels = torch.randint(0, 5, (200,))
    context = MethodContext(5, student_feature_dim=4, teacher_feature_dim=4, transfer_labels=labels)
    crd = LOSSES["crd"](resolve_method_options("crd", {"crd_negatives": 64, "crd_feature_dim": 8}), context)
    index = torch.arange(200)
    negatives = crd.negatives(index)
    assert negatives.shape == (200, 64)
    assert (labels[negatives] != labels[index].unsqueeze(1)).all()
    assert len(negatives.unique()) > 150  # drawn across the pool, not a few fixed samples


# ---------------------------------------------------------------------------------------------
# Target rules


def _rule(name: str, labels, frozen=None, teachers=None, student=None) -> Target:
    student = student if student is not None else (frozen if frozen is not None else teachers[0])
    return TARGET_RULES[name].fn(RuleInputs(labels, frozen, teachers, student))


def test_dp_picks_teacher_exactly_where_it_is_more_confident_in_the_label():
    torch.manual_seed(0)
    b, c = 64, 7
    frozen, teacher = torch.randn(b, c) * 2, torch.randn(b, c) * 2
    teacher[:8] = frozen[:8]  # exact ties
    labels = torch.randint(0, c, (b,))
    target = _rule("dp", labels, frozen, teacher.unsqueeze(0))
    p_t = teacher.softmax(1).gather(1, labels[:, None]).squeeze(1)
    p_f = frozen.softmax(1).gather(1, labels[:, None]).squeeze(1)
    expected = p_t > p_f
    assert torch.equal(target.routing == 1, expected)
    assert (target.routing[:8] == FROZEN).all()  # ties go to the frozen student
    assert torch.equal(target.logits, torch.where(expected[:, None], teacher, frozen))
    assert 0 < expected.sum() < b


def test_dp_unsupervised_uses_the_max_probability():
    torch.manual_seed(1)
    frozen, teacher = torch.randn(50, 5) * 2, torch.randn(50, 5) * 2
    teacher[:5] = frozen[:5]
    labels = torch.zeros(50, dtype=torch.long)  # ignored
    target = _rule("dp-u", labels, frozen, teacher.unsqueeze(0))
    expected = teacher.softmax(1).amax(1) > frozen.softmax(1).amax(1)
    assert torch.equal(target.routing == 1, expected)
    assert (target.routing[:5] == FROZEN).all()


def test_dp_with_several_teachers_routes_to_the_most_confident_candidate():
    torch.manual_seed(2)
    k, b, c = 3, 40, 6
    frozen, teachers = torch.randn(b, c), torch.randn(k, b, c) * 2
    teachers[1, :4] = teachers[0, :4]  # ties between teachers go to the earlier one
    labels = torch.randint(0, c, (b,))
    target = _rule("dp", labels, frozen, teachers)
    candidates = torch.cat([frozen[None], teachers])
    scores = candidates.softmax(-1).gather(2, labels.view(1, b, 1).expand(k + 1, b, 1)).squeeze(2)
    best = scores.max(0).values
    for i in range(b):  # the reference: first candidate reaching the maximum
        first = next(j for j in range(k + 1) if scores[j, i] == best[i])
        assert target.routing[i].item() == first
        assert torch.equal(target.logits[i], candidates[first, i])


def test_flip_rules_follow_the_flips_of_frozen_student_to_teacher():
    labels = torch.tensor([0, 0, 0, 0])
    right, wrong = torch.tensor([5.0, 0, 0]), torch.tensor([0.0, 5, 0])
    frozen = torch.stack([wrong, right, right, wrong])  # sample 0 positive flip, 1 negative, 2 & 3 neutral
    teacher = torch.stack([right, wrong, right * 2, wrong * 2])
    teachers = teacher.unsqueeze(0)
    st = _rule("flip-st", labels, frozen, teachers)
    assert st.routing.tolist() == [1, FROZEN, FROZEN, FROZEN]
    assert torch.equal(st.logits[0], teacher[0]) and torch.equal(st.logits[2], frozen[2])
    t = _rule("flip-t", labels, frozen, teachers)
    assert t.routing.tolist() == [1, FROZEN, 1, 1]
    avg = _rule("flip-avg", labels, frozen, teachers)
    assert avg.routing.tolist() == [1, FROZEN, MIXED, MIXED]
    assert torch.equal(avg.logits[2], (frozen[2] + teacher[2]) / 2)


def test_mcl_rule_skips_kl_where_teacher_wrong_and_current_student_right():
    labels = torch.tensor([0, 0, 0, 0])
    right, wrong = torch.tensor([3.0, 0]), torch.tensor([0.0, 3])
    teacher = torch.stack([wrong, wrong, right, right]).unsqueeze(0)
    student = torch.stack([right, wrong, right, wrong])
    target = _rule("teacher-skip-lost", labels, None, teacher, student)
    assert target.weight.tolist() == [0.0, 1.0, 1.0, 1.0]
    assert target.routing.tolist() == [SKIPPED, 1, 1, 1]


def test_ensemble_takes_the_more_confident_model_ties_to_the_student():
    frozen = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    teacher = torch.tensor([[0.0, 1.0], [3.0, 0.0], [1.0, 0.0]])
    predictions, routing = ensemble_predictions(frozen, teacher.unsqueeze(0))
    assert predictions.tolist() == [0, 0, 0]
    assert routing.tolist() == [FROZEN, 1, FROZEN]


# ---------------------------------------------------------------------------------------------
# Registry, presets and options


def test_every_preset_of_the_paper_is_registered_with_its_defaults():
    expected = {
        "kl",
        "xekl",
        "cd",
        "crd",
        "xekl+mcl",
        "kl+dp",
        "kl+dp-u",
        "kl+flip-st",
        "kl+flip-t",
        "kl+flip-avg",
        "self",
        "xe",
        "ensemble",
    }
    assert expected <= set(METHODS)
    assert resolve_method_options("kl") == {"temperature": 1.0, "top_k": None, "alpha": 1.0}
    assert resolve_method_options("xekl")["alpha"] == 0.5
    mcl = resolve_method_options("xekl+mcl")
    assert (mcl["alpha"], mcl["mcl_interpolation"], mcl["mcl_period"]) == (0.68, 0.9999, 2)
    assert get_method("xekl+mcl").base_lr == 1e-2
    assert (resolve_method_options("cd")["gamma"], resolve_method_options("cd")["beta"]) == (0.1, 10.0)
    crd = resolve_method_options("crd")
    assert (
        crd["gamma"],
        crd["beta"],
        crd["crd_feature_dim"],
        crd["crd_negatives"],
        crd["crd_temperature"],
        crd["crd_momentum"],
    ) == (1.0, 0.8, 128, 4096, 0.07, 0.5)
    assert not get_method("xe").needs_teacher and not get_method("self").needs_teacher
    assert get_method("kl+dp").multi_teacher and not get_method("kl").multi_teacher
    assert not get_method("ensemble").trains
    assert [r["name"] for r in method_table()] == list(METHODS)


@pytest.mark.parametrize(
    "method, options, fragment",
    [
        ("nope", {}, "unknown method 'nope'"),
        ("kl", {"temperature": 0}, "temperature"),
        ("kl", {"temperature": -1.0}, "temperature"),
        ("kl", {"alpha": 1.5}, "alpha"),
        ("kl", {"top_k": 0}, "top_k"),
        ("kl", {"top_k": 2.5}, "top_k"),
        ("kl", {"temprature": 2.0}, "unknown method option 'temprature'"),
        ("kl", {"mcl_period": 3}, "does not apply to method 'kl'"),
        ("xekl+mcl", {"mcl_interpolation": 1.2}, "mcl_interpolation"),
        ("crd", {"crd_negatives": True}, "crd_negatives"),
    ],
)
def test_bad_method_options_name_the_problem(method, options, fragment):
    with pytest.raises(AnyteachError, match=fragment.replace("(", r"\(").replace("+", r"\+")):
        resolve_method_options(method, options)


def test_a_new_method_is_one_decorated_function_and_one_preset():
    @register_target_rule("test-sharpened-teacher", uses_frozen=False)
    def sharpened(inputs: RuleInputs) -> Target:
        """The teacher, sharpened."""
        return Target(inputs.teachers[0] * 2, torch.ones(len(inputs.labels), dtype=torch.long))

    try:
        register_method(MethodPreset("test-kl-sharp", "test", "test-sharpened-teacher", "kl"))
        method = build_method("test-kl-sharp", resolve_method_options("test-kl-sharp"), MethodContext(4))
        student = nn.Linear(3, 4)
        x, y = torch.randn(5, 3), torch.randint(0, 4, (5,))
        out = method(student, x, y, torch.arange(5), None, torch.randn(1, 5, 4))
        assert set(out.losses) == {"loss_kl"} and out.losses["loss_kl"].requires_grad
        assert TARGET_RULES["test-sharpened-teacher"].description == "The teacher, sharpened."
    finally:
        METHODS.pop("test-kl-sharp", None)
        TARGET_RULES.pop("test-sharpened-teacher", None)


def test_registering_a_preset_with_unknown_parts_fails():
    with pytest.raises(ValueError, match="unknown loss"):
        register_method(MethodPreset("broken", "x", "teacher", "no-such-loss"))
    assert "broken" not in METHODS


def test_losses_are_registered_by_decorator():
    @register_loss("test-zero")
    class Zero(TransferLoss):
        """Nothing."""

        def forward(self, batch):
            return {"loss_zero": batch.logits.sum() * 0}

    try:
        assert LOSSES["test-zero"] is Zero
    finally:
        LOSSES.pop("test-zero")


# ---------------------------------------------------------------------------------------------
# MCL slow weights


class _TinyBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x):
        return self.bn(self.linear(x))


def _train_steps(model: nn.Module, slow: SlowWeights, steps: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    for step in range(1, steps + 1):
        loss = model(torch.randn(16, 4) + 3).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        slow.after_step(model, step)


def test_mcl_with_interpolation_one_never_moves_the_slow_weights():
    torch.manual_seed(0)
    model = _TinyBN()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    slow = SlowWeights(model, {"mcl_interpolation": 1.0, "mcl_period": 1})
    _train_steps(model, slow, 6)
    exported = slow.exported(model).state_dict()
    for name, value in initial.items():
        if value.is_floating_point():
            assert torch.equal(exported[name], value), name
            assert not torch.equal(model.state_dict()[name], value), name  # the fast weights did move


def test_mcl_interpolates_weights_and_batchnorm_statistics_every_period():
    torch.manual_seed(0)
    model = _TinyBN()
    t = 0.75
    slow = SlowWeights(model, {"mcl_interpolation": t, "mcl_period": 2})
    before = {k: v.clone() for k, v in slow.exported(model).state_dict().items()}
    _train_steps(model, slow, 1)  # step 1: no update (period 2)
    assert all(torch.equal(slow.exported(model).state_dict()[k], v) for k, v in before.items())
    _train_steps(model, slow, 1)  # counts as step 1 again: still nothing
    fast = model.state_dict()
    slow.after_step(model, 2)
    after = slow.exported(model).state_dict()
    for name in ("linear.weight", "bn.running_mean", "bn.running_var"):
        assert torch.allclose(after[name], t * before[name] + (1 - t) * fast[name]), name
        assert not torch.equal(after[name], fast[name])  # its own statistics, not the fast model's


if __name__ == "__main__" and "--write-golden" in sys.argv:
    inputs = _golden_inputs()
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({"inputs": inputs, "expected": _compute_golden(inputs)}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")


# ---------------------------------------------------------------------------------------------
# The package's surface


def test_every_public_name_of_the_parts_is_reexported_and_the_preset_table_registers_in_order():
    import anyteach.methods as methods
    from anyteach.methods import losses, presets, regularisers, targets

    for module in (targets, losses, regularisers, presets):
        public = {
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
        }
        assert public <= set(methods.__all__), module.__name__
    assert [row["name"] for row in presets.PRESET_TABLE] == list(METHODS)[: len(presets.PRESET_TABLE)]


@pytest.mark.parametrize("alias, new", [("OPTIONS", "METHOD_OPTIONS"), ("Option", "Option")])
def test_deprecated_aliases_warn_and_still_work(alias, new):
    import anyteach.methods as methods
    from anyteach.core import options

    with pytest.warns(DeprecationWarning, match=f"anyteach.methods.{alias} is deprecated"):
        assert getattr(methods, alias) is getattr(options, new)
    with pytest.raises(AttributeError):
        methods.NOT_A_NAME  # noqa: B018
