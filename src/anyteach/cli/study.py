"""`anyteach study`, `summary`, `report` and `demo`: many transfers, their aggregates and the report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..core.errors import AnyteachError
from ..core.io import disk_use, human_bytes
from ..core.options import METHOD_OPTIONS, PER_RUN_OPTIONS, TRAINING_OPTIONS
from .analysis import _print_zoo
from .app import _csv, app, console, err_console, with_option_flags
from .zoo import build_zoo_with_progress, zoo_table


def summary_table(frame, title: str, key: str = "method") -> Table:
    """A rich table of aggregate rows (`anyteach.aggregate.METRIC_COLUMNS`)."""
    from ..report.aggregate import SIGNIFICANCE

    table = Table(
        title=title,
        caption="succ.: median over students of the per-student success rate (Δ > 0); "
        f"pooled: over all runs; sig+ / sig−: runs with a significant gain / harm (p < {SIGNIFICANCE:g}); "
        "avail.: Δ of "
        "the student–teacher ensemble; taken: ΣΔ / Σ avail. over runs with something to take",
    )
    columns = [
        (key, key, "{}"),
        ("runs", "runs", "{:d}"),
        ("succ. %", "median_success_rate", "{:.1f}"),
        ("pooled %", "pooled_success_rate", "{:.1f}"),
        ("Δ pp", "mean_delta", "{:+.2f}"),
        ("gain %", "mean_gain", "{:.2f}"),
        ("loss %", "mean_loss", "{:.2f}"),
        ("sig+ %", "significant_gain_rate", "{:.0f}"),
        ("sig− %", "significant_harm_rate", "{:.0f}"),
        ("avail. pp", "mean_ensemble_delta", "{:+.2f}"),
        ("taken %", "pooled_efficiency", "{:.0f}"),
    ]
    for header, _, _ in columns:
        table.add_column(header, justify="left" if header == key else "right", no_wrap=header == key)
    for row in frame.to_dict("records"):
        if not row.get("runs"):
            continue
        table.add_row(
            *[
                fmt.format(int(row[col]) if fmt == "{:d}" else row[col]) if row[col] == row[col] else "-"
                for _, col, fmt in columns
            ]
        )
    return table


def print_summary(study_dir: Path) -> None:
    from ..report.aggregate import CONTROL_METHOD, SELF_CONTROL, summarize

    summary = summarize(study_dir)
    summary.require_runs(study_dir)
    console.print(summary_table(summary.by_method, f"study {study_dir}: per method"))
    for method in summary.methods:
        part = summary.by_bucket[summary.by_bucket["method"] == method]
        if part["runs"].sum():
            console.print(
                summary_table(part, f"{method}: per teacher-strength bucket (acc(T) − acc(S0), pp)", key="bucket")
            )
    for name, paired in ((CONTROL_METHOD, summary.vs_control), (SELF_CONTROL, summary.vs_self)):
        if not len(paired):
            continue
        table = Table(
            title=f"against the {name} control, paired by student, seed and budget",
            caption="Δ beyond control: each run's Δ minus its student's control Δ (a control of the same "
            "data and budget: column control); p: one-sided sign test over students",
        )
        for header in (
            "method",
            "control",
            "runs",
            "Δ beyond control pp",
            "runs above control %",
            "students better / worse",
            "p better",
            "p worse",
        ):
            table.add_column(header, justify="left" if header in ("method", "control") else "right")
        for r in paired.to_dict("records"):
            table.add_row(
                r["method"],
                r["control"],
                str(r["paired_runs"]),
                f"{r['mean_delta_vs_control']:+.2f}",
                f"{r['beats_control_rate']:.0f}",
                f"{r['students_better']} / {r['students_worse']}",
                f"{r['p_better_than_control']:.3g}",
                f"{r['p_worse_than_control']:.3g}",
            )
        console.print(table)
    from ..report.findings import verdict

    for sentence in verdict(summary):  # each with its sample size; no verdict below findings.MIN_STUDENTS
        console.print(sentence.replace("**", "").replace("`", ""), highlight=False, soft_wrap=True)
    err_console.print(summary.status_line(), highlight=False)


@app.command()
@with_option_flags(TRAINING_OPTIONS, METHOD_OPTIONS, exclude=PER_RUN_OPTIONS)
def study(
    spec: Optional[Path] = typer.Argument(None, help="Study definition (YAML); flags override its keys."),
    out: Path = typer.Option(..., "--out", "-o", help="Study directory (store, run directories, report)."),
    zoo: Optional[str] = typer.Option(None, help="Use a built-in zoo's models (and its data), e.g. mnist1d."),
    models: Optional[str] = typer.Option(None, help="Comma-separated model references (instead of --zoo)."),
    data: Optional[str] = typer.Option(None, help="Dataset reference (default: the zoo's)."),
    pairs: Optional[int] = typer.Option(None, help="Draw this many random ordered pairs (default: all)."),
    balanced: Optional[bool] = typer.Option(
        None, "--balanced/--unbalanced", help="Balance the drawn pairs over teacher-strength buckets."
    ),
    pair_seed: Optional[int] = typer.Option(
        None, "--pair-seed", help="Seed of the pair draw (the runs' seeds are --seeds)."
    ),
    methods: Optional[str] = typer.Option(None, help="Comma-separated methods, e.g. kl,kl+dp,xe."),
    seeds: Optional[str] = typer.Option(None, help="Comma-separated transfer seeds (default: 0)."),
    workers: Optional[int] = typer.Option(None, help="Local worker processes (1: in-process)."),
    executor: Optional[str] = typer.Option(None, help="local (default) or ray."),
    address: Optional[str] = typer.Option(None, help="Address of an existing Ray cluster."),
    num_gpus: Optional[float] = typer.Option(None, help="GPUs per run (Ray)."),
    name: Optional[str] = typer.Option(None, help="Study name for the report."),
    imports: Optional[list[str]] = typer.Option(
        None, "--import", help="A module or Python file that registers methods; imported by every worker (repeatable)."
    ),
    retry_failed: bool = typer.Option(
        False,
        "--retry-failed",
        help="Also run again the runs that diverged or whose checkpoint was corrupt (restarted from scratch).",
    ),
    log: Optional[str] = typer.Option(
        None,
        "--log",
        help="Experiment trackers for every run, comma-separated: "
        "tensorboard, wandb, mlflow (each an optional package).",
    ),
    options: Optional[dict] = None,
) -> None:
    """Run a transfer study (pairs x methods x seeds) into a resumable SQLite store; re-run to resume.

    The training and method option flags set the study's recipe: options of every run."""
    from ..study.driver import build_study_spec, run_study

    if zoo is not None and models is not None:
        raise AnyteachError("give --zoo or --models, not both")
    definition = build_study_spec(
        spec,
        models=zoo if zoo is not None else _csv(models),
        data=data,
        pairs=pairs,
        balanced=balanced,
        pair_seed=pair_seed,
        methods=_csv(methods),
        seeds=_csv(seeds),  # type: ignore[arg-type]  # numbers as text: the spec parses and checks them
        recipe=options,
        workers=workers,
        executor=executor,
        address=address,
        resources={"num_gpus": num_gpus} if num_gpus is not None else None,
        name=name,
        imports=imports,
    )
    from ..study.notices import study_notices

    for notice in study_notices(definition):
        err_console.print(f"[yellow]note:[/yellow] {notice}", highlight=False, soft_wrap=True)
    try:
        outcome = run_study(definition, out, retry_failed=retry_failed, log=_csv(log) or ())
    except KeyboardInterrupt:
        err_console.print(
            f"[yellow]interrupted[/yellow]: finished runs are in {out}/study.sqlite; run the same "
            "command again to resume",
            highlight=False,
        )
        raise typer.Exit(130) from None
    err_console.print(
        f"{outcome.finished} runs finished now, {outcome.skipped} were already done, "
        f"{len(outcome.failed)} failed; {outcome.seconds:.0f} s -> {out} "
        f"({human_bytes(disk_use(out))} on disk)",
        highlight=False,
    )
    if outcome.skipped + outcome.finished:
        print_summary(Path(out))
    if outcome.held_back:
        err_console.print(
            f"[yellow]{len(outcome.held_back)} runs failed earlier[/yellow] (diverged or a corrupt "
            "checkpoint) and were not run again; --retry-failed retries them",
            highlight=False,
        )
    if outcome.failed:
        err_console.print(
            f"[red]{len(outcome.failed)} runs failed[/red] (first: {outcome.failed[0][1].splitlines()[0]}); "
            "crashed runs are retried by the same command, diverged ones with --retry-failed",
            highlight=False,
        )
    if outcome.failed or outcome.held_back:
        raise typer.Exit(1)
    err_console.print(f"next: anyteach report {out}")


