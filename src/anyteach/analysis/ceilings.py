"""Capacity ceilings: what each student's architecture can hold at all, to read transfer efficiency against.

A student–teacher ensemble can be more accurate than anything the student's architecture reaches (mlp_narrow
tops out near 70% on MNIST-1D however it is trained), so "the share of the ensemble's gain taken" mixes what a
method fails to transfer with what the student cannot hold. A ceiling is the accuracy the architecture reaches
trained long on abundant labelled data (measured by `research/scripts/ceiling.py`); the reachable gain of a
run is then min(ensemble, ceiling) − S0. A study directory may hold `ceilings.json` (`{student ref: accuracy
%}`), which the summary joins to the runs by student reference; the demo writes the built-in zoo's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import pandas as pd

from ..core.errors import AnyteachError
from ..core.io import atomic_path

CEILINGS_FILE = "ceilings.json"
"""The file of a study directory that holds its students' ceilings."""

MNIST1D_CEILINGS: dict[str, float] = {
    "zoo:mnist1d/mlp_narrow": 65.78,
    "zoo:mnist1d/mlp": 89.38,
    "zoo:mnist1d/mlp_wide_aug": 96.78,
    "zoo:mnist1d/cnn_small_sgd": 95.5,
    "zoo:mnist1d/cnn_bn": 99.24,
    "zoo:mnist1d/cnn_bn_aug": 99.26,
    "zoo:mnist1d/cnn_wide_sgd": 98.18,
    "zoo:mnist1d/gru": 98.26,
    "zoo:mnist1d/gru_chunk4": 97.5,
    "zoo:mnist1d/transformer": 95.84,
    "zoo:mnist1d/transformer_aug": 96.36,
    "zoo:mnist1d@1/mlp_narrow": 67.3,
    "zoo:mnist1d@1/mlp": 90.02,
    "zoo:mnist1d@1/mlp_wide_aug": 97.38,
    "zoo:mnist1d@1/cnn_small_sgd": 96.06,
    "zoo:mnist1d@1/cnn_bn": 99.36,
    "zoo:mnist1d@1/cnn_bn_aug": 99.36,
    "zoo:mnist1d@1/cnn_wide_sgd": 98.4,
    "zoo:mnist1d@1/gru": 98.6,
    "zoo:mnist1d@1/gru_chunk4": 97.96,
    "zoo:mnist1d@1/transformer": 96.8,
    "zoo:mnist1d@1/transformer_aug": 96.86,
    "zoo:mnist1d@2/mlp_narrow": 68.74,
    "zoo:mnist1d@2/mlp": 89.66,
    "zoo:mnist1d@2/mlp_wide_aug": 96.86,
    "zoo:mnist1d@2/cnn_small_sgd": 96.04,
    "zoo:mnist1d@2/cnn_bn": 99.42,
    "zoo:mnist1d@2/cnn_bn_aug": 99.44,
    "zoo:mnist1d@2/cnn_wide_sgd": 98.26,
    "zoo:mnist1d@2/gru": 98.4,
    "zoo:mnist1d@2/gru_chunk4": 97.4,
    "zoo:mnist1d@2/transformer": 96.4,
    "zoo:mnist1d@2/transformer_aug": 96.92,
}
"""The ceilings of the built-in MNIST-1D zoos (seeds 0, 1, 2: `zoo:mnist1d/<model>`, `zoo:mnist1d@1/<model>`, ...)
on their eval splits: each model fine-tuned from its zoo weights with cross-entropy on 500,000 fresh labelled
samples, 1 epoch (1,953 steps), AdamW lr 1e-3 cosine (research/ceilings/mnist1d-seed{0,1,2}-500k.json,
measured by research/scripts/ceiling.py). A lower bound on what each architecture holds: the first
measurement (100,000 samples, 3 epochs: mnist1d-seed0.json) was lower for every model, and pseudo-labels
on 500,000 samples took mlp past it (research/teaching-gains.md)."""


def read_ceilings(study_dir: str | Path) -> dict[str, float]:
    """The ceilings in `study_dir/ceilings.json` (empty when there is none).

    Raises:
        AnyteachError: the file is not a JSON object of numbers.
    """
    path = Path(study_dir) / CEILINGS_FILE
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {str(ref): float(acc) for ref, acc in raw.items()}
    except (ValueError, AttributeError, TypeError) as e:
        raise AnyteachError(f"{path}: expected a JSON object {{student ref: accuracy %}} ({e})") from None


def write_ceilings(study_dir: str | Path, ceilings: Mapping[str, float]) -> Path:
    """Write `ceilings` to `study_dir/ceilings.json` (atomically) and return its path."""
    path = Path(study_dir) / CEILINGS_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({ref: float(acc) for ref, acc in ceilings.items()}, indent=2, sort_keys=True))
    return path


def with_ceilings(runs: pd.DataFrame, ceilings: Mapping[str, float]) -> pd.DataFrame:
    """`runs` with a `ceiling_acc` column: the ceiling of each run's student (NaN where unknown)."""
    if not ceilings or "student" not in runs.columns:
        return runs
    return runs.assign(ceiling_acc=runs["student"].map(dict(ceilings)).astype(float))


__all__ = ["CEILINGS_FILE", "MNIST1D_CEILINGS", "read_ceilings", "with_ceilings", "write_ceilings"]
