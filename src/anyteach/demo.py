"""The built-in demo study: the paper's large-scale experiment, scaled to the MNIST-1D zoo (and,
with `--zoo glyphs`, to the glyphs image zoo of timm models, whose report also says which MNIST-1D
conclusions hold on images: `crosscheck.py`).

`anyteach demo` builds the zoo of seed 3 (if missing; `DEMO_ZOO_SEED`: a zoo nothing was developed or chosen
on, so its numbers are confirmatory), measures the complementary knowledge of every ordered pair, runs
`DEMO_STUDY` on pairs and teachers fixed in the definition (the same on every machine) and writes its report.
The study is an ordinary study definition (the same keys as a YAML file for `anyteach study`); the demo writes
it to `<out>/study/study.yaml`, so it can be copied and edited. Its transfer recipe is one recipe for the
dataset, the same for every pair and method family and never tuned per pair; how it was chosen, with the
numbers measured on the way, is in `docs/demo-recipe.md`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from .zoo.glyphs import DATA as GLYPHS_ZOO_DATA

DEMO_ZOO_SEED = 3
"""The seed of the MNIST-1D zoo and data the demo runs on. The recipes, the teacher forecaster and every
threshold were developed on the seed-0 zoo and confirmed or chosen on the zoos of seeds 1 and 2; seed 3 was used
for none of that, so the demo's numbers are a confirmatory test of them (research/README.md lists the seeds)."""

DEMO_DATA = f"mnist1d:seed={DEMO_ZOO_SEED}"
"""The study's data: the seed-3 zoo's own train and eval splits."""

TEACHING_DATA = f"mnist1d:seed={DEMO_ZOO_SEED},calib=5000,fresh=100000"
"""The teaching preset's data: 100,000 fresh samples the zoo never saw (their labels unused) and 5,000
fresh labelled samples to calibrate on; the eval split is the study's."""

DEMO_PAIRS: list[list[str]] = [
    ["gru", "mlp_wide_aug"],
    ["gru_chunk4", "transformer"],
    ["cnn_bn_aug", "cnn_bn"],
    ["transformer_aug", "gru_chunk4"],
    ["transformer_aug", "gru"],
    ["gru", "transformer_aug"],
    ["gru_chunk4", "mlp_wide_aug"],
    ["transformer", "transformer_aug"],
    ["mlp_wide_aug", "gru_chunk4"],
    ["mlp_narrow", "gru"],
    ["cnn_bn", "gru_chunk4"],
    ["gru", "gru_chunk4"],
    ["cnn_wide_sgd", "transformer_aug"],
    ["transformer", "gru_chunk4"],
    ["mlp", "gru_chunk4"],
    ["cnn_small_sgd", "mlp"],
    ["gru_chunk4", "transformer_aug"],
    ["transformer", "mlp_wide_aug"],
    ["cnn_small_sgd", "gru_chunk4"],
    ["mlp_narrow", "cnn_bn_aug"],
    ["mlp_wide_aug", "mlp_narrow"],
    ["gru_chunk4", "cnn_small_sgd"],
    ["transformer", "cnn_wide_sgd"],
    ["gru_chunk4", "gru"],
]
"""The demo's 24 (student, teacher) pairs, every model of the zoo a student of at least one. Drawn once, on one
build of the seed-3 zoo, with the balanced rule (`pairs: {random: 24, seed: 0, balanced: true}`: round-robin
over the teacher-strength buckets; `research/scripts/demo_pairs.py`), and fixed here: a draw made on every
machine depends on the last digits of the accuracies that machine trains (a pair 0.02 pp from a bucket edge
changes buckets, and the draw with it), so the same definition ran other students and teachers on other CPUs."""

DEMO_BEST_TEACHERS: dict[str, str] = {
    "gru": "cnn_bn_aug",
    "gru_chunk4": "cnn_bn_aug",
    "cnn_bn_aug": "cnn_bn",
    "transformer_aug": "cnn_bn_aug",
    "transformer": "cnn_bn_aug",
    "mlp_wide_aug": "cnn_bn_aug",
    "mlp_narrow": "cnn_bn_aug",
    "cnn_bn": "cnn_bn_aug",
    "cnn_wide_sgd": "cnn_bn_aug",
    "mlp": "cnn_bn_aug",
    "cnn_small_sgd": "cnn_bn_aug",
}
"""Per student, the teacher the shipped forecast ranks first (`anyteach teachers STUDENT --zoo mnist1d@3 --data
mnist1d:seed=3,calib=5000`: the most accurate other model), computed once like `DEMO_PAIRS` and fixed for the
same reason: a forecast near a tie could pick another teacher on another CPU."""

TEACHING_OPTIONS: dict[str, Any] = {"lr": 1.0e-3, "lr_schedule": "cosine"}
"""The teaching preset's recipe over the study's (AdamW, batch 256, 2 epochs): a higher lr with cosine
decay, which its WiSE guard makes safe (research/teaching-gains.md)."""

DEMO_STUDY: dict[str, Any] = {
    "name": "mnist1d-demo",
    "models": f"mnist1d@{DEMO_ZOO_SEED}",
    "data": DEMO_DATA,
    "pairs": {"list": DEMO_PAIRS},
    "methods": [
        "kl",
        "xekl",
        {"name": "xekl+mcl", "options": {"lr": 1.0e-2}},
        "kl+dp",
        "kl+dp-u",
        "xe",
        # teaching without labels on data the zoo never saw, and its two no-teacher controls on the same data
        # and budget (each run is compared with the stronger): self-distillation, and the same plus
        # fine-tuning on half of the labelled calib samples, with the same WiSE guard choosing on the other half
        {"name": "pl+ens+wise", "data": TEACHING_DATA, "options": TEACHING_OPTIONS},
        # the same preset with each student's best-forecast teacher (`anyteach teachers`, no training)
        {
            "name": "pl+ens+wise",
            "label": "pl+ens+wise.best",
            "teacher": DEMO_BEST_TEACHERS,
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


GLYPHS_DATA = GLYPHS_ZOO_DATA
"""The glyphs zoo's data (`zoo.glyphs.DATA`): metrics on its 10,000 eval images (0.01 pp each)."""

GLYPHS_TEACHING_DATA = f"{GLYPHS_ZOO_DATA},fresh=4000"
"""The teaching preset's data on images: 4,000 fresh images the zoo never saw (labels unused), the
zoo's 2,000 calibration images, the study's eval split."""

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

DEMO_ZOO_SEEDS = {"mnist1d": DEMO_ZOO_SEED, "glyphs": 0}
"""The seed of the zoo each demo builds and runs on."""


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


__all__ = [
    "DEMO_BEST_TEACHERS",
    "DEMO_DATA",
    "DEMO_PAIRS",
    "DEMO_STUDIES",
    "DEMO_STUDY",
    "DEMO_ZOO_SEED",
    "DEMO_ZOO_SEEDS",
    "GLYPHS_STUDY",
    "DemoResult",
    "demo_study",
    "run_demo",
]
