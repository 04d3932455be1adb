"""The built-in demo study: the paper's large-scale experiment, scaled to the MNIST-1D zoo (and,
with `--zoo glyphs`, to the glyphs image zoo of timm models, whose report also says which MNIST-1D
conclusions hold on images: `crosscheck.py`).

`anyteach demo` builds the zoo (if missing), measures the complementary knowledge of every ordered
pair, runs `DEMO_STUDY` and writes its report. The study is an ordinary study definition (the
same keys as a YAML file for `anyteach study`); the demo writes it to `<out>/study/study.yaml`, so
it can be copied and edited. Its transfer recipe is one recipe for the dataset, the same for every
pair and method family and never tuned per pair; how it was chosen, with the numbers measured on
the way, is in `docs/demo-recipe.md`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

TEACHING_DATA = "mnist1d:calib=5000,fresh=100000"
"""The teaching preset's data: 100,000 fresh samples the zoo never saw (their labels unused) and 5,000
fresh labelled samples to calibrate on; the eval split is the study's."""

TEACHING_OPTIONS: dict[str, Any] = {"lr": 1.0e-3, "lr_schedule": "cosine"}
"""The teaching preset's recipe over the study's (AdamW, batch 256, 2 epochs): a higher lr with cosine
decay, which its WiSE guard makes safe (research/teaching-gains.md)."""

DEMO_STUDY: dict[str, Any] = {
    "name": "mnist1d-demo",
    "models": "mnist1d",
    "data": "mnist1d",
    "pairs": {"random": 24, "seed": 0, "balanced": True},
    "methods": [
        "kl",
        "xekl",
        {"name": "xekl+mcl", "options": {"lr": 1.0e-2}},
        "kl+dp",
        "kl+dp-u",
        "xe",
        # teaching without labels on data the zoo never saw, and its two no-teacher controls on the same data
        # and budget (each run is compared with the stronger): self-distillation, and the same plus
        # fine-tuning on every labelled calib sample with the same WiSE guard
        {"name": "pl+ens+wise", "data": TEACHING_DATA, "options": TEACHING_OPTIONS},
        # the same preset with each student's best-forecast teacher (`anyteach teachers`, no training)
        {
            "name": "pl+ens+wise",
            "label": "pl+ens+wise.best",
            "teacher": "best",
            "data": TEACHING_DATA,
            "options": TEACHING_OPTIONS,
        },
        {"name": "self", "data": TEACHING_DATA, "options": TEACHING_OPTIONS},
        {"name": "self+xe+wise", "data": TEACHING_DATA, "options": TEACHING_OPTIONS},
    ],
    "seeds": [0],
    "recipe": {"epochs": 2, "batch_size": 256, "optimizer": "adamw", "lr": 3.0e-4, "weight_decay": 1.0e-4},
    "workers": 2,
    "executor": "local",
}
"""The demo's study definition (`docs/demo-recipe.md` says why this recipe)."""


GLYPHS_DATA = "glyphs:train=4000,eval=2000,calib=1000"
"""The glyphs zoo's data (`zoo.glyphs.DATA`): metrics on its 2,000 eval images."""

GLYPHS_TEACHING_DATA = "glyphs:train=4000,eval=2000,calib=1000,fresh=4000"
"""The teaching preset's data on images: 4,000 fresh images the zoo never saw (labels unused), the
zoo's 1,000 calibration images, the study's eval split."""

GLYPHS_STUDY: dict[str, Any] = {
    "name": "glyphs-demo",
    "models": "glyphs",
    "data": GLYPHS_DATA,
    "pairs": {"random": 16, "seed": 0, "balanced": True},
    "methods": [
        "kl",
        "xekl",
        "kl+dp",
        "kl+dp-u",
        "xe",
        {"name": "pl+ens+wise", "data": GLYPHS_TEACHING_DATA, "options": TEACHING_OPTIONS},
        {"name": "self", "data": GLYPHS_TEACHING_DATA, "options": TEACHING_OPTIONS},
    ],
    "seeds": [0],
    "recipe": {"epochs": 1, "batch_size": 64, "optimizer": "adamw", "lr": 3.0e-4, "weight_decay": 1.0e-4},
    "workers": 2,
    "executor": "local",
}
"""The demo on the glyphs image zoo (`anyteach demo --zoo glyphs`): the MNIST-1D demo's methods,
controls and teaching preset, scaled to what two CPU cores train in minutes (16 balanced pairs, so
that at least 6 of the 8 models are students and a sign test over students can reach significance; one
epoch of the 4,000 training images at batch 64); its report checks the MNIST-1D conclusions one by one."""

