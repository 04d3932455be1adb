"""The bad-input catalogue: every case runs through the CLI and must end in one clear line naming the
problem, the documented exit status (2: the input is wrong; 1: the run failed), no traceback, and
nothing half-written. `docs/errors.md` is this table; `test_the_catalogue_is_docs_errors_md` fails
when the two differ (regenerate the page with `ANYTEACH_WRITE_ERRORS_DOC=1 pytest tests/test_errors.py`).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from anyteach import build_classifier, save_model, timm_classifier, transfer
from anyteach.study.store import StudyStore

from .conftest import TINY_DATA

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


@dataclass(frozen=True)
class Case:
    """One bad input: the CLI arguments (`{dir}`, `{mlp}`, `{gru}`, `{data}` are filled in), a fragment of
    the expected message, the exit status, and the files it may leave under the case's directory."""

    group: str
    what: str
    args: tuple[str, ...]
    fragment: str
    code: int = 2
    leaves: tuple[str, ...] = ()
    file_limit: int = 0  # run in a subprocess whose files may not grow beyond this (`ulimit -f`): a full disk
    env: tuple[
        tuple[str, str | None], ...
    ] = ()  # environment variables set (None: removed), run in the case's directory


FAST = ("--epochs", "1", "--batch-size", "128", "--optimizer", "adamw", "--lr", "1e-3", "--quiet")
T = ("transfer", "--student", "{mlp}", "--teacher", "{gru}", "--data", "{data}")

