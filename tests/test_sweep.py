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


def assert_one_line_or_success(code: int, output: str, sandbox: Path, before: set[str]) -> None:
    """A command that may succeed on some generated inputs: success (exit 0), or one line and nothing left."""
    assert "Traceback" not in output, output
    if code == 0:
        return
    assert_one_line_and_nothing_left(code, output, sandbox, before)


DATA_KEYS = ["size", "eval", "seed", "fraction", "subset_seed", "calib", "fresh", "colour", "", " size"]
DATA_VALUES = st.one_of(
    st.integers(-5, 3000).map(str), st.sampled_from(["", "1e9", "0.5", "-0.1", "nan", "abc", "2,eval=3", "=", "1 0"])
)


@SETTINGS
@given(
    items=st.lists(st.tuples(st.sampled_from(DATA_KEYS), DATA_VALUES), max_size=4),
    kind=st.sampled_from(["mnist1d", "glyphs"]),
)
def test_a_data_reference_with_any_keys_is_one_line(sandbox, tiny_zoo, items, kind):
    """Data references with any keys and values, repeated keys included: refused in one line, or read (the
    transfer then stops at its batch larger than the data, so nothing trains)."""
    ref = f"{kind}:" + ",".join(f"{k}={v}" for k, v in items)
    before = _files(sandbox)
    code, output = run_cli(
        ["transfer", "--student", tiny_zoo["mlp"], "--method", "xe", "--data", ref, "--out", str(sandbox / "run")]
        + ["--quiet", "--batch-size", "100000"]
    )
    assert_one_line_and_nothing_left(code, output, sandbox, before)
    keys = [k.strip() for k, _ in items]
    if len(set(keys)) < len(keys) and all(k in DATA_KEYS[:7] for k in keys):
        assert "given twice" in output or "is not" in output or "must" in output or "exclude" in output, output


STORE_DAMAGE = st.one_of(
    st.tuples(st.just("bytes"), st.integers(0, 200_000), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("truncate"), st.integers(0, 200_000)),
    st.tuples(st.just("drop table"), st.sampled_from(["plan", "runs", "history", "failures", "models", "meta"])),
    st.tuples(
        st.just("drop column"),
        st.sampled_from(
            ["runs.ensemble_delta", "runs.gain_count", "runs.bucket", "runs.final_json", "runs.finished_at"]
            + ["history.metrics_json", "failures.kind", "failures.label", "models.identity"]
        ),
    ),
    st.tuples(st.just("meta"), st.sampled_from(["schema", "spec", "data_identities"]), st.text(max_size=12)),
    st.tuples(st.just("final_json"), st.text(max_size=12)),
)


@pytest.fixture(scope="module")
def finished_study(tiny_zoo, tmp_path_factory):
    from anyteach.study.driver import run_study

    directory = tmp_path_factory.mktemp("sweep-study") / "study"
    spec = {"models": [tiny_zoo["mlp"], tiny_zoo["gru_chunk4"]], "data": TINY_DATA, "methods": ["kl", "xe"]}
    run_study({**spec, "recipe": {"epochs": 1, "batch_size": 128}}, directory, progress=False)
    return directory


def _damage(store: Path, how: tuple) -> None:
    import sqlite3

    kind = how[0]
    if kind in ("bytes", "truncate"):
        data = bytearray(store.read_bytes())
        at = how[1] % max(len(data), 1)
        data = data[:at] + how[2] + data[at + len(how[2]) :] if kind == "bytes" else data[:at]
        store.write_bytes(bytes(data))
        return
    conn = sqlite3.connect(store)
    try:
        if kind == "drop table":
            conn.execute(f"DROP TABLE {how[1]}")
        elif kind == "drop column":
            table, column = how[1].split(".")
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        elif kind == "meta":
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (how[1], how[2]))
        else:
            conn.execute("UPDATE runs SET final_json=?", (how[1],))
        conn.commit()
    except sqlite3.DatabaseError:  # a column a key needs, or a file already past reading: this damage is not made
        pass
    finally:
        conn.close()


@SETTINGS
@given(damages=st.lists(STORE_DAMAGE, min_size=1, max_size=3), command=st.sampled_from(["summary", "report"]))
def test_a_damaged_or_old_study_store_is_read_or_one_line(sandbox, finished_study, damages, command):
    import shutil

    study = sandbox / "damaged-study"
    shutil.rmtree(study, ignore_errors=True)
    shutil.copytree(finished_study, study)
    for how in damages:
        _damage(study / "study.sqlite", how)
    before = _files(sandbox)
    args = [command, str(study)] + (["--out", str(sandbox / "report")] if command == "report" else [])
    code, output = run_cli(args)
    assert "Traceback" not in output, output
    if code == 0:
        shutil.rmtree(sandbox / "report", ignore_errors=True)
    else:
        assert_one_line_and_nothing_left(code, output, sandbox, before)
    assert not [p for p in study.iterdir() if p.name.endswith(("-wal", "-shm"))], "the store was left open"
    shutil.rmtree(study)


FOLDER_SHAPES = st.fixed_dictionaries(
    {
        "train": st.sampled_from(["images", "link to val", "copy of val", "loop", "link to a sibling class"]),
        "val": st.sampled_from(["images", "loop", "empty class"]),
        "calib": st.sampled_from(["absent", "images", "link to val", "copy of val", "link to train", "loop"]),
        "unlabelled": st.sampled_from(["absent", "images", "copy of val", "loop"]),
    }
)


def _png(path: Path, seed: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), ((37 * seed) % 256, (91 * seed) % 256, (13 * seed) % 256)).save(path)


def _folder(root: Path, split: str, shape: str, seed: int) -> None:
    import shutil

    here = root / split
    if shape == "absent":
        return
    if shape.startswith("link to "):
        target = shape.removeprefix("link to ")
        if target == "a sibling class":
            _folder(root, split, "images", seed)
            (here / "a" / "b_link").symlink_to("../b")  # class b's images, read again as class a
        else:
            here.symlink_to(target if target != "val" else "val")
        return
    if shape == "copy of val":
        shutil.copytree(root / "val", here, copy_function=shutil.copy, symlinks=True)
        return
    for k, name in enumerate(("a", "b")):
        (here / name).mkdir(parents=True, exist_ok=True)
        if shape == "empty class" and name == "b":
            continue
        for i in range(2):
            _png(here / name / f"{i}.png", seed * 100 + k * 10 + i)
    if shape == "loop":
        (here / "a" / "loop").symlink_to("..")


@SETTINGS
@given(shape=FOLDER_SHAPES)
def test_an_image_folder_of_any_shape_is_read_or_one_line(sandbox, shape):
    import shutil

    from anyteach import save_model, timm_classifier

    model = sandbox / "img2.safetensors"
    if not model.exists():
        save_model(timm_classifier("test_vit", num_classes=2), model)
    root = sandbox / "folder"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for seed, split in enumerate(("val", "train", "calib", "unlabelled")):
        _folder(root, split, shape[split], seed + 1)
    before = _files(sandbox)
    code, output = run_cli(["info", str(model), "--data", f"imagefolder:{root}"])
    assert_one_line_or_success(code, output, sandbox, before)
    leaky = any(s.startswith(("link to", "copy of")) or s == "loop" for s in shape.values())
    if leaky:  # a loop, or a split that is another split: never read as if it were data
        assert code == 2, output
    shutil.rmtree(root)
