"""`anyteach info`, `flips` and `teachers`: a model, complementary knowledge, and teachers ranked before training."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..core.errors import AnyteachError
from .app import _print_json, app, console, err_console, with_input_size


@app.command()
def info(
    model: str = typer.Argument(..., help="Model reference: timm:<name>[@weights], zoo:<zoo>/<model>, path."),
    data: Optional[str] = typer.Option(None, help="Also measure eval accuracy on this dataset."),
    input_size: Optional[str] = typer.Option(
        None, "--input-size", help="The input size the model was trained at, e.g. 3,32,32 (overrides its config)."
    ),
    allow_chance: bool = typer.Option(
        False, "--allow-chance", help="With --data: report an accuracy at chance instead of stopping."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Resolve a model reference and print its metadata (and eval accuracy with --data)."""
    from ..models.references import load_model

    m = load_model(model, input_size=input_size)
    out = {"reference": model, **m.info.to_dict()}
    if data is not None:
        from ..data.predictions import check_not_at_chance, predict
        from ..data.references import load_dataset

        dataset = load_dataset(data)
        predictions = predict(m, dataset)
        if not allow_chance:
            check_not_at_chance(m, dataset, "eval", "model", predictions)
        out["eval_acc"] = round(predictions.accuracy, 2)
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return
    table = Table(show_header=False, title=model)
    for key in ("name", "architecture", "family", "num_classes", "num_params", "preprocessing", "eval_acc"):
        if key in out:
            table.add_row(key, f"{out[key]:,}" if key == "num_params" else str(out[key]))
    console.print(table)


# ---------------------------------------------------------------------------------------------
# flips


