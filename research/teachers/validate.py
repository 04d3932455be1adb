"""Issue 17: fit the teacher forecaster on the seed-0 studies, measure it on seeds 1 and 2.

Usage (from the repository root, after the studies in studies/ have run):

    python research/teachers/validate.py --studies /tmp/i17/studies [--ship]

Reads each study `seed{S}` (all-teachers-seed{S}.yaml), pairs every run with its student's control
(`teacher_analysis.beyond_control`), joins the no-training signals of each pair on the zoo's calib
split (`forecast.pair_signals`), then:

1. candidates (`CANDIDATES`, each round declared before looking at seeds 1/2 in that session): linear
   least squares of Δ beyond control on the available gain (AG), complementary knowledge, the accuracy
   difference, log(1 + AG) and student-level capacity proxies (size, over-confidence, train - calib gap);
   per method the candidate with the best leave-one-student-out Spearman ρ on seed 0 (within 0.01 of it,
   the fewest signals) is fitted on all of seed 0, or, where no candidate's ρ is positive, the mean alone
   ("none": the same forecast for every pair, nothing to rank); `--ship` writes it to
   src/anyteach/analysis/forecaster.json; every candidate's held-out ρ is recorded after the choice;
2. on seeds 1 and 2 (never fitted on): ρ over all runs and per-student regret of the forecast and of
   the naive rankings (teacher accuracy, complementary knowledge, available gain), top-k against a
   random draw, per-student sign counts against the control;
3. the property correlations ("what makes a good teacher and student") per seed and method;
4. the noise ceiling: the seed-2 teaching runs repeated with another run seed (`retest-seed2`), the ρ
   between the two repeats and each ranking's ρ against either and against their mean.

Writes runs-seed{S}.csv, ranking.csv, topk.csv, candidates.csv, properties.csv, results.json and
figures into this directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from anyteach.analysis.forecast import SIGNALS, Forecaster, fit_forecast, signal_values
from anyteach.analysis.metrics import mcnemar_p_values
from anyteach.core.io import write_json, write_text
from anyteach.core.plotting import pyplot, save_figure
from anyteach.report.teacher_choice import (
    beyond_control,
    property_correlations,
    property_figure,
    ranking_quality,
    spearman,
    study_runs,
    top_k_gain,
    with_signals,
)

HERE = Path(__file__).parent
CANDIDATES = {
    "none": (),
    # sessions 3-4
    "AG": ("available_gain",),
    "AG+CK": ("available_gain", "complementary_knowledge"),
    "AG+CK+acc": ("available_gain", "complementary_knowledge", "accuracy_difference"),
    # session 5, round 1: a student-level capacity proxy (gap: train - calib accuracy, over-confidence, size)
    "AG+AG·gap": ("available_gain", "ag_x_gap"),
    "AG+AG·overconf": ("available_gain", "ag_x_overconf"),
    "AG+AG·size": ("available_gain", "ag_x_size"),
    "AG+gap": ("available_gain", "student_gap"),
    "AG+overconf": ("available_gain", "student_overconfidence"),
    # session 5, round 2: log(1 + AG) = L in place of AG (mlp_narrow's ~30 pp available gains tip a line in AG)
    "L": ("log_available_gain",),
    "L+L·size": ("log_available_gain", "log_available_gain_x_student_log_size"),
    "L+size": ("log_available_gain", "student_log_size"),
    "L·size": ("log_available_gain_x_student_log_size",),
    "AG·size": ("ag_x_size",),
    "L+L·overconf": ("log_available_gain", "l_x_overconf"),
}
"""Every candidate tried, in the order declared (research/teachers/README.md); columns that are not
product signals (`forecast.SIGNALS`) are research-only and added by `research_columns`."""
TIE = 0.01
"""Declared rule: the best leave-one-student-out ρ on seed 0; within TIE of it, the fewest signals."""
NAIVE = {
    "teacher accuracy": "teacher_acc",
    "complementary knowledge": "complementary_knowledge",
    "available gain": "available_gain",
}
METHODS = ("pl+ens+wise", "kl+dp")


def research_columns(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Candidate columns that are not product signals: the student's train-split minus calib accuracy (pp,
    one more forward pass per model) and products of the available gain with a student property."""
    from anyteach.data.predictions import predict
    from anyteach.data.references import load_dataset
    from anyteach.models.references import load_model

    data = load_dataset(f"mnist1d:seed={seed},calib=5000")
    gap = {}
    for ref in frame["student"].unique():
        model = load_model(ref)
        gap[ref] = predict(model, data, "train").accuracy - predict(model, data, "calib").accuracy
    f = frame.copy()
    f["student_gap"] = f["student"].map(gap)
    size, log_gain = signal_values(f, ("student_log_size",))[:, 0], signal_values(f, ("log_available_gain",))[:, 0]
    f["ag_x_gap"] = f["available_gain"] * f["student_gap"]
    f["ag_x_overconf"] = f["available_gain"] * f["student_overconfidence"]
    f["ag_x_size"] = f["available_gain"] * size
    f["l_x_overconf"] = log_gain * f["student_overconfidence"]
    return f


