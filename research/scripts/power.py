"""Mechanism 9: does a larger eval split change the verdict or its power? Re-measures every finished run
of a study (S0 and the exported student) on N fresh samples from an independent generator seed
(seed + 3000003: neither train, eval, calib nor fresh) and compares with the 5,000-sample eval split.

usage: PYTHONPATH=src python research/scripts/power.py STUDY_DIR N [zoo-seed]
"""

import sys

import torch

from anyteach.analysis.metrics import mcnemar_p_values
from anyteach.data.predictions import model_logits
from anyteach.data.references import Mnist1d
from anyteach.models.references import load_model
from anyteach.report.aggregate import against_control, summarize

torch.set_num_threads(1)
study, n = sys.argv[1], int(sys.argv[2])
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
big = Mnist1d(size=max(30000, n + 10), eval=n, seed=seed + 3000003)
runs = summarize(study).runs
cache = {}


def preds(ref):
    if ref not in cache:
        cache[ref] = model_logits(load_model(ref), big, "eval", device="cpu").argmax(1)
    return cache[ref]


labels = big.labels("eval")
rows = []
for _, r in runs.iterrows():
    before = preds(r["student"]) == labels
    after = preds(f"{r['run_dir']}/student.safetensors") == labels
    gain, loss = int((~before & after).sum()), int((before & ~after).sum())
    p_gain, p_loss = mcnemar_p_values(gain, loss)
    rows.append(
        {
            **r.to_dict(),
            "transfer_delta": 100.0 * (gain - loss) / n,
            "knowledge_gain": 100.0 * gain / n,
            "knowledge_loss": 100.0 * loss / n,
            "p_gain": p_gain,
            "p_loss": p_loss,
        }
    )
import pandas as pd

big_runs = pd.DataFrame(rows)
for name, table in (("eval 5k", runs), (f"fresh {n // 1000}k", big_runs)):
    print(f"== {name}")
    for label, g in table.groupby("label", sort=False):
        print(
            f"  {label:16s} mean Δ {g['transfer_delta'].mean():+.3f}  sig. gain {100 * (g['p_gain'] < 0.05).mean():.0f}%"
            f"  sig. harm {100 * (g['p_loss'] < 0.05).mean():.0f}%"
        )
    for control in ("self", "self+wise", "xe"):
        if control in set(table["method"]):
            vs = against_control(table, control=control)
            for _, v in vs.iterrows():
                print(
                    f"    vs {control:9s} {v['label']:16s} {v['mean_delta_vs_control']:+.3f} "
                    f"({v['students_better']}/{v['students_worse']}, p={v['p_better_than_control']:.3g})"
                )
both = runs[["label", "student_name", "teacher_name", "transfer_delta"]].assign(big=big_runs["transfer_delta"].values)
print("correlation of per-run Δ (5k eval vs big):", round(both["transfer_delta"].corr(both["big"]), 3))
print("mean |Δ_5k − Δ_big| per run (pp):", round((both["transfer_delta"] - both["big"]).abs().mean(), 3))
