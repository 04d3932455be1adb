"""Studies: many transfers (pairs x methods x seeds) into one resumable store.

`spec` reads and validates a study definition; `driver` plans its runs and runs them; `store` is
the SQLite database of finished runs; `executors` say where runs execute (in-process, local
processes, Ray); `notices` what a study says before it starts.

May import: `core`, `models`, `data`, `zoo`, `methods`, `analysis`, `training`.
"""

from .driver import (
    BUCKETS,
    MethodSpec,
    ModelEntry,
    PairSpec,
    RunSpec,
    StudyOutcome,
    StudyPlan,
    StudySpec,
    build_study_spec,
    describe_models,
    load_study_spec,
    plan_study,
    run_options,
    run_study,
    sample_pairs,
    strength_bucket,
    teacher_strength,
)

__all__ = [
    "BUCKETS",
    "MethodSpec",
    "ModelEntry",
    "PairSpec",
    "RunSpec",
    "StudyOutcome",
    "StudyPlan",
    "StudySpec",
    "build_study_spec",
    "describe_models",
    "load_study_spec",
    "plan_study",
    "run_options",
    "run_study",
    "sample_pairs",
    "strength_bucket",
    "teacher_strength",
]