def load(studies: Path, seed: int) -> pd.DataFrame:
    # seed{S} and any seed{S}-<part> beside it (later sessions ran the draw's remaining students as `seed{S}-rest`)
    parts = [studies / f"seed{seed}", *sorted(studies.glob(f"seed{seed}-*/"))]
    runs = pd.concat([study_runs(d) for d in parts if (d / "study.sqlite").exists()], ignore_index=True)
    # a pair run in two parts (session 3 cut seed 0 during gru's first teacher): the later part's run
    runs = runs.drop_duplicates(["label", "student", "teacher", "seed"], keep="last")
    frame = research_columns(with_signals(beyond_control(runs), f"mnist1d:seed={seed},calib=5000"), seed)
    # a study cut short at the deadline: ρ uses every run with its control, the per-student numbers
    # (regret, top-k) only whole students (every other zoo model as teacher)
    frame["whole"] = frame.groupby(["label", "student"])["teacher"].transform("count") == 10
    frame["zoo_seed"] = seed
    return frame


def columns(frame: pd.DataFrame, use: tuple[str, ...]) -> np.ndarray:
    """The candidate columns of `frame`: product signals computed as the package computes them."""
    return (
        np.column_stack(
            [signal_values(frame, (c,))[:, 0] if c in SIGNALS else frame[c].to_numpy(dtype=float) for c in use]
        )
        if use
        else np.empty((len(frame), 0))
    )


def least_squares(train: pd.DataFrame, use: tuple[str, ...]):
    """A line fitted like `forecast.fit_forecast`, on any candidate columns; returns its forecast function."""
    design = np.column_stack([np.ones(len(train)), columns(train, use)])
    solution, *_ = np.linalg.lstsq(design, train["delta_beyond"].to_numpy(dtype=float), rcond=None)
    return lambda test: solution[0] + columns(test, use) @ solution[1:]


def loso_rho(part: pd.DataFrame, use: tuple[str, ...]) -> float:
    """Leave-one-student-out: fit on the other students, forecast the left-out one; ρ over all runs."""
    forecasts = pd.Series(np.nan, index=part.index)
    for student in part["student"].unique():
        train, test = part[part["student"] != student], part[part["student"] == student]
        forecasts[test.index] = least_squares(train, use)(test)
    return spearman(forecasts, part["delta_beyond"])


def choose(scores: dict[str, float]) -> str:
    """The declared rule: best ρ, within TIE of it the fewest signals; none positive: no ranking."""
    best = max(scores.values())
    if not best > 0:
        return "none"
    near = [n for n, r in scores.items() if r >= best - TIE]
    return min(near, key=lambda n: (len(CANDIDATES[n]), -scores[n]))