DEMO_STUDIES = {"mnist1d": DEMO_STUDY, "glyphs": GLYPHS_STUDY}
"""The demo's study per built-in zoo."""


def demo_study(workers: int | None = None, zoo: str = "mnist1d") -> dict[str, Any]:
    """A copy of the demo study of `zoo` (`DEMO_STUDIES`), with `workers` local processes if given."""
    from .core.errors import AnyteachError

    if zoo not in DEMO_STUDIES:
        raise AnyteachError(f"no demo for zoo {zoo!r}; demos: {', '.join(DEMO_STUDIES)}")
    spec = copy.deepcopy(DEMO_STUDIES[zoo])
    if workers is not None:
        spec["workers"] = workers
    return spec


@dataclass
class DemoResult:
    """What `run_demo` produced."""

    complementarity: Any  # complementarity.ZooAnalysis
    summary: Any  # aggregate.StudySummary
    report_html: Path
    report_markdown: Path
    figures: list[Path]


def run_demo(
    out: str | Path,
    study: Mapping[str, Any] | None = None,
    *,
    on_analysis: Callable[[Any], None] | None = None,
    progress: bool = True,
) -> DemoResult:
    """Complementarity analysis of the study's models, the study, and its report, under `out`.

    The models must exist (`anyteach demo` builds the zoo first). Re-running resumes the study.

    Args:
        out: output directory: `complementarity/` (pair table, JSON, figures) and `study/` (store,
            runs, report).
        study: a study definition (default: `demo_study()`).
        on_analysis: called with the complementarity analysis before the study starts.
        progress: show the study's progress.

    Raises:
        AnyteachError: a bad definition, or runs that failed (re-running retries them).
    """
    from .analysis import complementarity
    from .analysis import complementarity_figures as figures
    from .analysis.ceilings import MNIST1D_CEILINGS, write_ceilings
    from .core.errors import AnyteachError
    from .report.aggregate import summarize
    from .report.crosscheck import crosscheck_section
    from .report.document import write_report
    from .study.driver import load_study_spec, run_study

    out = Path(out)
    spec = load_study_spec(dict(study) if study is not None else demo_study())
    analysis = complementarity.analyze_zoo(list(spec.models), spec.data)
    directory = out / "complementarity"
    analysis.save_json(directory / "zoo.json")
    analysis.save_csv(directory / "pairs.csv")
    paths = figures.zoo_figures(analysis, directory)
    if on_analysis is not None:
        on_analysis(analysis)

    study_dir = out / "study"
    outcome = run_study(spec, study_dir, progress=progress)
    if outcome.failed:
        raise AnyteachError(
            f"{len(outcome.failed)} runs failed (table `failures` of {study_dir / 'study.sqlite'}); "
            "run the demo again to retry them"
        )
    if set(spec.models) & set(MNIST1D_CEILINGS):  # the built-in zoo: its students' capacity ceilings
        write_ceilings(study_dir, {ref: MNIST1D_CEILINGS[ref] for ref in spec.models if ref in MNIST1D_CEILINGS})
    summary = summarize(study_dir)
    sections = [] if spec.data.startswith("mnist1d") else [crosscheck_section(analysis.positive_flips)]
    files = write_report(study_dir, summary, sections=sections)
    return DemoResult(analysis, summary, files.html, files.markdown, paths + files.figures)


__all__ = ["DEMO_STUDIES", "DEMO_STUDY", "GLYPHS_STUDY", "DemoResult", "demo_study", "run_demo"]