def _parse_top_p(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise AnyteachError(f"--top-p must be comma-separated percentages like 2,5,20,50, got {text!r}") from e


@app.command()
def flips(
    teacher: Optional[str] = typer.Argument(None, help="Teacher model reference (pair mode)."),
    student: Optional[str] = typer.Argument(None, help="Student model reference (pair mode)."),
    data: str = typer.Option(..., "--data", help="Dataset reference, e.g. mnist1d."),
    zoo: Optional[str] = typer.Option(None, "--zoo", help="Analyse every ordered pair of this built-in zoo."),
    model: Optional[list[str]] = typer.Option(
        None, "--model", help="Analyse every ordered pair of these models (repeat the option)."
    ),
    split: str = typer.Option("eval", help="Split to measure on."),
    top_p: str = typer.Option("2,5,20,50", "--top-p", help="Top-p% class shares, comma-separated."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON instead of tables."),
    json_path: Optional[Path] = typer.Option(None, "--json-out", help="Write the results as JSON here."),
    csv_path: Optional[Path] = typer.Option(
        None, "--csv", help="Write per-class rows (pair) or per-pair rows (zoo) as CSV here."
    ),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Write PNG figures into this directory."),
    plot_student: Optional[str] = typer.Option(
        None, "--plot-student", help="Student of the per-class figure (zoo mode; default: the median-accuracy model)."
    ),
    semantic: bool = typer.Option(
        False, "--semantic", help="Pair mode: semantic relatedness of the top classes (needs anyteach[semantic])."
    ),
    allow_chance: bool = typer.Option(
        False, "--allow-chance", help="A model at chance on the split is expected (a random teacher as a control)."
    ),
) -> None:
    """Complementary knowledge of a teacher for a student, or of every ordered pair of a zoo."""
    from ..analysis import complementarity
    from ..analysis import complementarity_figures as figures

    shares = _parse_top_p(top_p)
    if zoo is not None or model:
        if teacher is not None or student is not None:
            raise AnyteachError("give either TEACHER STUDENT or --zoo / --model, not both")
        if zoo is not None and model:
            raise AnyteachError("give either --zoo or --model, not both")
        start = time.perf_counter()
        result = complementarity.analyze_zoo(
            zoo if zoo is not None else list(model or []),
            data,
            split,
            top_p=shares,
            on_model=lambda ref: err_console.print(f"  predictions: {ref}"),
            allow_chance=allow_chance,
        )
        _print_json(result.matrices()) if as_json else _print_zoo(result)
        _save_analysis(
            result, json_path, csv_path, plots and (lambda: figures.zoo_figures(result, plots, student=plot_student))
        )
        err_console.print(
            f"{result.num_models} models, {result.num_models * (result.num_models - 1)} ordered pairs "
            f"in {time.perf_counter() - start:.1f} s"
        )
        return
    if teacher is None or student is None:
        raise AnyteachError("give TEACHER and STUDENT model references, or --zoo NAME, or --model REF (repeated)")
    pair = complementarity.analyze_pair(
        teacher, student, data, split, top_p=shares, semantic=semantic, allow_chance=allow_chance
    )
    _print_json(pair.as_dict()) if as_json else _print_pair(pair)
    _save_analysis(pair, json_path, csv_path, plots and (lambda: figures.pair_figures(pair, plots)))


def _save_analysis(analysis, json_path: Optional[Path], csv_path: Optional[Path], draw) -> None:
    """Write an analysis (pair or zoo) as JSON and CSV where asked, and its figures (`draw()`)."""
    if json_path:
        analysis.save_json(json_path)
    if csv_path:
        analysis.save_csv(csv_path)
    if draw:
        for path in draw():
            err_console.print(f"wrote {path}")


def _print_pair(pair) -> None:
    table = Table(show_header=False, title=f"teacher {pair.teacher} -> student {pair.student}")
    rows = [
        ("teacher accuracy", f"{pair.teacher_acc:.2f}%"),
        ("student accuracy", f"{pair.student_acc:.2f}%"),
        ("complementary knowledge (positive flips)", f"{pair.positive_flips:.2f}% of samples"),
        ("negative flips", f"{pair.negative_flips:.2f}% of samples"),
        (
            "entropy of per-class flips",
            f"{pair.entropy:.3f} (uniform ln {pair.num_classes} = {pair.uniform_entropy:.3f})",
        ),
    ]
    rows += [(f"top-{p:g}% classes", f"k={top.k} holding {top.share:.1f}% of flips") for p, top in pair.top_p.items()]
    for p, value in (pair.semantic or {}).items():
        rows.append((f"semantic relatedness top-{p:g}%", f"{value['relative']:+.1f}% vs all classes"))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def _print_zoo(result) -> None:
    """One row per student (the full matrices go to --json / --csv): its weakest and strongest source."""
    import numpy as np

    from ..models.references import display_name as short

    table = Table(title="complementary knowledge of the other models (teachers) per student, % of samples")
    for col, justify in (
        ("student", "left"),
        ("acc %", "right"),
        ("min", "right"),
        ("from teacher", "left"),
        ("median", "right"),
        ("max", "right"),
        ("from teacher", "left"),
        ("entropy", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]  # left/right
    for s in np.argsort(-result.accuracy, kind="stable"):
        others = [t for t in range(result.num_models) if t != s]
        values = result.positive_flips[s, others]
        low, high = others[int(np.argmin(values))], others[int(np.argmax(values))]
        table.add_row(
            short(result.models[s]),
            f"{result.accuracy[s]:.2f}",
            f"{values.min():.2f}",
            short(result.models[low]),
            f"{np.median(values):.2f}",
            f"{values.max():.2f}",
            short(result.models[high]),
            f"{np.nanmedian(result.entropy[s, others]):.3f}",
        )
    console.print(table)
    student, teacher, value = result.minimum()
    off = result.off_diagonal()
    console.print(
        f"minimum complementary knowledge: {value:.2f}% (teacher {short(teacher)} -> student "
        f"{short(student)}); median over pairs {np.median(result.positive_flips[off]):.2f}%"
    )
    console.print(
        f"entropy of per-class flips: median {np.nanmedian(result.entropy[off]):.3f}, range "
        f"{np.nanmin(result.entropy[off]):.3f}-{np.nanmax(result.entropy[off]):.3f} "
        f"(uniform ln {result.num_classes} = {result.uniform_entropy:.3f})"
    )


@app.command()
def teachers(
    student: str = typer.Argument(..., help="Student model reference (or its name in --zoo)."),
    zoo: str = typer.Option(
        ..., "--zoo", help="Candidate teachers: a zoo (mnist1d, zoo:mnist1d@1) or comma-separated model references."
    ),
    data: str = typer.Option(
        ...,
        "--data",
        help="Dataset with a calib split, e.g. mnist1d:calib=5000 (every signal is measured there, never on eval).",
    ),
    method: Optional[str] = typer.Option(
        None, "--method", help="Method whose gain is forecast (default: the teaching preset pl+ens+wise)."
    ),
    fit: Optional[Path] = typer.Option(
        None, "--fit", help="Re-fit the forecaster on this finished study first (written to STUDY_DIR/forecaster.json)."
    ),
    forecaster: Optional[Path] = typer.Option(
        None, "--forecaster", help="A forecaster file (default: the shipped one)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Write a PNG of the ranking here."),
    allow_chance: bool = typer.Option(
        False, "--allow-chance", help="A model at chance on the calib split is expected (a random candidate)."
    ),
    input_size: Optional[str] = typer.Option(
        None,
        "--input-size",
        help="The input size the student and the candidates were trained at, e.g. 3,32,32 (a model's own "
        "?input_size= wins).",
    ),
) -> None:
    """Rank every candidate teacher of a student by the forecast gain beyond the no-teacher control."""
    from rich import box

    from ..analysis.forecast import (
        DEFAULT_METHOD,
        Forecaster,
        rank_teachers,
        ranking_figure,
        shipped_forecaster,
    )
    from ..models.references import display_name as short

    chosen = Forecaster.load(forecaster) if forecaster is not None else shipped_forecaster()
    if fit is not None:
        from ..report.teacher_choice import fit_from_study

        chosen = fit_from_study(fit, data, base=chosen)
        err_console.print(f"re-fitted on {fit}: {chosen.save(fit / 'forecaster.json')}", highlight=False)
    candidates: str | list[str] = zoo
    if input_size is not None:
        from ..analysis.forecast import resolve_models

        student = with_input_size(student, input_size)
        candidates = [with_input_size(ref, input_size) for ref in resolve_models(zoo)]
    ranking = rank_teachers(
        student,
        candidates,
        data,
        method=method or DEFAULT_METHOD,
        forecaster=chosen,
        on_model=None if as_json else lambda ref: err_console.print(f"  predictions: {ref}"),
        allow_chance=allow_chance,
    )
    if plots is not None:
        err_console.print(f"wrote {ranking_figure(ranking, plots / 'teachers.png')}")
    if as_json:
        print(json.dumps(ranking.as_dict(), indent=2))
        return
    t = ranking.table
    table = Table(
        title=f"teachers for {short(ranking.student)}: forecast Δ of {ranking.method} beyond "
        f"{ranking.control} (signals on the calib split of {ranking.data})"
    )
    why = {
        "available_gain": "avail.",
        "complementary_knowledge": "compl.",
        "accuracy_difference": "acc. gap",
        "log_available_gain": "avail.",
        "log_available_gain_x_student_log_size": "avail.",
        "student_log_size": "size",
        "student_overconfidence": "overconf.",
    }
    table.box, table.padding, table.pad_edge, table.collapse_padding = box.SIMPLE_HEAD, (0, 0), False, True
    for col, justify in (
        ("#", "right"),
        ("teacher", "left"),
        ("acc %", "right"),
        ("strength", "left"),
        ("compl. %", "right"),
        ("avail. pp", "right"),
        ("forecast pp", "right"),
        ("why", "left"),
    ):
        table.add_column(col, justify=justify, no_wrap=True, min_width=len(col))  # type: ignore[arg-type]
    for r in t.itertuples():
        table.add_row(
            str(r.rank),
            short(r.teacher),
            f"{r.teacher_acc:.2f}",
            r.bucket,
            f"{r.complementary_knowledge:.2f}",
            f"{r.available_gain:+.2f}",
            f"{r.forecast:+.2f} ±{ranking.forecast.half_width:.2f}" + ("*" if r.extrapolated else ""),
            why.get(r.top_signal, r.top_signal),
        )
    console.print(table)
    if t["extrapolated"].any():
        console.print(
            f"* {int(t['extrapolated'].sum())} of {len(t)} forecasts are extrapolated: "
            f"{ranking.forecast.extrapolation_note(t)}. Read their order, not their size in pp; re-fit "
            "on a finished study of your own models with --fit STUDY_DIR.",
            highlight=False,
            soft_wrap=True,
        )
    console.print(ranking.verdict(), highlight=False, soft_wrap=True)
    console.print(
        f"student accuracy {t['student_acc'].iloc[0]:.2f}% (calib); forecaster: "
        f"{ranking.forecast.sentence()}; {ranking.seconds:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