def retest(stores: list[Path], first: pd.DataFrame, forecast) -> dict | None:
    """The noise ceiling: teaching runs repeated with other run seeds (studies/retest-seed2.yaml,
    glyphs-retest*-seed{0,1}.yaml); `stores` the repeats' studies, `first` the first runs with their signals.

    Repeats of the same pairs agree only up to training noise; no forecast can rank one repeat better than
    the unknown noise-free value does, about sqrt(ρ between two repeats). Each ranking is also scored against
    the mean of all repeats, a less noisy target.
    """
    stores = [s for s in stores if (s / "study.sqlite").exists()]
    if not stores:
        return None
    method = "pl+ens+wise"
    both = first[first["label"] == method].rename(columns={"delta_beyond": "repeat 1"})
    for k, store in enumerate(stores, start=2):
        again = beyond_control(study_runs(store))
        again = again[again["label"] == method][["student", "teacher", "delta_beyond"]]
        both = both.merge(again.rename(columns={"delta_beyond": f"repeat {k}"}), on=["student", "teacher"])
    repeats = [f"repeat {k}" for k in range(1, len(stores) + 2)]
    mean = both[repeats].mean(axis=1)
    pairs = [(a, b) for i, a in enumerate(repeats) for b in repeats[i + 1 :]]
    rho = float(np.mean([spearman(both[a], both[b]) for a, b in pairs]))
    within = [spearman(g[a], g[b]) for a, b in pairs for _, g in both.groupby("student")]
    out = {
        "method": method,
        "runs": len(both),
        "repeats": len(repeats),
        "rho_between_repeats": rho,
        "ceiling": float(np.sqrt(max(rho, 0.0))),
        "rho_between_repeats_within_student": float(np.nanmean(within)),
        "mean_abs_difference_pp": float(np.mean([(both[a] - both[b]).abs().mean() for a, b in pairs])),
    }
    scores = {"forecast": forecast.predict(both), **{n: both[c] for n, c in NAIVE.items()}}
    for name, score in scores.items():
        for r in repeats:
            out[f"rho {name} / {r}"] = spearman(score, both[r])
        out[f"rho {name} / mean of all"] = spearman(score, mean)
        quality = ranking_quality(both.assign(score=np.asarray(score, dtype=float), mean=mean), "score", "mean")
        out[f"regret {name} / mean of all"] = quality["regret"]
    return out


def sign_counts(part: pd.DataFrame) -> dict:
    by_student = part.groupby("student")["net_beyond"].sum()
    better, worse = int((by_student > 0).sum()), int((by_student < 0).sum())
    p_better, p_worse = mcnemar_p_values(better, worse)
    runs_better, runs_worse = int((part["net_beyond"] > 0).sum()), int((part["net_beyond"] < 0).sum())
    return {
        "mean_delta_beyond": float(part["delta_beyond"].mean()),
        "students_better": better,
        "students_worse": worse,
        "p_better": p_better,
        "p_worse": p_worse,
        "runs_better": runs_better,
        "runs_worse": runs_worse,
        "runs": len(part),
    }


SIGNED = ("rho", "loso_rho_seed0", "held_out_rho", "mean_delta_beyond", "recommended", "random", "rho_within")