CASES = [
    # model references
    Case("model", "unknown zoo member", ("info", "zoo:mnist1d/nope"), "zoo 'mnist1d' has no model 'nope'"),
    Case("model", "unknown timm name", ("info", "timm:no_such_net_xyz"), "unknown timm model 'no_such_net_xyz'"),
    Case("model", "missing file", ("info", "{dir}/missing.safetensors"), "model file not found"),
    Case("model", "a directory", ("info", "{dir}/emptydir"), "model file not found"),
    Case(
        "model",
        "a text file named .safetensors",
        ("info", "timm:test_vit@{dir}/text.safetensors"),
        "corrupted or not a safetensors file",
    ),
    Case(
        "model",
        "a truncated safetensors file",
        ("info", "timm:test_vit@{dir}/truncated.safetensors"),
        "corrupted or not a safetensors file",
    ),
    Case(
        "model",
        "a file with pickled objects",
        ("info", "timm:test_vit@{dir}/pickle.pt"),
        "contains pickled Python objects",
    ),
    Case("model", "a sidecar without an architecture", ("info", "{dir}/noarch.safetensors"), "lacks architecture"),
    Case(
        "model",
        "a sidecar whose mean is not numbers",
        ("info", "{dir}/mean_text.safetensors"),
        "mean must be numbers like 0.5,0.5,0.5, got 'grey'",
    ),
    Case(
        "model",
        "a sidecar asking for an absurdly large network",
        ("info", "{dir}/absurd.safetensors"),
        "parameters; check its arguments",
    ),
    Case(
        "model",
        "a timm argument the architecture cannot take",
        ("info", "timm:test_vit@{dir}/full.safetensors?patch_size=0"),
        "cannot create timm:test_vit with",
    ),
    Case(
        "model",
        "pretrained as a model argument",
        ("info", "timm:test_vit@{dir}/full.safetensors?pretrained=true"),
        "pretrained is not a model argument",
    ),
    Case(
        "model",
        "an input size that is not a size",
        ("info", "{mlp}?input_size=3,0,32"),
        "input_size must be (channels, height, width)",
    ),
    Case(
        "model",
        "a student at chance on the data",
        (*T[:2], "{dir}/random10.safetensors", *T[3:], *FAST),
        "the student 'random10' is at chance on the eval split",
    ),
    Case(
        "model",
        "a sidecar whose class count differs from the weights",
        ("info", "{dir}/liar.safetensors"),
        "says 7 classes but the weights",
    ),
    Case(
        "model",
        "a sidecar whose architecture is a number",
        ("info", "{dir}/arch5.safetensors"),
        "'architecture' must be a string, got 5",
    ),
    Case(
        "model",
        "a sidecar whose class count is a string",
        ("info", "{dir}/classes_text.safetensors"),
        "'num_classes' must be an integer, got '10'",
    ),
    Case(
        "model",
        "int8 weights for a float model",
        ("info", "{dir}/int8.safetensors"),
        "tensors of another kind of number",
    ),
    Case(
        "model",
        "weights whose class count differs from the data",
        ("info", "{dir}/five.safetensors", "--data", "{data}"),
        "has 5 classes but dataset",
    ),
    Case(
        "model",
        "student and teacher with different class counts",
        (
            "transfer",
            "--student",
            "{mlp}",
            "--teacher",
            "{dir}/five.safetensors",
            "--data",
            "{data}",
            "--out",
            "{dir}/run",
            *FAST,
        ),
        "has 5 classes but dataset",
    ),
    Case(
        "model",
        "an image model on signal data",
        ("info", "{dir}/img10.safetensors", "--data", "{data}"),
        "cannot take the inputs of dataset",
    ),
    Case(
        "model",
        "a timm model argument without a value",
        ("info", "timm:test_vit@{dir}/full.safetensors?img_size"),
        "is not <name>=<value>",
    ),
    Case(
        "model",
        "a timm model argument the architecture does not take",
        ("info", "timm:test_vit@{dir}/full.safetensors?colour=1"),
        "cannot create timm:test_vit with",
    ),
    # data references
    Case(
        "data",
        "a method that reads labels, on unlabelled transfer data",
        (
            "transfer",
            "--student",
            "{dir}/img2.safetensors",
            "--teacher",
            "{dir}/img2b.safetensors",
            "--data",
            "imagefolder:{dir}/with_unlabelled",
            "--method",
            "kl+dp",
            *FAST,
        ),
        "reads the labels of the transfer data, but the transfer split",
    ),  # fmt: skip
    Case("data", "a bad number", ("info", "{mlp}", "--data", "mnist1d:size=abc"), "size='abc'"),
    Case(
        "data", "an unknown dataset key", ("info", "{mlp}", "--data", "mnist1d:colour=red"), "unknown option 'colour'"
    ),
    Case("data", "a negative seed", ("info", "{mlp}", "--data", "mnist1d:seed=-1"), "mnist1d seed must be in"),
    Case(
        "data", "a missing folder", ("info", "{mlp}", "--data", "imagefolder:{dir}/nowhere"), "has no train/ directory"
    ),
    Case(
        "data",
        "an empty class folder",
        ("info", "{dir}/img2.safetensors", "--data", "imagefolder:{dir}/empty_class"),
        "cannot read image folders",
    ),
    Case(
        "data",
        "a val class missing from train",
        ("info", "{dir}/img2.safetensors", "--data", "imagefolder:{dir}/val_missing"),
        "different class folders",
    ),
    Case(
        "data",
        "a corrupt image",
        ("info", "{dir}/img2.safetensors", "--data", "imagefolder:{dir}/corrupt"),
        "cannot read image",
    ),
    Case(
        "data",
        "an image over PIL's decompression-bomb limit",
        ("info", "{dir}/img2.safetensors", "--data", "imagefolder:{dir}/bomb"),
        "bomb/val/a/huge.png has more pixels than PIL's decompression-bomb limit",
    ),
    Case(
        "data",
        "a key given twice in a data reference",
        ("info", "{mlp}", "--data", "mnist1d:eval=500,eval=100"),
        "option 'eval' is given twice",
    ),
    Case(
        "data",
        "an image folder with a symlink loop",
        ("info", "{dir}/img2.safetensors", "--data", "imagefolder:{dir}/loop"),
        "a folder it is inside of",
    ),
    Case(
        "data",
        "a calib split that is a link to the eval split",
        ("info", "{dir}/img2.safetensors", "--data", "imagefolder:{dir}/calib_link"),
        "hold the same images",
    ),
    Case(
        "data",
        "a calib split that is a copy of the eval split",
        ("info", "{dir}/img2.safetensors", "--data", "imagefolder:{dir}/calib_copy"),
        "hold the same images",
    ),
    Case(
        "data",
        "a train split that is a link to the eval split",
        ("info", "{dir}/img2.safetensors", "--data", "imagefolder:{dir}/train_link"),
        "hold the same images",
    ),
    Case(
        "data",
        "a damaged cached dataset file (not an error: it is generated again)",
        ("info", "{mlp}", "--data", "mnist1d:size=300,eval=100,seed=5"),
        "eval_acc",
        code=0,
    ),
    # options
    Case("options", "zero", (*T, "--out", "{dir}/run", *FAST, "--batch-size", "0"), "batch_size=0 is out of range"),
    Case("options", "negative", (*T, "--out", "{dir}/run", *FAST, "--lr", "-1"), "lr=-1.0 is out of range"),
    Case("options", "NaN", (*T, "--out", "{dir}/run", *FAST, "--temperature", "nan"), "must be a finite number"),
    Case("options", "inf", (*T, "--out", "{dir}/run", *FAST, "--weight-decay", "inf"), "must be a finite number"),
    Case("options", "unknown method", (*T, "--out", "{dir}/run", *FAST, "--method", "nope"), "unknown method 'nope'"),
    Case(
        "options",
        "unknown option",
        (*T, "--out", "{dir}/run", *FAST, "--option", "colour=red"),
        "unknown option 'colour'",
    ),
    Case(
        "options",
        "a method given a teacher it cannot use",
        (*T, "--out", "{dir}/run", *FAST, "--method", "xe"),
        "takes no teacher",
    ),
    Case(
        "options",
        "--mode with one teacher",
        (*T, "--out", "{dir}/run", *FAST, "--mode", "soup"),
        "give at least two --teacher",
    ),
    Case(
        "options",
        "top-k beyond the class count",
        (*T, "--out", "{dir}/run", *FAST, "--top-k", "99"),
        "top_k=99 is out of range",
    ),
    Case(
        "options",
        "a batch larger than the data",
        (*T, "--out", "{dir}/run", *FAST, "--batch-size", "100000"),
        "fewer than one batch",
    ),
    Case(
        "options",
        "a seed beyond 64 bits",
        (*T, "--out", "{dir}/run", *FAST, "--seed", "9223372036854775808"),
        "seed=9223372036854775808 is out of range",
    ),
    Case("options", "zero epochs", (*T, "--out", "{dir}/run", *FAST, "--epochs", "0"), "epochs=0 is out of range"),
    Case(
        "options",
        "a typo'd epoch count",
        (*T, "--out", "{dir}/run", *FAST, "--epochs", "100000000000000000000"),
        "it must be in [1, 10000]",
    ),
    Case(
        "options",
        "a warm-up as long as the run",
        (*T, "--out", "{dir}/run", *FAST, "--warmup-epochs", "5"),
        "warmup_epochs=5 is not below epochs=1",
    ),
    Case(
        "options",
        "an unknown input-mixing mode",
        (*T, "--out", "{dir}/run", *FAST, "--mix", "sideways"),
        "mix='sideways' is out of range: it must be one of none, mixup, cutmix, both",
    ),
    Case(
        "options",
        "a flag's value of the wrong type",
        (*T, "--out", "{dir}/run", *FAST, "--epochs", "abc"),
        "Invalid value for '--epochs'",
    ),
    Case(
        "options", "an unknown flag", (*T, "--out", "{dir}/run", *FAST, "--colour", "red"), "No such option: --colour"
    ),
    Case(
        "options",
        "CUDA asked for, none present",
        (*T, "--out", "{dir}/run", *FAST, "--device", "cuda"),
        "CUDA is not available",
    ),
    Case(
        "options",
        "an image student without --data",
        ("transfer", "--student", "{dir}/img2.safetensors", "--method", "xe", "--out", "{dir}/run", *FAST),
        "give the data: --data",
    ),
    Case(
        "options",
        "an unknown tracker",
        (*T, "--out", "{dir}/run", *FAST, "--log", "neptune"),
        "unknown tracker 'neptune'",
    ),
    Case(
        "options",
        "an unknown key in a --config file",
        ("transfer", "--config", "{dir}/bad_run.yaml"),
        "unknown key 'epochs'",
    ),
    Case(
        "options",
        "a temperature whose square overflows",
        (*T, "--out", "{dir}/run", *FAST, "--temperature", "1e308"),
        "temperature=1e+308 of method 'kl+dp' is out of range",
    ),
    Case(
        "options",
        "an unknown torch.compile backend",
        (*T, "--out", "{dir}/run", *FAST, "--compile", "--compile-backend", "nope"),
        "compile_backend='nope' is out of range",
    ),
    Case(
        "options",
        "a device this machine does not have (MPS)",
        (*T, "--out", "{dir}/run", *FAST, "--device", "mps"),
        "MPS is not available on this machine",
    ),
    Case(
        "options",
        "a --config file that is not UTF-8",
        ("transfer", "--config", "{dir}/latin1_run.yaml"),
        "is not a UTF-8 (or UTF-16) text file",
    ),
    Case(
        "options",
        "--log wandb without a W&B login",
        (*T, "--out", "{dir}/run", *FAST, "--log", "wandb"),
        "--log wandb cannot start",
        env=(("WANDB_API_KEY", None), ("WANDB_MODE", None), ("HOME", "{dir}/home"), ("WANDB_CONFIG_DIR", "{dir}/home")),
        leaves=("home", "home/", "wandb", "wandb/"),
    ),
    Case(
        "options",
        "--log mlflow with a tracking server nothing answers at",
        (*T, "--out", "{dir}/run", *FAST, "--log", "mlflow"),
        "--log mlflow cannot start",
        env=(("MLFLOW_TRACKING_URI", "http://127.0.0.1:9"),),
    ),
    Case(
        "options",
        "--log mlflow with MLflow's default tracking store",
        (*T, "--out", "{dir}/run", *FAST, "--log", "mlflow"),
        "--log mlflow cannot start",
        env=(("MLFLOW_TRACKING_URI", None),),
    ),
    Case(
        "options",
        "push without a network",
        ("push", "{mlp}", "me/student"),
        "cannot reach the Hugging Face hub",
        code=1,
        env=(("HF_HUB_OFFLINE", "1"),),
    ),
    Case(
        "options",
        "a cache directory that is a file (ANYTEACH_CACHE)",
        ("info", "{mlp}", "--data", "{data}"),
        "the environment variable ANYTEACH_CACHE='{dir}/a_file' cannot be used",
        env=(("ANYTEACH_CACHE", "{dir}/a_file"),),
    ),
    Case(
        "options",
        "--plots named like an image file",
        ("flips", "{mlp}", "{gru}", "--data", "{data}", "--plots", "{dir}/x.png"),
        "is named like an image file",
    ),
    Case(
        "options",
        "push of a file that is not a saved model",
        ("push", "{dir}/text.safetensors", "me/student"),
        "is not a model saved by anyteach",
    ),
    # run directories
    Case("run directory", "an existing file", (*T, "--out", "{dir}/a_file", *FAST), "is a file"),
    Case(
        "run directory",
        "an unwritable directory (under a file)",
        (*T, "--out", "{dir}/a_file/run", *FAST),
        "not a directory",
    ),
    Case(
        "run directory",
        "a finished run, re-run (not an error: nothing is trained)",
        (*T, "--out", "{dir}/finished", *FAST),
        "student: {dir}/finished/student.safetensors",
        code=0,
    ),
    Case(
        "run directory",
        "a different configuration",
        (*T, "--out", "{dir}/finished", *FAST, "--lr", "5e-4"),
        "different configuration (first difference: training.lr",
    ),
    Case(
        "run directory",
        "an image removed from the transfer split since the run",
        (
            "transfer",
            "--student",
            "{dir}/img2.safetensors",
            "--teacher",
            "{dir}/img2b.safetensors",
            "--data",
            "imagefolder:{dir}/removed",
            "--out",
            "{dir}/removed_run",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--optimizer",
            "adamw",
            "--lr",
            "1e-3",
            "--quiet",
            "--workers",
            "0",
        ),
        "the files of the transfer split changed (images added, removed, edited or relabelled)); choose another "
        "directory, or pass --overwrite",
    ),
    Case(
        "run directory",
        "a finished run whose final.json is damaged",
        (*T, "--out", "{dir}/final_list", *FAST),
        "final.json is damaged",
        code=1,
    ),
    Case(
        "run directory",
        "a finished run whose student.safetensors is empty",
        (*T, "--out", "{dir}/empty_student", *FAST),
        "has a damaged student.safetensors",
        code=1,
    ),
    Case(
        "run directory",
        "a finished run whose student.safetensors is cut short",
        (*T, "--out", "{dir}/cut_student", *FAST),
        "has a damaged student.safetensors",
        code=1,
    ),
    Case(
        "run directory",
        "a finished run whose metrics.jsonl is cut mid-row",
        (*T, "--out", "{dir}/cut_metrics", *FAST),
        "metrics.jsonl is damaged (line 1",
        code=1,
    ),
    Case(
        "run directory",
        "a directory holding an unrelated config.json",
        (*T, "--out", "{dir}/foreign", *FAST),
        "is not the configuration of a run",
    ),
    Case(
        "run directory",
        "a truncated config.json",
        (*T, "--out", "{dir}/truncated_config", *FAST),
        "cannot read run configuration",
    ),
    Case(
        "run directory",
        "a corrupt checkpoint",
        (*T, "--out", "{dir}/corrupt_checkpoint", *FAST, "--epochs", "2"),
        "--restart",
        code=1,
    ),
    Case(
        "run directory",
        "a run that diverges",
        (*T, "--out", "{dir}/diverges", *FAST, "--lr", "1e6"),
        "training diverged at step",
        code=1,
        leaves=("diverges", "diverges/config.json", "diverges/metrics.jsonl", "diverges/.lock"),
    ),
    # study definitions
    Case(
        "study",
        "an unknown study key",
        ("study", "{dir}/unknown_key.yaml", "--out", "{dir}/study"),
        "unknown study spec key 'colour'",
    ),
    Case(
        "study",
        "a wrong type",
        ("study", "{dir}/wrong_type.yaml", "--out", "{dir}/study"),
        "'pairs.random' must be an integer",
    ),
    Case("study", "a method twice", ("study", "{dir}/twice.yaml", "--out", "{dir}/study"), "label 'kl' is used twice"),
    Case(
        "study",
        "more pairs than exist",
        ("study", "{dir}/too_many.yaml", "--out", "{dir}/study"),
        "asked for 1000 pairs",
    ),
    Case(
        "study",
        "a full disk (ulimit -f 4)",
        ("study", "{dir}/full_disk.yaml", "--out", "{dir}/full_study"),
        "cannot create the study store {dir}/full_study/study.sqlite",
        code=1,
        leaves=("full_study", "full_study/.driver.lock"),
        file_limit=4_000,
    ),
    Case(
        "study", "a missing plugin", ("study", "{dir}/bad_plugin.yaml", "--out", "{dir}/study"), "plugin file not found"
    ),
    Case(
        "study",
        "a plugin that calls sys.exit(0)",
        ("study", "{dir}/exiting_plugin.yaml", "--out", "{dir}/study"),
        "called sys.exit(0) while being imported",
    ),
    Case(
        "study",
        "a plugin that raises",
        ("study", "{dir}/raising_plugin.yaml", "--out", "{dir}/study"),
        "ZeroDivisionError",
    ),
    Case(
        "study",
        "a key given twice",
        ("study", "{dir}/duplicate_key.yaml", "--out", "{dir}/study"),
        "the key 'methods' is given twice at line",
    ),
    Case(
        "study",
        "a teacher choice that does not exist",
        ("study", "{dir}/worst_teacher.yaml", "--out", "{dir}/study"),
        "'methods[0].teacher': 'worst' is not one of best",
    ),
    Case(
        "study",
        "teacher: best for a method without a teacher",
        ("study", "{dir}/teacherless_best.yaml", "--out", "{dir}/study"),
        "method 'xe' uses no teacher",
    ),
    Case(
        "study",
        "teacher: best on data without a calib split",
        ("study", "{dir}/best_without_calib.yaml", "--out", "{dir}/study"),
        "which ranks teachers on a calib split",
    ),
    Case(
        "study",
        "a seed beyond the generators' range",
        ("study", "{dir}/huge_seed.yaml", "--out", "{dir}/study"),
        "'seeds' must be <= 4294967295",
    ),
    Case(
        "study",
        "zero epochs in the recipe",
        ("study", "{dir}/zero_epochs.yaml", "--out", "{dir}/study"),
        "option epochs=0 is out of range",
    ),
    Case(
        "study",
        "a file that is not UTF-8 or UTF-16",
        ("study", "{dir}/latin1.yaml", "--out", "{dir}/study"),
        "not valid YAML",
    ),
    Case(
        "study",
        "an absurdly large plan (1,000,000 seeds)",
        ("study", "{dir}/twice.yaml", "--methods", "kl", "--out", "{dir}/study", "--seeds", "{million}"),
        "would plan up to 2,000,000 runs",
    ),
    Case(
        "study",
        "resuming a study whose store an older anyteach wrote (migrated; not an error)",
        ("study", "{dir}/old_store_resume/study.yaml", "--out", "{dir}/old_store_resume"),
        "runs finished now",
        code=0,
    ),
    Case(
        "study",
        "resuming a study whose store is damaged",
        ("study", "{dir}/damaged_store/study.yaml", "--out", "{dir}/damaged_store"),
        "it is damaged or not a study store",
    ),
    Case(
        "study",
        "resuming a study whose store has another schema",
        ("study", "{dir}/schema0_store/study.yaml", "--out", "{dir}/schema0_store"),
        "has store schema '0'",
    ),
    # summary and report
    Case(
        "summary",
        "a store an older anyteach wrote (no plan table, columns missing; not an error)",
        ("summary", "{dir}/old_store"),
        "runs finished",
        code=0,
    ),
    Case(
        "summary",
        "report of a store an older anyteach wrote (not an error)",
        ("report", "{dir}/old_store", "--out", "{dir}/old_store_report"),
        "report: {dir}/old_store_report/report.md",
        code=0,
        leaves=("old_store_report", "old_store_report/"),
    ),
    Case("summary", "a damaged study store", ("summary", "{dir}/damaged_store"), "it is damaged or not a study store"),
    Case("summary", "a store of another schema", ("report", "{dir}/schema0_store"), "has store schema '0'"),
    Case("summary", "not a study directory", ("summary", "{dir}/emptydir"), "is not a study directory"),
    Case("summary", "a zero-byte study.sqlite", ("summary", "{dir}/zero_store"), "is not an anyteach study store"),
    Case("summary", "a study with no runs yet", ("summary", "{dir}/empty_study"), "no finished runs", code=1),
    Case(
        "summary", "a study whose runs all failed", ("summary", "{dir}/failed_study"), "1 failed (1 diverged)", code=1
    ),
    Case(
        "summary",
        "report of a study whose runs all failed",
        ("report", "{dir}/failed_study"),
        "no finished runs",
        code=1,
    ),
    Case(
        "summary",
        "flips --json-out naming a directory",
        ("flips", "{mlp}", "{gru}", "--data", "{data}", "--json-out", "{dir}/emptydir"),
        "is a directory",
    ),
    # ranking teachers
    Case(
        "teachers",
        "data without a calib split",
        ("teachers", "{mlp}", "--zoo", "{mlp},{gru}", "--data", "{data}"),
        "has no calib split",
    ),
    Case(
        "teachers",
        "a method without a forecast",
        ("teachers", "{mlp}", "--zoo", "{mlp},{gru}", "--data", "{data},calib=200", "--method", "xe"),
        "no forecast for method 'xe'",
    ),
    Case(
        "teachers",
        "a forecaster file that is not one",
        ("teachers", "{mlp}", "--zoo", "{mlp},{gru}", "--data", "{data},calib=200", "--forecaster", "{dir}/a_file"),
        "cannot read forecaster",
    ),
    Case(
        "teachers",
        "a forecaster file with the range of a column its signals do not use",
        (
            "teachers",
            "{mlp}",
            "--zoo",
            "{mlp},{gru}",
            "--data",
            "{data},calib=200",
            "--forecaster",
            "{dir}/stray_range.json",
        ),
        "ranges of columns its signals do not use: ['shoe_size']",
    ),
    Case(
        "teachers",
        "every candidate is the student under another name",
        ("teachers", "{mlp}", "--zoo", "{dir}/student_copy.safetensors", "--data", "{data},calib=200", "--json"),
        "no candidate teacher: every model given is the student",
    ),
    # what leaves the tool: the hub folder, exported data
    Case(
        "hub and export",
        "a sidecar whose class names do not fit the class count",
        ("info", "{dir}/labels_wrong.safetensors"),
        "'class_names' must be 10 strings, one per class",
    ),
    Case(
        "hub and export",
        "push --out without --dry-run",
        ("push", "{mlp}", "me/student", "--out", "{dir}/hub"),
        "--out names the folder of a dry run: add --dry-run",
    ),
    Case(
        "hub and export",
        "push --dry-run into a folder of other files",
        ("push", "{mlp}", "me/student", "--dry-run", "--out", "{dir}/removed"),
        "holds other files than a dry run's",
    ),
    Case(
        "hub and export",
        "push --dry-run onto a file",
        ("push", "{mlp}", "me/student", "--dry-run", "--out", "{dir}/a_file"),
        "is a file; choose a new folder for the dry run",
    ),
    Case(
        "hub and export",
        "data export of neither a dataset nor a zoo",
        ("data", "export", "--out", "{dir}/export"),
        "give the dataset to export",
    ),
    Case(
        "hub and export",
        "data export of a zoo's draw with a bad seed",
        ("data", "export", "--zoo", "glyphs@one", "--out", "{dir}/export"),
        "bad zoo seed in 'glyphs@one'",
    ),
    Case(
        "hub and export",
        "data export of an unknown zoo's draw",
        ("data", "export", "--zoo", "nope", "--out", "{dir}/export"),
        "unknown zoo 'nope'",
    ),
]


