"""Facts that docs/architecture.md says live in one place are not written again elsewhere in `src/`:
the significance level (`analysis.metrics`), the control names (`methods.presets`) and the option facts
(`options`). (The seed offsets have their own test, `test_seeds.py`.)"""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "anyteach"


def _hits(pattern: str, allowed: set[str]) -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        name = path.relative_to(SRC).as_posix()
        if name in allowed:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{name}:{number}: {line.strip()}")
    return found


def test_the_significance_level_is_written_once():
    # a p-value compared with a literal, or a literal level in a message
    assert _hits(r"p(_\w+)?\"?\]?\s*<=?\s*0?\.0\d|p < 0\.\d", {"analysis/metrics.py"}) == []


def test_the_control_names_are_written_once():
    # "xe" / "self" as a control (compared with, or passed as one); presets and the demo study name the methods
    assert _hits(r"(?i)(==|!=|in \(|control\w*\s*=)\s*\(?\"(xe|self)\"", {"methods/presets.py"}) == []


def test_option_facts_are_fields_of_the_declaration():
    # the lists that used to be written by hand are derived from `Option` fields
    assert _hits(r"\(\"epochs\", \"batch_size\", \"augment\"\)|\"eval_batch_size\", \"keep_checkpoints\"", set()) == []
    from anyteach.core.options import BUDGET_OPTIONS, NOT_COMPARED, PER_RUN_OPTIONS, TRAINING_OPTIONS

    assert (
        BUDGET_OPTIONS
        == tuple(n for n, o in TRAINING_OPTIONS.items() if o.budget)
        == ("epochs", "batch_size", "augment")
    )
    assert PER_RUN_OPTIONS == ("seed",) and "device" in NOT_COMPARED and "lr" not in NOT_COMPARED
