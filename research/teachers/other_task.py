"""Issue 17, session 5: the shipped forecaster on another task (timm models on glyphs images), untouched.

Usage (from the repository root, after `anyteach demo --zoo glyphs` on seeds 0 and 1):

    python research/teachers/other_task.py STUDY_DIR ... > research/teachers/other-task.csv

Each study is a finished glyphs study (studies/glyphs-all-teachers-seed{0,1}.yaml: every ordered pair; or
a glyphs demo: two teachers per student); the signals are measured on its data's calib split. Prints, per
study and ranking (the shipped forecast, the available gain, complementary knowledge, teacher accuracy):
Spearman ρ over runs against the realised Δ beyond the control, per-student regret and top-1 hits
(`teacher_analysis.ranking_quality`), and the mean forecast against the mean realised Δ (every glyphs
student is larger than any the forecaster was fitted on: an extrapolation). With two or more studies,
also the forecast re-fitted (same signals) on the first study, on the others: what `--fit` on a user's
own finished study buys on a new zoo of the same kind. `--retest STUDY AGAIN[,AGAIN...] [STUDY AGAIN ...]`
(last): the noise ceiling, each STUDY's teaching runs repeated with other run seeds in the AGAIN studies
(`validate.retest`), written to other-task-retest.json beside this script.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import yaml
from validate import retest  # this directory's validate.py (the script's own directory is on sys.path)

from anyteach.analysis.forecast import shipped_forecaster
from anyteach.core.io import write_json
from anyteach.report.teacher_choice import beyond_control, ranking_quality, refit, study_runs, with_signals


def main(studies: list[str]) -> int:
    pairs: list[tuple[str, str]] = []
    if "--retest" in studies:
        i = studies.index("--retest")
        studies, rest = studies[:i], studies[i + 1 :]
        pairs = list(zip(rest[::2], rest[1::2]))
    shipped, rows, first = shipped_forecaster(), [], None
    for study in studies:
        spec = yaml.safe_load(open(f"{study}/study.yaml"))
        paired = with_signals(beyond_control(study_runs(study)), spec["data"])
        if first is None:
            first = refit(
                paired, spec["name"], methods=[m for m in shipped.methods if m in set(paired["label"])], base=shipped
            )
        for method, part in paired.groupby("label"):
            if method not in shipped.methods:
                continue
            forecast = shipped.get(method)
            part = part.assign(forecast=forecast.predict(part), refitted=first.get(method).predict(part))
            for name, column in (
                ("forecast", "forecast"),
                ("re-fitted on the first study", "refitted"),
                ("available gain", "available_gain"),
                ("complementary knowledge", "complementary_knowledge"),
                ("teacher accuracy", "teacher_acc"),
            ):
                quality = ranking_quality(part, column)
                rows.append(
                    {
                        "study": spec["name"],
                        "data": spec["data"],
                        "method": method,
                        "ranking": name,
                        "extrapolated": int(forecast.outside(part).sum()),
                        **quality,
                        "mean_forecast": float(
                            part[column if column in ("forecast", "refitted") else "forecast"].mean()
                        ),
                        "mean_realised": float(part["delta_beyond"].mean()),
                    }
                )
    print(pd.DataFrame(rows).round(3).to_csv(index=False), end="")
    ceilings = {}
    for original, again in pairs:
        spec = yaml.safe_load(open(f"{original}/study.yaml"))
        runs = with_signals(beyond_control(study_runs(original)), spec["data"])
        ceilings[spec["name"]] = retest([Path(a) for a in again.split(",")], runs, shipped.get("pl+ens+wise"))
    if ceilings:
        write_json(Path(__file__).parent / "other-task-retest.json", ceilings)
        print(json.dumps(ceilings, indent=1), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
