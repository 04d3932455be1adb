"""Candidates written as runs.csv by a research script (e.g. multi_teacher.py), pooled against the stronger
no-teacher control, with the reachable gain where capacity ceilings are known (issue 16).

usage: PYTHONPATH=src python docs/research/scripts/pooled_csv.py RUNS.csv [--controls STUDY_DIR] [--ceilings FILE.json]
The controls are the `self` / `self+xe+wise` rows of RUNS.csv, or of the study (same data and budget).
"""
import json
import sys

import pandas as pd

from anyteach.aggregate import UNLABELLED_CONTROLS, against_control, aggregate, summarize
from anyteach.ceilings import with_ceilings

args = sys.argv[1:]


def option(name):
    if name not in args:
        return None
    i = args.index(name)
    value = args[i + 1]
    del args[i:i + 2]
    return value


controls_dir, ceilings_file = option("--controls"), option("--ceilings")
runs = pd.read_csv(args[0])
if controls_dir:
    extra = summarize(controls_dir).runs
    extra = extra[extra["label"].isin(UNLABELLED_CONTROLS) & extra["data"].isin(set(runs["data"]))]
    runs = pd.concat([extra, runs], ignore_index=True)
if ceilings_file:
    raw = json.load(open(ceilings_file))
    runs = with_ceilings(runs, {ref: v["ceiling"] for ref, v in raw["models"].items()})
by = aggregate(runs).set_index("label")
vs = against_control(runs, UNLABELLED_CONTROLS).set_index("label")
print("| candidate | runs | mean Δ (pp) | mean ensemble Δ | mean reachable Δ | Δ beyond the stronger control (better/worse, p) "
      "| beyond control: pooled / per-student median, of the ensemble | beyond control, of the reachable gain | "
      "median success | sig. harm |")
print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
for label, r in by.iterrows():
    c = vs.loc[label] if label in vs.index else None
    fmt = lambda v, suffix="%": "–" if v is None or pd.isna(v) else f"{v:.1f}{suffix}"  # noqa: E731
    beyond = (f"{c['mean_delta_vs_control']:+.2f} ({c['students_better']}/{c['students_worse']}, "
              f"p={c['p_better_than_control']:.3g})") if c is not None else "–"
    share = (f"{fmt(c['pooled_efficiency_vs_control'])} / {fmt(c['student_median_efficiency_vs_control'])}"
             if c is not None else "–")
    reach = fmt(c["pooled_reachable_efficiency_vs_control"]) if c is not None else "–"
    print(f"| {label} | {int(r['runs'])} | {r['mean_delta']:+.2f} | {r['mean_ensemble_delta']:+.2f} | "
          f"{r['mean_reachable_delta']:+.2f} | {beyond} | {share} | {reach} | {r['median_success_rate']:.0f}% | "
          f"{r['significant_harm_rate']:.0f}% |")
