"""anyteach: general knowledge transfer between any two pretrained classifiers.

Measure the complementary knowledge of a teacher for a student, transfer it without forgetting
(data-partitioned KL distillation), and study both at zoo scale. Method: Roth et al., "Fantastic
Gains and Where to Find Them", ICLR 2024.
"""

from .analysis.complementarity import PairAnalysis, ZooAnalysis, analyze_pair, analyze_zoo
from .analysis.forecast import TeacherRanking, rank_teachers
from .analysis.metrics import negative_flips, positive_flips, transfer_metrics
from .core import moved
from .core.errors import AnyteachError
from .core.options import TrainingOptions
from .data.predictions import Predictions, predict
from .data.references import Dataset, load_dataset
from .methods import METHODS, register_method
from .models.references import (
    Classifier,
    ModelInfo,
    Preprocessing,
    build_classifier,
    load_model,
    save_model,
    timm_classifier,
)
from .report.aggregate import StudySummary, summarize
from .report.document import write_report
from .study.driver import StudySpec, load_study_spec, run_study
from .training.multi_teacher import MultiTransferResult, transfer_multi
from .training.transfer import TransferResult, transfer
from .zoo import build_zoo, get_zoo, list_zoo

__version__ = "0.1.0"

_MOVED = moved.install(__name__)


def __getattr__(name: str):
    """`anyteach.metrics` and the other old module paths, read as attributes (see `core.moved`)."""
    if name in _MOVED:
        return _MOVED[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AnyteachError",
    "Classifier",
    "Dataset",
    "ModelInfo",
    "Predictions",
    "Preprocessing",
    "build_classifier",
    "build_zoo",
    "get_zoo",
    "list_zoo",
    "load_dataset",
    "load_model",
    "predict",
    "save_model",
    "timm_classifier",
    "StudySpec",
    "StudySummary",
    "load_study_spec",
    "run_study",
    "summarize",
    "write_report",
    "PairAnalysis",
    "ZooAnalysis",
    "analyze_pair",
    "analyze_zoo",
    "negative_flips",
    "positive_flips",
    "transfer_metrics",
    "METHODS",
    "TrainingOptions",
    "TransferResult",
    "register_method",
    "transfer",
    "MultiTransferResult",
    "transfer_multi",
    "TeacherRanking",
    "rank_teachers",
]
