"""One meaning per flag across the CLI, and the previous release's spellings still work, with a message."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from anyteach.cli import app
from anyteach.cli.spellings import DEPRECATED, modernise

from .conftest import TINY_DATA


def test_old_spellings_become_the_new_ones_with_a_message():
    said = []
    assert modernise(["transfer", "--student", "s", "-o", "beta=5"], said.append) == [
        "transfer",
        "--student",
        "s",
        "--option",
        "beta=5",
    ]
    assert modernise(["flips", "t", "s", "--json", "out/pair.json"], said.append)[3] == "--json-out"
    assert modernise(["flips", "t", "s", "--json=pair.json"], said.append)[3] == "--json-out=pair.json"
    assert modernise(["--debug", "study", "--pair-seed", "1", "--seed", "3"], said.append)[4] == "--pair-seed"
    assert len(said) == 4 and all("deprecated" in s and "use --" in s for s in said)
    assert {s.verb for s in DEPRECATED} == {"transfer", "flips", "study"}


def test_new_spellings_are_left_alone():
    said = []
    for args in (
        ["transfer", "-o", "runs/a", "--option", "beta=5"],
        ["flips", "t", "s", "--json", "--data", "d"],
        ["flips", "t", "s", "--json"],
        ["transfer", "--seed", "3"],
        ["study", "--seeds", "0,1"],
    ):
        assert modernise(args, said.append) == args
    assert said == []


def test_short_flags_mean_one_thing_in_every_command():
    from typer.main import get_command

    meanings: dict[str, set[str]] = {}

    def walk(command, path=""):
        for param in command.params:
            for short in (o for o in param.opts + param.secondary_opts if len(o) == 2):
                meanings.setdefault(short, set()).add(param.opts[-1] if param.opts[-1] != short else param.opts[0])
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(get_command(app))
    assert meanings["-o"] == {"--out"}
    assert all(len(long) == 1 for long in meanings.values()), meanings


def test_json_prints_json_and_json_out_writes_it(tiny_zoo, tmp_path):
    runner = CliRunner()
    pair = [tiny_zoo["gru_chunk4"], tiny_zoo["mlp_narrow"], "--data", TINY_DATA]
    printed = runner.invoke(app, ["flips", *pair, "--json"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout)["teacher"] == "gru_chunk4"
    old = runner.invoke(app, ["flips", *pair, "--json", str(tmp_path / "pair.json")])  # the old spelling
    assert old.exit_code == 0 and "deprecated" in old.stderr and "--json-out" in old.stderr
    assert json.loads((tmp_path / "pair.json").read_text()) == json.loads(printed.stdout)
