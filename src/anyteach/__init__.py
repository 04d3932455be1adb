"""anyteach: general knowledge transfer between any two pretrained classifiers.

Measure the complementary knowledge of a teacher for a student, transfer it without forgetting
(data-partitioned KL distillation), and study both at zoo scale. Method: Roth et al., "Fantastic
Gains and Where to Find Them", ICLR 2024.
"""

from .aggregate import StudySummary, summarize
from .complementarity import PairAnalysis, ZooAnalysis, analyze_pair, analyze_zoo
from .data import Dataset, load_dataset
from .errors import AnyteachError
from .metrics import negative_flips, positive_flips, transfer_metrics
from .models import Classifier, ModelInfo, Preprocessing, build_classifier, load_model, save_model, timm_classifier
from .predictions import Predictions, predict
from .report import write_report
from .study import StudySpec, load_study_spec, run_study
from .methods import METHODS, register_method
from .options import TrainingOptions
from .transfer import TransferResult, transfer
from .multi import MultiTransferResult, transfer_multi
from .zoo import build_zoo, get_zoo, list_zoo
from .forecast import TeacherRanking, rank_teachers

__version__ = "0.1.0"

__all__ = [
    "AnyteachError", "Classifier", "Dataset", "ModelInfo", "Predictions", "Preprocessing", "build_classifier",
    "build_zoo", "get_zoo", "list_zoo", "load_dataset", "load_model", "predict", "save_model", "timm_classifier",
    "StudySpec", "StudySummary", "load_study_spec", "run_study", "summarize", "write_report",
    "PairAnalysis", "ZooAnalysis", "analyze_pair", "analyze_zoo", "negative_flips", "positive_flips", "transfer_metrics",
    "METHODS", "TrainingOptions", "TransferResult", "register_method", "transfer",
    "MultiTransferResult", "transfer_multi", "TeacherRanking", "rank_teachers",
]