def _md(frame: pd.DataFrame) -> str:
    def cell(column, v):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (float, np.floating)):
            return str(v)
        if column in ("p_better", "p_worse"):
            return f"{v:.3g}"
        return f"{v:+.2f}" if column in SIGNED else f"{v:.2f}"

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += [
        "| " + " | ".join(cell(c, v) for c, v in zip(frame.columns, row)) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def tables_markdown(candidates, chosen, ranking, signs, topk, props, repeat=None) -> str:
    """The tables of research/teachers/README.md (generated)."""
    out = [
        "# Tables (generated by validate.py)",
        "",
        "## Candidates (seed 0, leave-one-student-out ρ; held_out_rho: "
        "each fitted on all of seed 0, ρ over seeds 1+2, computed after the choice)",
        "",
        _md(pd.DataFrame(candidates)),
        "",
        "## Chosen forecasters (fitted on all of seed 0)",
        "",
    ]
    out += [f"- {f.sentence()}" for f in chosen.values()]
    r = ranking.copy()
    r["regret"] = r["regret"].astype(float)
    cols = [
        "zoo_seed",
        "method",
        "ranking",
        "rho",
        "runs",
        "regret",
        "top1_hits",
        "students",
        "top1_better",
        "top1_worse",
    ]
    out += [
        "",
        "## Rankings against the realised Δ beyond the control",
        "",
        "ρ: Spearman over all runs with a control; regret (pp), top-1 hits and top-1 better / worse than the "
        "control (exact counts): whole students only.",
        "",
        _md(r[[c for c in cols if c in r.columns]]),
        "",
        "## Against the control (exact counts; whole students; inside_interval: share of runs whose realised Δ "
        "beyond the control is inside the forecast's 95% interval)",
        "",
        _md(signs),
        "",
        "## Top-k teachers per student against a random draw of k (its expected mean: all teachers)",
        "",
        _md(topk),
        "",
        "## What makes a good teacher and student (ρ with Δ beyond the control)",
        "",
        _md(props.assign(resolved=props["resolved"].map({True: "yes", False: "no"}))),
    ]
    if repeat:
        out += [
            "",
            "## Noise ceiling: the seed-2 teaching runs repeated with another run seed",
            "",
            _md(pd.DataFrame([{"quantity": k, "value": v} for k, v in repeat.items() if k != "method"])),
        ]
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=Path, required=True)
    parser.add_argument(
        "--ship", action="store_true", help="write the seed-0 fit to src/anyteach/analysis/forecaster.json"
    )
    args = parser.parse_args()

    frames = {s: load(args.studies, s) for s in (0, 1, 2) if (args.studies / f"seed{s}" / "study.sqlite").exists()}
    for s, f in frames.items():
        write_text(
            HERE / f"runs-seed{s}.csv", f.drop(columns=["final_json", "run_dir"], errors="ignore").to_csv(index=False)
        )
    seed0 = frames[0]

    candidates, chosen = [], {}
    for method in METHODS:
        part = seed0[(seed0["label"] == method) & seed0["whole"]]
        scores = {name: loso_rho(part, use) for name, use in CANDIDATES.items() if use}
        best = choose(scores)
        assert all(s in SIGNALS for s in CANDIDATES[best]), f"{best} uses research-only columns"
        chosen[method] = fit_forecast(
            part,
            part["delta_beyond"],
            method=method,
            control=str(part["control"].iloc[0]),
            use=CANDIDATES[best],
            fitted_on="all-teachers-seed0 (research/teachers)",
        )
        held = pd.concat([frames[s] for s in (1, 2) if s in frames], ignore_index=True)
        held = held[held["label"] == method]
        for name, rho in scores.items():
            # held-out ρ of every candidate, fitted on all of seed 0: computed after the choice, for the record
            forecast = least_squares(part, CANDIDATES[name])(held) if len(held) else []
            candidates.append(
                {
                    "method": method,
                    "candidate": name,
                    "loso_rho_seed0": rho,
                    "held_out_rho": spearman(forecast, held["delta_beyond"]) if len(held) else np.nan,
                    "chosen": name == best,
                    "runs": len(part),
                    "students": part["student"].nunique(),
                }
            )
    forecaster = Forecaster(
        chosen, "fitted on the seed-0 MNIST-1D zoo studies of issue 17 (research/teachers/validate.py)"
    )
    write_text(HERE / "candidates.csv", pd.DataFrame(candidates).to_csv(index=False))
    if args.ship:
        forecaster.save(Path("src/anyteach/analysis/forecaster.json"))
    forecaster.save(HERE / "forecaster-seed0.json")

    ranking, topk, signs, props = [], [], [], []
    held_out = [frames[s] for s in (1, 2) if s in frames]
    sets = dict(frames)
    if len(held_out) == 2:
        sets["1+2"] = pd.concat(held_out, ignore_index=True)
    for s, frame in sets.items():
        for method in METHODS:
            part = frame[frame["label"] == method].copy()
            if part.empty:
                continue
            part["forecast"] = chosen[method].predict(part)
            scores = {"forecast": "forecast", **NAIVE}
            whole = part[part["whole"]]
            for name, column in scores.items():
                q = ranking_quality(whole, column) if len(whole) else {}
                q.update(rho=spearman(part[column], part["delta_beyond"]), runs=len(part))
                ranking.append({"zoo_seed": s, "fitted_on_this": s == 0, "method": method, "ranking": name, **q})
            for k in (1, 2, 3):
                for name, column in scores.items():
                    if len(whole):
                        topk.append({"zoo_seed": s, "method": method, "ranking": name, **top_k_gain(whole, column, k)})
            signs.append(
                {
                    "zoo_seed": s,
                    "method": method,
                    **sign_counts(whole),
                    "inside_interval": float(
                        ((whole["delta_beyond"] - whole["forecast"]).abs() <= chosen[method].half_width).mean()
                    ),
                }
            )
        t = property_correlations(frame)
        props.append(t.assign(zoo_seed=s))
        property_figure(t, HERE / f"properties-seed{s}.png")
    ranking, topk, signs = pd.DataFrame(ranking), pd.DataFrame(topk), pd.DataFrame(signs)
    props = pd.concat(props, ignore_index=True)
    write_text(HERE / "ranking.csv", ranking.to_csv(index=False))
    write_text(HERE / "topk.csv", topk.to_csv(index=False))
    write_text(HERE / "signs.csv", signs.to_csv(index=False))
    write_text(HERE / "properties.csv", props.to_csv(index=False))
    repeat = retest([args.studies / "retest-seed2"], frames[2], chosen["pl+ens+wise"]) if 2 in frames else None
    write_json(
        HERE / "results.json",
        {
            "forecaster": forecaster.as_dict(),
            "candidates": candidates,
            "retest": repeat,
            "ranking": ranking.to_dict("records"),
            "signs": signs.to_dict("records"),
            "students": {str(s): sorted(f["student_name"].unique()) for s, f in frames.items()},
        },
    )

    # figure: forecast vs realised on the held-out seeds
    plt = pyplot()
    fig, axes = plt.subplots(1, len(METHODS), figsize=(10, 4))
    for ax, method in zip(axes, METHODS):
        for s, frame in frames.items():
            part = frame[frame["label"] == method]
            if part.empty:
                continue
            ax.scatter(
                chosen[method].predict(part),
                part["delta_beyond"],
                s=12,
                label=f"zoo seed {s}" + (" (fitted)" if s == 0 else ""),
                alpha=0.7,
            )
        lims = ax.get_xlim()
        ax.plot(lims, lims, "k--", lw=0.8)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel("forecast Δ beyond control (pp)")
        ax.set_ylabel("realised Δ beyond control (pp)")
        ax.set_title(f"{method} (control {chosen[method].control})", fontsize=10)
        ax.legend(fontsize=8)
    save_figure(fig, HERE / "forecast-vs-realised.png")

    write_text(HERE / "tables.md", tables_markdown(candidates, chosen, ranking, signs, topk, props, repeat))
    pd.set_option("display.width", 200)
    print(pd.DataFrame(candidates).to_string(index=False))
    for f in chosen.values():
        print(f.sentence())
    print(
        ranking[
            ["zoo_seed", "method", "ranking", "rho", "rho_within", "regret", "top1_hits", "students", "runs"]
        ].to_string(index=False)
    )
    print(signs.to_string(index=False))
    print(topk[topk["ranking"] == "forecast"].to_string(index=False))
    print(json.dumps(repeat, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
