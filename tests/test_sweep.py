"""A property-based sweep of bad input (hypothesis): study definitions with one key set to an arbitrary
value, arbitrary YAML text, and `transfer` options set to arbitrary values of their flag's type. For every
generated input (values of a flag's type or not) the CLI must end in one line (`error: ...`, exit 2 or 1) or
succeed, never print a traceback, and leave no file behind. A generated study never trains: it asks for more
pairs than its two models have (or, where the pairs are what is generated, names models that do not exist);
the transfer sweep asks for a batch larger than the data, so no
generated transfer trains either (every check on options comes first)."""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyteach.core.options import METHOD_OPTIONS, TRAINING_OPTIONS

from .conftest import TINY_DATA

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(
        ["", " ", "-1", "1e999", "nan", "0", "kl", "xe", "ray", "mnist1d", "imagefolder:", "mnist1d:seed=-1", "∞"]
    ),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=6), scalars, max_size=3))

SPEC_KEYS = [
    "name",
    "data",
    "pairs",
    "pairs.random",
    "pairs.seed",
    "pairs.balanced",
    "pairs.students",
    "pairs.teachers",
    "methods",
    "methods.0",
    "methods.0.name",
    "methods.0.label",
    "methods.0.options",
    "methods.0.data",
    "seeds",
    "recipe",
    "workers",
    "executor",
    "address",
    "resources",
    "resources.num_gpus",
    "colour",
    *(f"recipe.{name}" for name in TRAINING_OPTIONS),
    *(f"methods.0.options.{name}" for name in METHOD_OPTIONS),
]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def run_cli(args: list[str]) -> tuple[int, str]:
    from anyteach.cli import main

    err, out = io.StringIO(), io.StringIO()
    old = sys.argv
    sys.argv = ["anyteach", *args]
    code = 0
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    return code, err.getvalue() + out.getvalue()


def assert_one_line_and_nothing_left(code: int, output: str, sandbox: Path, before: set[str]) -> None:
    assert "Traceback" not in output, output
    assert code in (1, 2), output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert _files(sandbox) == before, f"left behind: {sorted(_files(sandbox) - before)}"
    assert not [p for p in Path(os.environ["ANYTEACH_CACHE"]).rglob("*.tmp")]


def _set(spec: dict, dotted: str, value) -> dict:
    parts = dotted.split(".")
    node = spec
    for part in parts[:-1]:
        key = int(part) if part.isdigit() else part
        child = node[key] if isinstance(node, list) else node.get(key)
        if not isinstance(child, (dict, list)):
            child = {}
            node[key] = child
        if isinstance(child, list) and isinstance(child[0], str):
            child[0] = {"name": child[0]}
        node = child if not isinstance(child, list) else child
    last = parts[-1]
    node[int(last) if last.isdigit() and isinstance(node, list) else last] = value
    return spec


@pytest.fixture(scope="module")
def sandbox():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@SETTINGS
@given(key=st.sampled_from(SPEC_KEYS), value=values)
def test_a_study_definition_with_any_value_is_one_line(sandbox, tiny_zoo, key, value):
    if key.startswith("pairs"):  # models that do not exist: whatever the pairs, nothing trains
        spec = {
            "models": [str(sandbox / "absent_a.safetensors"), str(sandbox / "absent_b.safetensors")],
            "data": TINY_DATA,
            "methods": ["kl"],
            "recipe": {"epochs": 1},
        }
    else:  # real models, loaded and checked against the data, then more pairs asked for than exist
        spec = {
            "models": [tiny_zoo["mlp"], tiny_zoo["gru_chunk4"]],
            "data": TINY_DATA,
            "methods": ["kl"],
            "recipe": {"epochs": 1},
            "pairs": {"random": 1000},
        }
    try:
        text = yaml.safe_dump(_set(spec, key, value), allow_unicode=True)
    except (yaml.YAMLError, TypeError, ValueError, IndexError, KeyError):
        return  # not representable as a study file
    (sandbox / "study.yaml").write_text(text)
    before = _files(sandbox)
    code, output = run_cli(["study", str(sandbox / "study.yaml"), "--out", str(sandbox / "out")])
    assert_one_line_and_nothing_left(code, output, sandbox, before)


@SETTINGS
@given(
    text=st.one_of(st.text(max_size=80), st.binary(max_size=80).map(lambda b: b.decode("latin-1"))),
    bom=st.sampled_from(["", "\ufeff"]),
    encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]),
)
def test_any_study_file_text_is_one_line(sandbox, text, bom, encoding):
    try:
        data = (bom + text).encode(encoding)
    except UnicodeEncodeError:
        return
    (sandbox / "raw.yaml").write_bytes(data)
    before = _files(sandbox)
    code, output = run_cli(["study", str(sandbox / "raw.yaml"), "--out", str(sandbox / "out")])
    assert_one_line_and_nothing_left(code, output, sandbox, before)


TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


def _flag_value(option) -> st.SearchStrategy[str]:
    """Values of this option's type, in or out of its range, and text that is not of its type."""
    if option.type is int:
        return st.one_of(st.integers(-(2**70), 2**70).map(str), TEXT)
    if option.type is float:
        return st.one_of(st.floats(allow_nan=True).map(lambda v: repr(v) if math.isfinite(v) else str(v)), TEXT)
    if option.type is bool:
        return st.one_of(st.just(""), TEXT)
    return TEXT


OPTIONS = {
    name: o
    for name, o in {**TRAINING_OPTIONS, **METHOD_OPTIONS}.items()
    if name not in ("batch_size", "device", "keep_checkpoints")
}


@SETTINGS
@given(data=st.data())
def test_transfer_options_with_any_value_are_one_line(sandbox, tiny_zoo, data):
    name = data.draw(st.sampled_from(sorted(OPTIONS)))
    option = OPTIONS[name]
    value = data.draw(_flag_value(option))
    flag = [option.flag] if option.type is bool and not value else [f"{option.flag}={value}"]
    before = _files(sandbox)
    code, output = run_cli(
        [
            "transfer",
            "--student",
            tiny_zoo["mlp"],
            "--teacher",
            tiny_zoo["gru_chunk4"],
            "--data",
            TINY_DATA,
            "--out",
            str(sandbox / "run"),
            "--quiet",
            "--batch-size",
            "100000",
            *flag,
        ]
    )
    assert_one_line_and_nothing_left(code, output, sandbox, before)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig"])
def test_a_study_file_with_a_byte_order_mark_reads_as_its_utf8_twin(tmp_path, encoding):
    from anyteach.study.spec import load_study_spec

    text = yaml.safe_dump(
        {
            "models": ["a.safetensors", "b.safetensors"],
            "data": TINY_DATA,
            "methods": ["kl"],
            "name": "café",
            "seeds": [0, 3],
        },
        allow_unicode=True,
    )
    (tmp_path / "plain.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "bom.yaml").write_text(text, encoding=encoding)
    assert (tmp_path / "bom.yaml").read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff", b"\xef\xbb")
    assert load_study_spec(tmp_path / "bom.yaml") == load_study_spec(tmp_path / "plain.yaml")
