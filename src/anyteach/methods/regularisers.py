"""Weight regularisers: what watches the student's weights and decides which model is exported.

A regulariser's `after_step` runs after every optimiser step and its `exported` gives the model
that is evaluated and exported: MCL's slow weights (`mcl`), the WiSE guard's interpolation of S0
and the student chosen on the calib split (`wise`). Regularisers are registered by
`register_regulariser` and reachable by name in `REGULARISERS`.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, ClassVar

from torch import nn

from ..core.errors import AnyteachError
from ..core.registry import Registry
from .losses import MethodContext


class WeightRegulariser(nn.Module):
    """Base class: a component that watches the student's weights after every optimiser step and
    decides which model is evaluated and exported.

    Subclasses take `(student, options, context)`; `needs_calibration` marks one that chooses on the
    dataset's `calib` split (`context.calib_score`).
    """

    options: ClassVar[tuple[str, ...]] = ()
    needs_calibration: ClassVar[bool] = False

    def after_step(self, student: nn.Module, step: int) -> None:
        """Called after every optimiser step (default: nothing)."""

    def exported(self, student: nn.Module) -> nn.Module:
        """The model that is evaluated and exported (default: the student itself)."""
        return student

    def chosen(self) -> dict[str, Any]:
        """What the last `exported` chose, for the metrics row (default: nothing)."""
        return {}


REGULARISERS: Registry[type[WeightRegulariser]] = Registry("weight regulariser")


def register_regulariser(name: str) -> Callable[[type[WeightRegulariser]], type[WeightRegulariser]]:
    """Class decorator: make a `WeightRegulariser` subclass reachable by `name` (a taken name is an error)."""
    return REGULARISERS.decorator(name)


@register_regulariser("mcl")
class SlowWeights(WeightRegulariser):
    """MCL momentum weight interpolation: θ_slow ← t·θ_slow + (1−t)·θ every N steps.

    Built on timm's `ModelEmaV3`, which interpolates the floating-point buffers (BatchNorm running
    statistics) by the same factor: the slow model keeps statistics of its own, starting from the
    initial student's, instead of copying the fast model's (which cost a prototype 7-16 points).
    """

    options = ("mcl_interpolation", "mcl_period")

    def __init__(self, student: nn.Module, options: dict[str, Any], context: MethodContext | None = None):
        super().__init__()
        from timm.utils import ModelEmaV3

        self.period = options["mcl_period"]
        self.slow = ModelEmaV3(student, decay=options["mcl_interpolation"])

    def after_step(self, student: nn.Module, step: int) -> None:
        if step % self.period == 0:
            self.slow.update(student)

    def exported(self, student: nn.Module) -> nn.Module:
        return self.slow.module


WISE_ALPHAS = tuple(i / 10 for i in range(11))
"""The interpolation factors the WiSE guard chooses from (0: S0, 1: the trained student)."""


@register_regulariser("wise")
class WeightInterpolation(WeightRegulariser):
    """WiSE-FT guard: the exported model is (1−α)·θ_S0 + α·θ (floating-point buffers such as BatchNorm
    statistics interpolated alike), α ∈ {0, 0.1, ..., 1} chosen by accuracy on the calib split (ties:
    the smaller α, closer to S0) whenever the student is evaluated; α = 0 gives S0 back unchanged.

    The choice is a function of the current weights, so a resumed run exports the same model.
    """

    needs_calibration = True

    def __init__(self, student: nn.Module, options: dict[str, Any], context: MethodContext | None = None):
        super().__init__()
        if context is None or context.calib_score is None:
            raise AnyteachError(
                "the wise guard chooses on a calibration split: use a dataset with one (e.g. mnist1d:calib=5000)"
            )
        self.score = context.calib_score
        self.initial = {k: v.detach().clone() for k, v in student.state_dict().items()}
        self.last: dict[str, Any] = {}

    def interpolate(self, student: nn.Module, alpha: float) -> nn.Module:
        """A copy of `student` with weights (1−α)·θ_S0 + α·θ."""
        model = copy.deepcopy(student)
        state = {
            key: (1 - alpha) * self.initial[key].to(value.device) + alpha * value
            if value.is_floating_point()
            else value
            for key, value in student.state_dict().items()
        }
        model.load_state_dict(state)
        return model

    def exported(self, student: nn.Module) -> nn.Module:
        best: tuple[float, float, nn.Module] | None = None
        for alpha in WISE_ALPHAS:
            model = self.interpolate(student, alpha)
            score = self.score(model)
            if best is None or score > best[0]:
                best = (score, alpha, model)
        assert best is not None  # WISE_ALPHAS is not empty
        self.last = {"wise_alpha": best[1], "wise_calib_acc": best[0]}
        return best[2]

    def chosen(self) -> dict[str, Any]:
        return dict(self.last)
