"""Pair a method of one study with a control of another study (same students, same zoo), by student:
mean Δ beyond the control, students better / worse, one-sided sign test.

usage: PYTHONPATH=src python research/scripts/cross.py METHOD_STUDY LABEL CONTROL_STUDY CONTROL_LABEL
"""

import sys

from anyteach.analysis.metrics import mcnemar_p_values
from anyteach.report.aggregate import summarize

study, label, cstudy, clabel = sys.argv[1:5]
runs = summarize(study).runs
runs = runs[runs["label"] == label]
control = summarize(cstudy).runs
control = control[control["label"] == clabel].groupby("student")["transfer_delta"].mean()
diff = runs.assign(diff=runs["transfer_delta"] - runs["student"].map(control)).dropna(subset=["diff"])
by_student = diff.groupby("student_name")["diff"].mean()
better, worse = int((by_student > 0).sum()), int((by_student < 0).sum())
p, _ = mcnemar_p_values(better, worse)
print(
    f"{label} ({study}) vs {clabel} ({cstudy}): mean Δ beyond control {diff['diff'].mean():+.3f} pp over "
    f"{len(diff)} runs; students better/worse {better}/{worse}, p = {p:.3g}"
)
print(by_student.round(2).to_string())
