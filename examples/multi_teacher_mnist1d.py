"""Several teachers for one student on the built-in MNIST-1D zoo: single teachers vs parallel,
sequential (ascending and descending teacher accuracy) and soup, all with `kl+dp` and one recipe.

    anyteach zoo build mnist1d                      # once
    python examples/multi_teacher_mnist1d.py --out runs/multi_teacher --seeds 0 1 2

Every run is resumable and reused: re-running the script trains nothing that is finished. The
single-teacher runs go to the run cache (keyed by configuration), where the soup finds them. A
control gives the best single teacher the sequential runs' budget (3 stages x the recipe's epochs),
another distils the student from itself (`self`: what the recipe does without any teacher).
Each multi-teacher student is also compared directly with the best single-teacher student of its
seed (McNemar on the samples where exactly one of the two is right). Writes `table.json` and, for
the first seed, the figures `multi_teacher_epochs.png` and `multi_teacher_comparison.png`.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from anyteach import predict, transfer, transfer_metrics, transfer_multi
from anyteach.core.io import write_json
from anyteach.demo import DEMO_STUDY
from anyteach.report.figures import multi_teacher_figures

STUDENT = "zoo:mnist1d/mlp_wide_aug"  # 93.56% eval accuracy
TEACHERS = ["zoo:mnist1d/mlp", "zoo:mnist1d/transformer", "zoo:mnist1d/cnn_bn"]  # weaker, equal, stronger
RECIPE = DEMO_STUDY["recipe"]  # the demo study's recipe, per run and per stage
KEYS = (
    "student_acc",
    "transfer_delta",
    "knowledge_gain",
    "knowledge_loss",
    "gain_count",
    "loss_count",
    "p_gain",
    "p_loss",
)


def run_seed(seed: int, out: Path, method: str) -> tuple[dict, str]:
    """All configurations for one seed; returns label -> result and the best single teacher's label."""
    common = {"data": "mnist1d", "method": method, "progress": False, "seed": seed, **RECIPE}
    results = {}
    for teacher in TEACHERS:
        results[f"single: {teacher.rsplit('/', 1)[-1]}"] = transfer(STUDENT, teacher, **common)
    results["parallel"] = transfer_multi(STUDENT, TEACHERS, mode="parallel", out=out / "parallel", **common)
    for curriculum in ("asc", "desc"):
        results[f"sequential {curriculum}"] = transfer_multi(
            STUDENT, TEACHERS, mode="sequential", curriculum=curriculum, out=out / f"sequential-{curriculum}", **common
        )
    results["soup"] = transfer_multi(STUDENT, TEACHERS, mode="soup", out=out / "soup", **common)
    singles = [label for label in results if label.startswith("single")]
    best = max(singles, key=lambda label: results[label].final["transfer_delta"])
    budget = {**common, "epochs": RECIPE["epochs"] * len(TEACHERS)}
    results["control: best single, 3x epochs"] = transfer(STUDENT, TEACHERS[singles.index(best)], **budget)
    results["control: self, no teacher"] = transfer(STUDENT, None, **{**common, "method": "self"})
    return results, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/multi_teacher_mnist1d"))
    parser.add_argument("--method", default="kl+dp")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows = []
    for i, seed in enumerate(args.seeds):
        results, best = run_seed(seed, args.out / f"seed{seed}", args.method)
        best_pred = predict(results[best].student_path, "mnist1d")
        for label, result in results.items():
            row = {"seed": seed, "run": label, **{k: result.final[k] for k in KEYS}, "run_dir": str(result.run_dir)}
            pred = predict(result.student_path, "mnist1d")
            versus = transfer_metrics(best_pred.predicted, pred.predicted, best_pred.predicted, pred.labels)
            row["vs_best_single"] = {
                k: versus[k] for k in ("transfer_delta", "gain_count", "loss_count", "p_gain", "p_loss")
            }
            row["best_single"] = best
            rows.append(row)
            v = row["vs_best_single"]
            print(
                f"seed {seed} {label:<32} acc {row['student_acc']:6.2f}  Δ {row['transfer_delta']:+6.2f} pp  "
                f"gain {row['knowledge_gain']:5.2f}  loss {row['knowledge_loss']:5.2f}  "
                f"flips +{row['gain_count']}/-{row['loss_count']}  p_gain {row['p_gain']:.2g}  "
                f"p_loss {row['p_loss']:.2g}  | vs {best}: {v['transfer_delta']:+.2f} pp "
                f"(+{v['gain_count']}/-{v['loss_count']}, p {v['p_gain']:.2g}/{v['p_loss']:.2g})"
            )
        for label in ("sequential asc", "sequential desc"):
            for stage in results[label].stage_metrics:
                print(
                    f"    {label} stage {stage['stage']} {stage['teacher']:<12} "
                    f"Δ vs start {stage['vs_start']['transfer_delta']:+.2f}  "
                    f"Δ vs S0 {stage['vs_original']['transfer_delta']:+.2f} pp"
                )
        if i == 0:
            shown = {label: result for label, result in results.items() if not label.startswith("control")}
            for path in multi_teacher_figures(shown, args.out):
                print(f"wrote {path}")
    print("\nmean ± sd over seeds of Δ (pp), and of Δ against the best single teacher of the seed")
    labels = list(dict.fromkeys(row["run"] for row in rows))
    for label in labels:
        deltas = [row["transfer_delta"] for row in rows if row["run"] == label]
        versus = [row["vs_best_single"]["transfer_delta"] for row in rows if row["run"] == label]
        sd = statistics.stdev(deltas) if len(deltas) > 1 else 0.0
        print(
            f"{label:<34} Δ {statistics.mean(deltas):+.2f} ± {sd:.2f}   "
            f"vs best single {statistics.mean(versus):+.2f}   per seed {', '.join(f'{d:+.2f}' for d in deltas)}"
        )
    write_json(
        args.out / "table.json",
        {
            "student": STUDENT,
            "teachers": TEACHERS,
            "recipe": RECIPE,
            "method": args.method,
            "seeds": args.seeds,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
