"""Old module paths, kept for one release: `anyteach.transfer` is now `anyteach.training.transfer`.

Until this release anyteach was one flat package; its modules now live in folders named after the
layers of the architecture. A script that imports from an old path keeps working and is told, once
per name it uses, where that name lives now.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from typing import Any

MOVED_MODULES = {
    "errors": "core.errors",
    "_io": "core.io",
    "registry": "core.registry",
    "seeds": "core.seeds",
    "options": "core.options",
    "optim": "core.optim",
    "runtime": "core.runtime",
    "distributed": "core.process_group",
    "trackers": "core.trackers",
    "_plotting": "core.plotting",
    "architectures": "models.architectures",
    "hub": "models.hub",
    "images": "data.images",
    "glyphs": "data.glyph_images",
    "predictions": "data.predictions",
    "metrics": "analysis.metrics",
    "complementarity": "analysis.complementarity",
    "figures": "analysis.complementarity_figures",
    "forecast": "analysis.forecast",
    "ceilings": "analysis.ceilings",
    "trainer": "training.trainer",
    "ddp": "training.ddp",
    "transfer": "training.transfer",
    "multi": "training.multi_teacher",
    "run_config": "training.run_config",
    "run_notes": "training.run_notes",
    "recipes": "training.protocols",
    "study_spec": "study.spec",
    "store": "study.store",
    "executors": "study.executors",
    "study_notices": "study.notices",
    "aggregate": "report.aggregate",
    "findings": "report.findings",
    "study_figures": "report.figures",
    "teacher_analysis": "report.teacher_choice",
    "crosscheck": "report.crosscheck",
    "cli_spellings": "cli.spellings",
}
"""Old module name -> its new place, both relative to the package. (`models`, `data`, `study` and
`report` are folders now; each re-exports what its old module held, so those paths need no entry.)"""


class MovedModule(types.ModuleType):
    """Stands in `sys.modules` under an old path; each attribute read warns and reads the new module."""

    def __init__(self, old: str, new: str) -> None:
        super().__init__(old, f"Moved to {new}.")
        object.__setattr__(self, "_new", new)

    def _module(self) -> types.ModuleType:
        old, new = self.__name__, object.__getattribute__(self, "_new")
        warnings.warn(
            f"{old} has moved to {new}: import from there (the old path goes in the next release)",
            DeprecationWarning,
            stacklevel=3,
        )
        return importlib.import_module(new)

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return getattr(self._module(), name)

    def __setattr__(self, name: str, value) -> None:  # a monkeypatch through the old path reaches the module
        setattr(self._module(), name, value)

    def __dir__(self) -> list[str]:
        return dir(importlib.import_module(object.__getattribute__(self, "_new")))


def install(package: str) -> dict[str, MovedModule]:
    """Register a stand-in for every old path of `package` (never over a module already imported)."""
    stand_ins: dict[str, Any] = {}
    for old, new in MOVED_MODULES.items():
        stand_ins[old] = sys.modules.setdefault(f"{package}.{old}", MovedModule(f"{package}.{old}", f"{package}.{new}"))
    return stand_ins
