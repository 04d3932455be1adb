"""Whole-study table for the experiment log: per method the paper's numbers and the paired comparison
with each no-teacher control in the study (xe: same data with labels; self: same data, no labels).

usage: PYTHONPATH=src python research/scripts/table.py STUDY_DIR [--controls xe,self] [--buckets]
"""

import sys

from anyteach.report.aggregate import against_control, summarize

study = sys.argv[1]
controls = ["xe", "self"]
if "--controls" in sys.argv:
    controls = sys.argv[sys.argv.index("--controls") + 1].split(",")
s = summarize(study)
runs = s.runs
present = [c for c in controls if c in set(runs["method"])]
vs = {c: against_control(runs, control=c).set_index("label") for c in present}
head = "| method | runs | median success [IQR] | mean Δ (pp) | gain / loss (%) | sig. gain / harm |"
head += "".join(f" Δ vs {c} (better/worse, p) |" for c in present)
print(head)
print("|" + "---|" * (6 + len(present)))
for _, r in s.by_method.iterrows():
    line = (
        f"| {r['method']} | {r['runs']} | {r['median_success_rate']:.1f}% [{r['success_rate_q1']:.0f}–{r['success_rate_q3']:.0f}]"
        f" | {r['mean_delta']:+.2f} | {r['mean_gain']:.2f} / {r['mean_loss']:.2f} | "
        f"{r['significant_gain_rate']:.0f}% / {r['significant_harm_rate']:.0f}% |"
    )
    for c in present:
        t = vs[c]
        if r["method"] in t.index and r["method"] != c:
            v = t.loc[r["method"]]
            line += f" {v['mean_delta_vs_control']:+.2f} ({v['students_better']}/{v['students_worse']}, p={v['p_better_than_control']:.3g}) |"
        else:
            line += " – |"
    print(line)
if "--buckets" in sys.argv:
    print()
    print("| method | " + " | ".join(b for b in ["much weaker", "weaker", "equal", "stronger", "much stronger"]) + " |")
    print("|---|---|---|---|---|---|")
    for m in s.methods:
        b = s.by_bucket[s.by_bucket["method"] == m]
        if b["runs"].sum() == 0:
            continue
        print(
            f"| {m} | "
            + " | ".join(f"{x['mean_delta']:+.2f} ({x['runs']})" if x["runs"] else "–" for _, x in b.iterrows())
            + " |"
        )
if "--students" in sys.argv:
    r = runs.copy()
    ctl = sys.argv[sys.argv.index("--students") + 1]
    base = r[r["method"] == ctl].set_index("student")["transfer_delta"]
    r = r[r["method"] != ctl].assign(diff=lambda d: d["transfer_delta"] - d["student"].map(base))
    print()
    print(r.pivot_table(index="student_name", columns="label", values="diff", aggfunc="mean").round(2).to_string())