def _png(path: Path, seed: int) -> None:
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(16, 16, 3, generator=g) * 255).to(torch.uint8).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _image_folder(root: Path, classes=("a", "b"), val_classes=None, corrupt: bool = False, empty: str = "") -> None:
    for split, names in (("train", classes), ("val", val_classes or classes)):
        for k, name in enumerate(names):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            if name == empty:
                continue
            for i in range(2):
                _png(root / split / name / f"{i}.png", hash((split, k, i)) % 1000)
    if corrupt:
        (root / "val" / classes[0] / "0.png").write_bytes(b"not an image at all")


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_zoo):
    d = tmp_path_factory.mktemp("errors")
    (d / "emptydir").mkdir()
    (d / "a_file").write_text("I am a file")
    from anyteach.analysis.forecast import shipped_forecaster

    shipped = shipped_forecaster().as_dict()
    shipped["methods"]["pl+ens+wise"]["ranges"]["shoe_size"] = (0, 1)
    (d / "stray_range.json").write_text(json.dumps(shipped))
    (d / "text.safetensors").write_text("just some text")
    torch.manual_seed(0)
    img = timm_classifier("test_vit", num_classes=10)
    save_file({k: v.contiguous() for k, v in img.net.state_dict().items()}, str(d / "full.safetensors"))
    (d / "truncated.safetensors").write_bytes((d / "full.safetensors").read_bytes()[:300])
    torch.save({"weights": torch.zeros(2), "payload": Path("x")}, d / "pickle.pt")
    save_model(img, d / "img10.safetensors")
    save_model(timm_classifier("test_vit", num_classes=2), d / "img2.safetensors")
    save_model(build_classifier("mlp", name="five", num_classes=5, width=8, depth=1), d / "five.safetensors")
    save_model(build_classifier("mlp", name="noarch", width=8, depth=1), d / "noarch.safetensors")
    meta = json.loads((d / "noarch.json").read_text())
    (d / "noarch.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "architecture"}))
    save_model(build_classifier("mlp", name="liar", width=8, depth=1), d / "liar.safetensors")
    (d / "liar.json").write_text(json.dumps({**meta, "name": "liar", "num_classes": 7}))
    mlp_meta = json.loads(Path(tiny_zoo["mlp"]).with_suffix(".json").read_text())
    for name, change in (("arch5", {"architecture": 5}), ("classes_text", {"num_classes": "10"}), ("int8", {})):
        (d / f"{name}.json").write_text(json.dumps({**mlp_meta, **change}))
        weights = load_file(tiny_zoo["mlp"])
        if name == "int8":
            weights = {k: (v * 10).to(torch.int8) if v.is_floating_point() else v for k, v in weights.items()}
        save_file(weights, str(d / f"{name}.safetensors"))
    save_model(timm_classifier("test_vit", num_classes=2), d / "img2b.safetensors")
    labelled = save_model(build_classifier("mlp", name="labelled", width=8, depth=1), d / "labels_wrong.safetensors")
    labelled.with_suffix(".json").write_text(
        json.dumps({**json.loads(labelled.with_suffix(".json").read_text()), "class_names": ["a", "b", "c"]})
    )
    shutil.copyfile(tiny_zoo["mlp"], d / "student_copy.safetensors")
    shutil.copyfile(Path(tiny_zoo["mlp"]).with_suffix(".json"), d / "student_copy.json")
    _image_folder(d / "removed")
    _image_folder(d / "with_unlabelled")
    (d / "with_unlabelled" / "unlabelled").mkdir()
    _png(d / "with_unlabelled" / "unlabelled" / "0.png", 7)
    save_model(build_classifier("mlp", name="random10", num_classes=10), d / "random10.safetensors")
    for name, change in (("mean_text", {"preprocessing": {"mean": "grey", "std": [1.0]}}), ("absurd", None)):
        built = build_classifier("cnn1d", name=name, num_classes=10)
        path = save_model(built, d / f"{name}.safetensors")
        meta = json.loads(path.with_suffix(".json").read_text())
        meta.update(change or {"arch_kwargs": {**meta["arch_kwargs"], "channels": 10**6}})
        path.with_suffix(".json").write_text(json.dumps(meta))
    _image_folder(d / "empty_class", empty="b")
    _image_folder(d / "val_missing", val_classes=("a",))
    _image_folder(d / "corrupt", corrupt=True)
    _image_folder(d / "bomb")
    from PIL import Image

    Image.new("1", (13_500, 13_500)).save(d / "bomb" / "val" / "a" / "huge.png")  # 182 M pixels, a few kB
    options = {"epochs": 1, "batch_size": 128, "optimizer": "adamw", "lr": 1e-3, "progress": False}
    transfer(tiny_zoo["mlp"], tiny_zoo["gru_chunk4"], TINY_DATA, "kl+dp", d / "finished", **options)
    (d / "foreign").mkdir()
    (d / "foreign" / "config.json").write_text(json.dumps({"student": "something else"}))
    (d / "truncated_config").mkdir()
    (d / "truncated_config" / "config.json").write_text('{"format": "anyteach-transfer/1", "stud')
    transfer(
        tiny_zoo["mlp"],
        tiny_zoo["gru_chunk4"],
        TINY_DATA,
        "kl+dp",
        d / "corrupt_checkpoint",
        **{**options, "epochs": 2},
        stop_after_epoch=1,
    )
    (d / "corrupt_checkpoint" / "checkpoint.pt").write_bytes(b"\x00" * 64)
    for name in ("final_list", "cut_metrics"):
        shutil.copytree(d / "finished", d / name)
    (d / "final_list" / "final.json").write_text("[]")
    (d / "cut_metrics" / "metrics.jsonl").write_text((d / "finished" / "metrics.jsonl").read_text()[:50])
    transfer(
        d / "img2.safetensors",
        d / "img2b.safetensors",
        f"imagefolder:{d / 'removed'}",
        "kl",
        d / "removed_run",
        **{**options, "batch_size": 2, "workers": 0},
    )
    (d / "removed" / "train" / "a" / "1.png").unlink()  # the image a run refused as damaged, say
    base = {
        "models": list(tiny_zoo.values()),
        "data": TINY_DATA,
        "methods": ["kl"],
        "pairs": 2,
        "recipe": {"epochs": 1, "batch_size": 128},
    }
    for name, change in (
        ("unknown_key", {"colour": "red"}),
        ("wrong_type", {"pairs": {"random": "abc"}}),
        ("twice", {"methods": ["kl", "kl"]}),
        ("too_many", {"pairs": 1000}),
        ("bad_plugin", {"imports": ["./no_such_plugin.py"]}),
        ("exiting_plugin", {"imports": ["./exiting_plugin.py"]}),
        ("raising_plugin", {"imports": ["./raising_plugin.py"]}),
        ("huge_seed", {"seeds": [99999999999999999999999]}),
        ("zero_epochs", {"recipe": {"epochs": 0}}),
        ("full_disk", {}),
        ("worst_teacher", {"methods": [{"name": "kl", "teacher": "worst"}]}),
        ("teacherless_best", {"methods": [{"name": "xe", "teacher": "best"}]}),
        ("best_without_calib", {"methods": [{"name": "kl", "teacher": "best"}]}),
    ):
        (d / f"{name}.yaml").write_text(yaml.safe_dump({**base, **change}))
    (d / "exiting_plugin.py").write_text("import sys\nsys.exit(0)\n")
    (d / "raising_plugin.py").write_text("1 / 0\n")
    (d / "duplicate_key.yaml").write_text(yaml.safe_dump(base) + "methods: [xe]\n")
    (d / "latin1.yaml").write_bytes("name: caf\u00e9\n".encode("latin-1") + yaml.safe_dump(base).encode())
    (d / "bad_run.yaml").write_text("student: x\nepochs: 3\n")
    (d / "zero_store").mkdir()
    (d / "zero_store" / "study.sqlite").write_bytes(b"")
    StudyStore(d / "empty_study").close()
    from anyteach.study.driver import run_study

    run_study(
        {**base, "pairs": 1, "recipe": {"epochs": 1, "batch_size": 128, "lr": 1e6, "optimizer": "sgd"}},
        d / "failed_study",
        progress=False,
    )
    _stores(d, base)
    _file_system_shapes(d, tiny_zoo)
    return d


def _stores(d: Path, base: dict) -> None:
    """A finished study's store as an older anyteach wrote it, damaged, and of another schema."""
    import sqlite3

    from anyteach.study.driver import run_study

    run_study({**base, "pairs": 1, "methods": ["kl", "xe"]}, d / "ok_study", progress=False)
    for name in ("old_store", "old_store_resume", "damaged_store", "schema0_store"):
        shutil.copytree(d / "ok_study", d / name)
    for name in ("old_store", "old_store_resume"):  # no plan table, no ensemble or flip-count columns, no kinds
        conn = sqlite3.connect(d / name / "study.sqlite")
        conn.execute("DROP TABLE plan")
        for column in ("ensemble_acc", "ensemble_maxconf_acc", "ensemble_delta", "transfer_efficiency"):
            conn.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        conn.execute("ALTER TABLE failures DROP COLUMN kind")
        conn.commit()
        conn.close()
    (d / "damaged_store" / "study.sqlite").write_bytes(bytes(range(256)) * 16)
    conn = sqlite3.connect(d / "schema0_store" / "study.sqlite")
    conn.execute("UPDATE meta SET value='0' WHERE key='schema'")
    conn.commit()
    conn.close()


def _file_system_shapes(d: Path, tiny_zoo) -> None:
    """Image folders that loop or whose splits are one another, damaged files and caches, odd encodings."""
    from anyteach import load_dataset
    from anyteach.core.io import cache_dir, text_digest

    _image_folder(d / "loop")
    (d / "loop" / "train" / "a" / "loop").symlink_to("..")  # train/a/loop -> train: b's images again, under a
    _image_folder(d / "calib_link")
    (d / "calib_link" / "calib").symlink_to("val")
    _image_folder(d / "calib_copy")
    shutil.copytree(d / "calib_copy" / "val", d / "calib_copy" / "calib", copy_function=shutil.copy)  # new times
    _image_folder(d / "train_link")
    shutil.rmtree(d / "train_link" / "train")
    (d / "train_link" / "train").symlink_to("val")
    (d / "latin1_run.yaml").write_bytes("student: caf\u00e9\n".encode("latin-1"))
    damaged = load_dataset("mnist1d:size=300,eval=100,seed=5")
    cached = cache_dir() / "data" / f"mnist1d-{text_digest(damaged.identity)}.npz"
    cached.write_bytes(cached.read_bytes()[:1000])
    for name, cut in (("empty_student", 0), ("cut_student", 200)):
        shutil.copytree(d / "finished", d / name)
        student = d / name / "student.safetensors"
        student.write_bytes(student.read_bytes()[:cut])


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    from anyteach.cli import main

    old = sys.argv
    sys.argv = ["anyteach", *args]
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    return code, captured.out, captured.err


MILLION = ",".join(map(str, range(1_000_000)))
"""A million seeds, comma-separated (shown as `0,1,…,999999`)."""


def _fill(args: tuple[str, ...], world: Path, tiny_zoo) -> list[str]:
    values = {
        "dir": str(world),
        "mlp": tiny_zoo["mlp"],
        "gru": tiny_zoo["gru_chunk4"],
        "data": TINY_DATA,
        "million": MILLION,
    }
    return [a.format(**values) for a in args]


def _normal(text: str, world: Path) -> str:
    text = text.replace(str(world), "$DIR").replace(os.environ["ANYTEACH_CACHE"], "$CACHE")
    # an image folder's identity digests its files' sizes and times: name each distinct one by its order
    # of appearance, so that the catalogue does not change each time it is regenerated
    seen: dict[str, str] = {}
    text = re.sub(
        r"(imagefolder:\S+?:\d+:)([0-9a-f]{20})",
        lambda m: m.group(1) + seen.setdefault(m.group(2), f"<files digest {len(seen) + 1}>"),
        text,
    )
    return re.sub(r"\s+", " ", text).strip()


RESULTS: dict[str, tuple[str, int]] = {}


def run_limited(args: list[str], limit: int) -> tuple[int, str, str]:
    """The CLI in a subprocess whose files may not grow beyond `limit` bytes (a write past it fails)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [sys.executable, "-m", "anyteach", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
        preexec_fn=apply,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("case", CASES, ids=[f"{c.group}: {c.what}" for c in CASES])
def test_bad_input_is_one_clear_line(case, world, tiny_zoo, capsys, monkeypatch):
    before = _files(world)
    args = _fill(case.args, world, tiny_zoo)
    if case.env:  # the environment a user would have, in the case's directory (nothing lands in the repository)
        monkeypatch.chdir(world)
        for key, value in case.env:
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, _fill((value,), world, tiny_zoo)[0])
    code, out, err = run_limited(args, case.file_limit) if case.file_limit else run_cli(args, capsys)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == case.code, err
    assert "Traceback" not in err + out
    fragment = _fill((case.fragment,), world, tiny_zoo)[0]
    if case.code == 0:  # documented behaviour that is not an error: the line of its output that shows it
        lines = [line.strip(" │") for line in (err + "\n" + out).splitlines() if fragment in line]
        assert lines and not any(line.startswith("error:") for line in err.splitlines())
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0]
    new = _files(world) - before
    folders = tuple(leave for leave in case.leaves if leave.endswith("/"))  # a folder's files, whatever they are
    left = {p for p in new if p not in case.leaves and not p.startswith(folders)}
    assert not left, f"left behind: {sorted(left)}"
    assert not [p for p in _files(world) if p.endswith(".tmp")]
    RESULTS[f"{case.group}: {case.what}"] = (_normal(lines[0].removeprefix("error: "), world), code)


def _command(case: Case) -> str:
    command = " ".join(["anyteach", *case.args]).replace(" ".join(FAST), "…")
    for name, shown in (
        ("dir", "$DIR"),
        ("mlp", "$MLP"),
        ("gru", "$GRU"),
        ("data", "$DATA"),
        ("million", "0,1,…,999999"),
    ):
        command = command.replace("{" + name + "}", shown)
    return command


def catalogue() -> str:
    lines = [
        "# What anyteach says when the input is wrong",
        "",
        "Generated by `tests/test_errors.py`, which runs every case through the CLI: each ends in one line "
        "naming the problem, no traceback (`anyteach --debug ...` shows it), and nothing half-written. Exit "
        "status 2: the input is wrong; 1: the input was valid but the run failed (it diverged, its checkpoint "
        "is corrupt, the disk is full) or there is nothing to summarise. `$DIR` is the directory of the "
        "case's files, `$MLP` and `$GRU` two small trained models, `$DATA` is `" + TINY_DATA + "`, `…` the "
        "options `" + " ".join(FAST) + "`. Regenerate with "
        "`ANYTEACH_WRITE_ERRORS_DOC=1 pytest tests/test_errors.py`.",
        "",
    ]
    for group in dict.fromkeys(c.group for c in CASES):
        lines += [f"## {group}", "", "| input | command | message | exit |", "|---|---|---|---:|"]
        for case in (c for c in CASES if c.group == group):
            message, code = RESULTS[f"{case.group}: {case.what}"]
            command = _command(case).replace("|", "\\|")
            lines.append(f"| {case.what} | `{command}` | {message.replace('|', chr(92) + '|')} | {code} |")
        lines.append("")
    return "\n".join(lines)


def test_the_catalogue_is_docs_errors_md():
    if len(RESULTS) < len(CASES):
        pytest.skip("the catalogue needs every case of this module to have run")
    text = catalogue()
    if os.environ.get("ANYTEACH_WRITE_ERRORS_DOC"):
        DOC.write_text(text)
    documented = DOC.read_text()
    # every case, its command and exit status as documented; messages may differ only in library wording
    for case in CASES:
        row = next((line for line in documented.splitlines() if line.startswith(f"| {case.what} |")), None)
        assert row is not None, f"docs/errors.md lacks the case {case.what!r}"
        assert f"`{_command(case)}`".replace("|", "\\|") in row and row.endswith(f"| {case.code} |")
        assert case.fragment.replace("{dir}", "$DIR").replace("|", "\\|") in row
    assert documented.count("\n| ") - documented.count("\n| input |") == len(CASES)
