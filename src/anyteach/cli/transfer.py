"""`anyteach transfer`, `methods` and `push`: one transfer run, the methods it can use, and the hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from ..core import process_group as distributed
from ..core.errors import AnyteachError
from ..core.options import METHOD_OPTIONS, TRAINING_OPTIONS
from ..methods import get_method
from .app import _csv, app, console, err_console, with_input_size, with_option_flags


def _option_pairs(items: Optional[list[str]]) -> dict:
    """`key=value` strings to options; values are JSON when they parse (numbers, true, null), else text."""
    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise AnyteachError(f"bad --option {item!r}: expected key=value")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


def transfer_summary(result) -> Table:
    """The final metrics of a transfer run as a two-column table."""
    f = result.final
    table = Table(
        title=f"{result.config['method']}: {result.config['student']['name']} <- "
        f"{', '.join(t['name'] for t in result.config['teachers']) or 'no teacher'}"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")

    def num(value, fmt):
        return "-" if value is None else format(value, fmt)

    rows = [
        ("student acc before → after %", f"{f['student_acc_before']:.2f} → {f['student_acc']:.2f}"),
        ("teacher acc %", num(f.get("teacher_acc"), ".2f")),
        ("transfer delta pp", f"{f['transfer_delta']:+.2f}"),
        ("knowledge gain / loss %", f"{f['knowledge_gain']:.2f} / {f['knowledge_loss']:.2f}"),
        ("gain / loss flips", f"{f['gain_count']} / {f['loss_count']}"),
        ("p (gain) / p (loss)", f"{f['p_gain']:.2g} / {f['p_loss']:.2g}"),
        ("transfer rate %", num(f.get("transfer_rate"), ".2f")),
        ("routed to teacher %", num(f.get("routed_to_teacher"), ".2f")),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


@app.command("transfer")
@with_option_flags(TRAINING_OPTIONS, METHOD_OPTIONS)
def transfer_command(
    student: Optional[str] = typer.Option(None, "--student", help="Student model reference."),
    teacher: Optional[list[str]] = typer.Option(
        None,
        "--teacher",
        help="Teacher model reference; repeat it for several (methods that route between teachers: kl+dp, kl+dp-u).",
    ),
    mode: Optional[str] = typer.Option(
        None,
        "--mode",
        help="Several teachers: parallel (one run routing between "
        "them), sequential (one stage per teacher) or soup (averaged students).",
    ),
    curriculum: Optional[str] = typer.Option(
        None,
        "--curriculum",
        help="Order of the sequential stages: given (default), asc or desc teacher accuracy on the eval split.",
    ),
    plots: Optional[Path] = typer.Option(None, "--plots", help="With --mode: write PNG figures into this directory."),
    data: Optional[str] = typer.Option(
        None,
        "--data",
        help="Dataset reference, e.g. imagefolder:DIR (train/, val/, optional calib/ and unlabelled/); "
        "default for zoo and MNIST-1D models: their own data.",
    ),
    method: Optional[str] = typer.Option(
        None,
        "--method",
        help="Transfer method (see `anyteach methods`); default: chosen by the data you have, and said.",
    ),
    control: bool = typer.Option(
        True,
        "--control/--no-control",
        help="Also run the method's strongest no-teacher control on the same data and budget (reused when "
        "already run) and end with the verdict: what the teacher added beyond it. --no-control: Δ alone, which "
        "is not a transfer claim.",
    ),
    input_size: Optional[str] = typer.Option(
        None,
        "--input-size",
        help="The input size every model here was trained at, e.g. 3,32,32 (a model's own ?input_size= wins).",
    ),
    allow_chance: bool = typer.Option(
        False, "--allow-chance", help="A student or teacher at chance on the eval split is expected (a random teacher)."
    ),
    config: Optional[Path] = typer.Option(
        None,
        "--config",
        help="A YAML file of the run: student, teacher, data, "
        "name (the method) and options, as a study's method entry; flags override "
        "it.",
    ),
    log: Optional[str] = typer.Option(
        None,
        "--log",
        help="Experiment trackers, comma-separated: tensorboard, wandb, mlflow (each an optional package).",
    ),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default: under the cache)."),
    option: Optional[list[str]] = typer.Option(
        None, "--option", help="Any other option as key=value, e.g. --option beta=5 (repeatable)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different run in --out."),
    restart: bool = typer.Option(
        False,
        "--restart",
        help="Discard what --out holds of this run (e.g. a corrupt checkpoint) and train it again from scratch.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the final metrics as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live progress."),
    imports: Optional[list[str]] = typer.Option(
        None, "--import", help="A module or Python file that registers methods, imported first (repeatable)."
    ),
    options: Optional[dict] = None,
) -> None:
    """Transfer knowledge from a teacher (or several, with --mode) into a student; resumable (re-run the
    same command). Every training and method option has a flag; method defaults: `anyteach methods`."""
    from ..core.registry import import_plugins
    from ..training.transfer import default_data, transfer

    import_plugins(imports or [])
    options = {**(options or {}), **_option_pairs(option)}
    if config is not None:
        from ..training.run_config import read_run_config

        run = read_run_config(config)
        student = student if student is not None else run.student
        data = data if data is not None else run.data
        if teacher is None and run.teachers and method is not None and not get_method(method).needs_teacher:
            # the same run file serves the method and its no-teacher control
            err_console.print(f"{method} takes no teacher: the run file's teacher is not used", highlight=False)
        else:
            teacher = teacher or run.teachers or None
        method = method if method is not None else run.method
        options = {**run.options, **options}
    if student is None:
        raise AnyteachError("give the student: --student <model reference> (or student: in --config)")
    if input_size is not None:
        student = with_input_size(student, input_size)
        teacher = [with_input_size(t, input_size) for t in teacher] if teacher else teacher
    trackers = _csv(log) or []
    if distributed.launched_by_torchrun():
        from ..core.options import TrainingOptions

        device = TrainingOptions(**{k: v for k, v in options.items() if k == "device"}).device
        distributed.init_from_env(device)
    if mode is not None:
        if data is None:
            data, why = default_data(student)
            err_console.print(f"data: {data} ({why}; --data sets another)", highlight=False, soft_wrap=True)
        method = method or "kl+dp"
        if len(teacher or []) < 2:
            raise AnyteachError(
                f"--mode {mode} combines several teachers: give at least two --teacher (with one teacher, drop --mode)"
            )
        _transfer_multi(
            student,
            teacher or [],
            data,
            method,
            mode,
            curriculum,
            out,
            overwrite,
            restart,
            quiet,
            as_json,
            plots,
            options,
        )
        return
    if curriculum is not None or plots is not None:
        raise AnyteachError("--curriculum and --plots apply to several teachers: add --mode parallel|sequential|soup")
    result = transfer(
        student,
        teacher or None,
        data,
        method,
        out,
        control=control,
        allow_chance=allow_chance,
        overwrite=overwrite,
        restart=restart,
        progress=not quiet,
        log=trackers,
        **options,
    )
    if not distributed.is_main():
        return
    if as_json:
        print(json.dumps({**(result.final or {}), **({"choices": result.choices} if result.choices else {})}, indent=2))
        return
    if quiet:  # what was chosen for the user (data, method), said with the progress otherwise
        for note in result.choices:
            err_console.print(note, highlight=False, soft_wrap=True)
    console.print(transfer_summary(result))
    _print_run_note(result, result.config["method"])
    where = result.student_path or result.run_dir
    err_console.print(f"{'student' if result.student_path else 'run'}: {where}", highlight=False, soft_wrap=True)
    console.print(f"verdict: {result.verdict}", highlight=False, soft_wrap=True)


def _print_run_note(result, method: str) -> None:
    """One line when the run changed nothing: WiSE kept the original, or the student did not move."""
    from ..methods import get_method, preset_recipe
    from ..training.run_notes import run_note

    steps = next((row.get("steps") for row in reversed(result.history) if row.get("steps") is not None), None)
    note = run_note(
        result.final, get_method(method).trains, steps, result.config["training"].get("lr"), preset_recipe(method)
    )
    if note is not None:
        err_console.print(f"[yellow]{note}[/yellow]", highlight=False, soft_wrap=True)


def multi_summary(result) -> Table:
    """Per stage (or soup ingredient) and for the final student: accuracy, Δ, gain / loss, p-values."""
    table = Table(
        title=f"{result.config['method']} {result.label}: {result.config['student']['name']} <- "
        f"{', '.join(result.config['order'])}",
        caption="vs S0: against the original student; vs start: against the stage's start student",
    )
    for col in (
        "stage",
        "teacher",
        "teacher acc %",
        "acc %",
        "Δ vs S0 pp",
        "gain / loss % vs S0",
        "Δ vs start pp",
        "p gain / p loss vs S0",
    ):
        table.add_column(col, justify="left" if col in ("stage", "teacher") else "right")

    def cells(m):
        return (
            f"{m['transfer_delta']:+.2f}",
            f"{m['knowledge_gain']:.2f} / {m['knowledge_loss']:.2f}",
            f"{m['p_gain']:.2g} / {m['p_loss']:.2g}",
        )

    for row in result.stage_metrics:
        delta, flips, p = cells(row["vs_original"])
        table.add_row(
            str(row["stage"]),
            row["teacher"],
            f"{row['teacher_acc']:.2f}",
            f"{row['student_acc']:.2f}",
            delta,
            flips,
            f"{row['vs_start']['transfer_delta']:+.2f}",
            p,
        )
    f = result.final
    delta, flips, p = cells(f)
    table.add_row("final", result.mode, "", f"{f['student_acc']:.2f}", delta, flips, "", p, style="bold")
    return table


def _transfer_multi(
    student, teachers, data, method, mode, curriculum, out, overwrite, restart, quiet, as_json, plots, options
) -> None:
    from ..report.figures import multi_teacher_figures
    from ..training.multi_teacher import transfer_multi

    result = transfer_multi(
        student,
        teachers,
        data,
        method,
        mode,
        out,
        curriculum=curriculum or "given",
        overwrite=overwrite,
        restart=restart,
        progress=not quiet,
        **options,
    )
    if not distributed.is_main():
        return
    if as_json:
        print(json.dumps({"final": result.final, "stages": result.stage_metrics}, indent=2))
    else:
        console.print(multi_summary(result))
    if plots is not None:
        runs: dict[str, Any] = {result.label: result}
        if mode == "soup":  # its ingredients are the single-teacher runs
            runs.update({f"single: {row['teacher']}": run for row, run in zip(result.stage_metrics, result.stages)})
        for path in multi_teacher_figures(runs, plots):
            err_console.print(f"wrote {path}")
    err_console.print(f"student: {result.student_path}\nrun: {result.run_dir}", highlight=False, soft_wrap=True)


@app.command("push")
def push_command(
    model: Path = typer.Argument(..., help="A model saved by anyteach (e.g. a run's student.safetensors)."),
    repo_id: str = typer.Argument(..., help="Hub repository: <user or organisation>/<name>."),
    private: bool = typer.Option(False, "--private", help="Create the repository as private."),
    token: Optional[str] = typer.Option(None, "--token", help="Hub token (default: your login or HF_TOKEN)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Write the folder that would be uploaded instead (no network), and say where."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="With --dry-run: the folder to write (default: ./hub-<owner>--<name>)."
    ),
) -> None:
    """Upload a student (or any saved model) to the Hugging Face hub with a timm config.json and a model card."""
    from ..models.hub import push_to_hub, stage_push

    if dry_run:
        folder = stage_push(model, repo_id, out)
        files = ", ".join(sorted(p.name for p in folder.iterdir()))
        console.print(f"dry run: wrote {folder} ({files}); nothing was uploaded", highlight=False, soft_wrap=True)
        return
    if out is not None:
        raise AnyteachError("--out names the folder of a dry run: add --dry-run (a push writes no folder)")
    url = push_to_hub(model, repo_id, private=private, token=token)
    err_console.print(f"pushed {model} -> {url}", highlight=False, soft_wrap=True)


@app.command("methods")
def methods_command(as_json: bool = typer.Option(False, "--json", help="Print JSON rows instead of a table.")) -> None:
    """List the transfer methods with their parts and defaults."""
    from ..methods import method_table

    rows = method_table()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="transfer methods: target rule -> loss + regulariser", show_lines=True)
    table.add_column("method", no_wrap=True, style="bold")
    table.add_column("what it does")
    table.add_column("defaults", no_wrap=True)
    table.add_column("recipe (flags override)", no_wrap=True)
    for r in rows:
        parts = f"{r['target'] or '-'} -> {r['loss'] or '(no training)'}"
        if r["regulariser"]:
            parts += f" + {r['regulariser']}"
        if not r["teacher"]:
            parts += " (no teacher)"
        defaults = "\n".join(f"{k}={v}" for k, v in r["defaults"].items()) or "-"
        recipe = "\n".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["recipe"].items())
        table.add_row(r["name"], f"{parts}\n[dim]{r['description']}[/dim]", defaults, recipe)
    console.print(table)
