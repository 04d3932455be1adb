"""H11 (issue 16): an ensemble of several teachers as the target. Per student, its k best teachers by the
shipped forecast (`anyteach.rank_teachers`, calib split only, no training), and `pl+ens+wise` run once with
all k (the target is the calibrated ensemble of the student and the teachers' mean probability) and once with
the forecast's top-1 teacher alone; each paired with the stronger of the student's `self` and `self+xe+wise`
runs of the same data and budget, read from a finished study (`--controls`).

usage: PYTHONPATH=src python research/scripts/multi_teacher.py --controls STUDY_DIR --out DIR
       [--zoo-seed S] [--k 3] [--students a,b,...] [--fresh N --epochs E --only-top1 --run-controls]
(H12: --fresh 500000 --epochs 1 --only-top1 --run-controls trains the controls at that budget too)
Writes DIR/runs.csv (one row per run, the study's run columns), which `research/scripts/pooled.py` pools
with the controls: the pooled efficiency's denominator is each run's own ensemble gain (S0 and all its teachers,
equal weights), so the k-teacher runs are measured against the larger ensemble.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

import anyteach
from anyteach.methods.presets import TEACHING_RECIPE
from anyteach.report.aggregate import UNLABELLED_CONTROLS, summarize

parser = argparse.ArgumentParser()
parser.add_argument("--controls", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--zoo-seed", type=int, default=0)
parser.add_argument("--k", type=int, default=3)
parser.add_argument("--students", default=None)
parser.add_argument("--fresh", type=int, default=100000)
parser.add_argument("--epochs", type=int, default=None, help="default: the controls' (2)")
parser.add_argument("--only-top1", action="store_true", help="only the forecast's top-1 teacher (no k-teacher run)")
parser.add_argument(
    "--run-controls",
    action="store_true",
    help="train the controls here (self, self+xe+wise) with --epochs on --fresh, instead of reading "
    "them from --controls (then --controls names only the study whose recipe they share)",
)
args = parser.parse_args()

seed_part = f"seed={args.zoo_seed}," if args.zoo_seed else ""
zoo = f"zoo:mnist1d@{args.zoo_seed}" if args.zoo_seed else "zoo:mnist1d"
data = f"mnist1d:{seed_part}calib=5000,fresh={args.fresh}"
controls = summarize(args.controls).runs
controls = controls[controls["label"].isin(UNLABELLED_CONTROLS)]
template = json.loads(controls["options"].iloc[0])  # the controls' recipe: the candidates run the same
options = {k: template[k] for k in ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "lr_schedule")}
assert {k: options[k] for k in TEACHING_RECIPE} == TEACHING_RECIPE, options
names = args.students.split(",") if args.students else sorted(controls["student_name"].unique())
students = [n if ":" in n else f"{zoo}/{n}" for n in names]  # a bare name: that model of this zoo
if args.epochs is not None:
    options["epochs"] = args.epochs
run_options = json.dumps({**template, "epochs": options["epochs"]}, sort_keys=True)
out = Path(args.out)
rows = []


def run_row(label: str, method: str, student: str, teachers: list[str]) -> dict:
    name = student.rsplit("/", 1)[-1]
    run_dir = out / f"{name}-{label.replace(' ', '-')}"
    result = anyteach.transfer(student, teachers or None, data, method, run_dir, progress=False, seed=0, **options)
    final = result.final
    print(
        f"{label:>20} {name:>14} <- {','.join(t.rsplit('/', 1)[-1] for t in teachers) or '-'}: "
        f"Δ {final['transfer_delta']:+.2f} pp (ensemble {final.get('ensemble_delta') or 0:+.2f}, "
        f"w {(final.get('calibration') or {}).get('teacher_weight')}, α {final.get('wise_alpha')})",
        flush=True,
    )
    return {
        "label": label,
        "method": method,
        "student": student,
        "teacher": ",".join(teachers) or None,
        "seed": 0,
        "options": run_options,
        "data": data,
        "student_name": name,
        **{
            k: final.get(k)
            for k in (
                "student_acc",
                "student_acc_before",
                "teacher_acc",
                "transfer_delta",
                "knowledge_gain",
                "knowledge_loss",
                "gain_count",
                "loss_count",
                "p_gain",
                "p_loss",
                "ensemble_acc",
                "ensemble_delta",
                "transfer_efficiency",
                "wise_alpha",
            )
        },
        "teacher_weight": (final.get("calibration") or {}).get("teacher_weight"),
    }


if args.run_controls:
    controls = controls.iloc[0:0]
    for student in students:
        rows += [run_row(control, control, student, []) for control in UNLABELLED_CONTROLS]
else:
    controls = controls[controls["data"] == data]
for student in students:
    ranking = anyteach.rank_teachers(student, zoo, data, method="pl+ens+wise")
    ordered = ranking.table.sort_values("rank")["teacher"].tolist()
    candidates = [("pl+ens+wise top-1", ordered[:1])]
    if not args.only_top1:
        candidates.insert(0, (f"pl+ens+wise top-{args.k}", ordered[: args.k]))
    rows += [run_row(label, "pl+ens+wise", student, teachers) for label, teachers in candidates]
runs = pd.DataFrame(rows)
out.mkdir(parents=True, exist_ok=True)
runs.to_csv(out / "runs.csv", index=False)

print(
    f"pool with: python research/scripts/pooled.py {out / 'runs.csv'}"
    + ("" if args.run_controls else f" {args.controls}")
    + " [--ceilings FILE.json]"
)
