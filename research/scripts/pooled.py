"""Candidates of one or more studies against the stronger no-teacher control, pooled over the studies' runs
(same zoo, same data and budget: each run is paired with the stronger of `self` and `self+xe+wise` of its own
student, data and budget, as the summary does; issue 16).

usage: PYTHONPATH=src python research/scripts/pooled.py STUDY_DIR|RUNS.csv [...] [--ceilings FILE.json]
       [--control METHOD[,METHOD]] (default: self,self+xe+wise)
A RUNS.csv is a runs table written by a research script (multi_teacher.py), with the study's run columns;
its runs are paired with the controls of the other inputs (same student, data and budget).
Prints per method: runs, mean Δ, median success, significant harm, pooled / per-student-median efficiency,
and beyond the stronger control: mean Δ, students better / worse, sign-test p, pooled and per-student median
efficiency, and the pooled efficiency against the reachable gain (with --ceilings: {ref: {"ceiling": acc}}).
"""

import json
import sys

import pandas as pd

from anyteach.analysis.ceilings import with_ceilings
from anyteach.report.aggregate import UNLABELLED_CONTROLS, against_control, aggregate, summarize

args = sys.argv[1:]
ceilings = {}
if "--ceilings" in args:
    i = args.index("--ceilings")
    raw = json.load(open(args[i + 1]))
    ceilings = {ref: v["ceiling"] for ref, v in raw["models"].items()}
    args = args[:i] + args[i + 2 :]
controls = UNLABELLED_CONTROLS
if "--control" in args:
    i = args.index("--control")
    controls = tuple(args[i + 1].split(","))
    args = args[:i] + args[i + 2 :]
runs = pd.concat([pd.read_csv(d) if d.endswith(".csv") else summarize(d).runs for d in args], ignore_index=True)
runs = with_ceilings(runs, ceilings)
by = aggregate(runs).set_index("label")
vs = against_control(runs, controls if len(controls) > 1 else controls[0]).set_index("label")
print(
    "| method | runs | mean Δ (pp) | median success | sig. harm | efficiency pooled / per-student median | "
    "Δ beyond stronger control (better/worse, p) | beyond control: pooled / per-student median | "
    "beyond control, of reachable gain |"
)
print("|---|---:|---:|---:|---:|---:|---|---:|---:|")
for label, r in by.iterrows():
    c = vs.loc[label] if label in vs.index else None
    eff = (
        f"{r['pooled_efficiency']:.1f}% / {r['student_median_efficiency']:.1f}%"
        if pd.notna(r["pooled_efficiency"])
        else "–"
    )
    beyond = (
        (
            f"{c['mean_delta_vs_control']:+.2f} ({c['students_better']}/{c['students_worse']}, "
            f"p={c['p_better_than_control']:.3g})"
        )
        if c is not None
        else "–"
    )
    share = (
        f"{c['pooled_efficiency_vs_control']:.1f}% / {c['student_median_efficiency_vs_control']:.1f}%"
        if c is not None and pd.notna(c["pooled_efficiency_vs_control"])
        else "–"
    )
    reach = (
        f"{c['pooled_reachable_efficiency_vs_control']:.1f}%"
        if c is not None and pd.notna(c["pooled_reachable_efficiency_vs_control"])
        else "–"
    )
    print(
        f"| {label} | {int(r['runs'])} | {r['mean_delta']:+.2f} | {r['median_success_rate']:.0f}% | "
        f"{r['significant_harm_rate']:.0f}% | {eff} | {beyond} | {share} | {reach} |"
    )