@app.command()
def summary(
    study_dir: Path = typer.Argument(..., help="Study directory."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per method."),
) -> None:
    """Aggregate a study: success rates, deltas, gains, losses per method and teacher-strength bucket."""
    if as_json:
        from ..report.aggregate import summarize

        result = summarize(study_dir)
        result.require_runs(study_dir)
        print(result.to_json())
        return
    print_summary(study_dir)


@app.command()
def report(
    study_dir: Path = typer.Argument(..., help="Study directory."),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        help="Where report.md, report.html and figures/ go "
        "(default: the study directory; needed when it is read-only).",
    ),
) -> None:
    """Write report.md, a self-contained report.html and the study's PNG figures (into the study directory)."""
    from ..report.aggregate import summarize
    from ..report.document import headline_text, write_report

    result = summarize(study_dir)
    result.require_runs(study_dir)
    files = write_report(study_dir, result, out=out)
    console.print(headline_text(result), highlight=False, soft_wrap=True)
    err_console.print(
        f"report: {files.markdown}\n        {files.html}\nfigures: {len(files.figures)} in "
        f"{files.figures[0].parent if files.figures else study_dir}"
    )


@app.command()
def demo(
    out: Path = typer.Option(
        Path("anyteach-demo"),
        "--out",
        "-o",
        help="Output directory (complementarity analysis, study, report); re-running resumes the study.",
    ),
    workers: Optional[int] = typer.Option(
        None, help="Worker processes for the zoo build and the study (default: all cores)."
    ),
    zoo: str = typer.Option(
        "mnist1d",
        "--zoo",
        help="The built-in zoo: mnist1d, or glyphs (timm models on "
        "generated images; its report checks the MNIST-1D conclusions).",
    ),
) -> None:
    """The main job: build the zoo, measure its complementary knowledge, run the demo study, report."""
    import os

    from ..demo import demo_study, run_demo
    from ..report.document import headline_text

    start = time.perf_counter()
    cores = workers or os.cpu_count() or 1
    study = demo_study(cores, zoo)  # an unknown zoo fails before anything is printed
    err_console.rule("[bold]the zoo")
    rows = build_zoo_with_progress(zoo, 0, cores)
    console.print(zoo_table(rows, f"zoo {zoo}"))
    err_console.rule("[bold]complementary knowledge of every ordered pair, then the transfer study")
    result = run_demo(out, study, on_analysis=_print_zoo)
    err_console.rule("[bold]headline numbers")
    console.print(headline_text(result.summary), highlight=False, soft_wrap=True)
    console.print(
        f"\nreport: {result.report_html}\n        {result.report_markdown}\n"
        f"complementarity figures and tables: {out / 'complementarity'}"
    )
    err_console.print(f"demo finished in {time.perf_counter() - start:.0f} s")
