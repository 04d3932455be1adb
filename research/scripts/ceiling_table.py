"""Per student: S0, its architecture's ceiling (research/scripts/ceiling.py), the student-teacher ensembles
of its demo pairs, and what a method took of the ensemble's gain and of the reachable gain (issue 16, item 3).

usage: PYTHONPATH=src python research/scripts/ceiling_table.py STUDY_DIR METHOD CEILING.json [CEILING.json ...]
"""

import json
import sys

import numpy as np

from anyteach.report.aggregate import UNLABELLED_CONTROLS, reachable_gain, summarize

study, method, files = sys.argv[1], sys.argv[2], sys.argv[3:]
ceilings = {}
for f in files:
    ceilings.update({ref: v["ceiling"] for ref, v in json.load(open(f))["models"].items()})
runs = summarize(study).runs
controls = (
    runs[runs["method"].isin(UNLABELLED_CONTROLS)].groupby(["student", "method"])["transfer_delta"].mean().unstack()
)
part = runs[runs["label"] == method]
print(
    "| student | S0 | ceiling | ceiling − S0 | mean ensemble − S0 | mean reachable | Δ "
    + method
    + " | stronger control Δ | taken of ensemble gain | of reachable | beyond control, of reachable |"
)
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
totals = np.zeros(4)
for student, g in part.groupby("student", sort=False):
    s0 = g["student_acc_before"].iloc[0]
    ceiling = ceilings.get(student, np.nan)
    ens = g["ensemble_acc"] - s0
    reach = reachable_gain(g.assign(ceiling_acc=ceiling))  # the one definition: nothing reachable counts as 0
    control = controls.loc[student].max()
    delta = g["transfer_delta"].mean()
    print(
        f"| {g['student_name'].iloc[0]} | {s0:.2f} | {ceiling:.2f} | {ceiling - s0:+.2f} | {ens.mean():+.2f} | "
        f"{reach.mean():+.2f} | {delta:+.2f} | {control:+.2f} | {100 * delta / ens.mean():.0f}% | "
        f"{100 * delta / reach.mean() if reach.mean() > 0 else float('nan'):.0f}% | "
        f"{100 * (delta - control) / reach.mean() if reach.mean() > 0 else float('nan'):.0f}% |"
    )
