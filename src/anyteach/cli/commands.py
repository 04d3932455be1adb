"""The `anyteach` command: a thin layer over the Python API (every verb has an API twin).

User errors (`AnyteachError`) are printed as one line and exit with status 2; `--debug` shows the
traceback instead. Under torchrun (`torchrun --nproc-per-node N -m anyteach transfer ...`) the
`transfer` command joins the launch's process group and trains with DDP; rank 0 alone prints.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
import time
import typing
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..core import process_group as distributed
from ..core.io import disk_use, human_bytes
from ..core.errors import AnyteachError, os_error_message
from .spellings import CommandGroup
from ..core.options import METHOD_OPTIONS, PER_RUN_OPTIONS, TRAINING_OPTIONS

app = typer.Typer(cls=CommandGroup, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="General knowledge transfer between any two pretrained classifiers.")
zoo_app = typer.Typer(no_args_is_help=True, help="Build and list the built-in model zoos.")
app.add_typer(zoo_app, name="zoo")
data_app = typer.Typer(no_args_is_help=True, help="Generated datasets: export them as image folders.")
app.add_typer(data_app, name="data")

LOG_WIDTH = 160
"""Columns of the output when it is not a terminal (a log, a pipe, a batch job): wide enough that no
table cell is cut to "+0.…" as at rich's default of 80."""


def output_console(stderr: bool = False) -> Console:
    """A rich console: the terminal's width in a terminal, `LOG_WIDTH` and no colours in a log."""
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=LOG_WIDTH, no_color=True)


console = output_console()
err_console = output_console(stderr=True)
_state = {"debug": False}


def with_option_flags(*tables: dict, exclude: tuple[str, ...] = ()):
    """Decorator: add one flag per declared option (`options.Option`) to a command.

    The flags, their types and help texts come from the declarations; the command receives the
    options the user gave (not None) as one dict argument `options`.
    """

    def flag_parameter(option) -> inspect.Parameter:
        flag = option.flag
        default = "" if option.default is None else f" (default {option.default})"
        help_text = option.help[0].upper() + option.help[1:] + default + "."
        decls = [f"{flag}/--no-{flag[2:]}"] if option.type is bool else [flag]
        return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[option.type],
                                 default=typer.Option(None, *decls, help=help_text, show_default=False))

    def wrap(fn):
        hints = typing.get_type_hints(fn)
        base = [p.replace(annotation=hints.get(p.name, p.annotation))
                for p in inspect.signature(fn).parameters.values() if p.name != "options"]
        taken = {p.name for p in base}
        flags = [flag_parameter(o) for table in tables for o in table.values()
                 if o.name not in exclude and o.name not in taken]

        @functools.wraps(fn)
        def command(**kwargs):
            given = {p.name: kwargs.pop(p.name) for p in flags}
            return fn(**kwargs, options={k: v for k, v in given.items() if v is not None})

        command.__signature__ = inspect.Signature(base + flags)
        command.__annotations__ = {p.name: p.annotation for p in base + flags}
        return command

    return wrap


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks of user errors.")) -> None:
    _state["debug"] = debug


# ---------------------------------------------------------------------------------------------
# zoo


def zoo_table(rows: list[dict], title: str) -> Table:
    table = Table(title=title)
    for col, justify in (("model", "left"), ("family", "left"), ("params", "right"), ("eval acc %", "right"),
                         ("plateau Δ pp", "right"), ("train s", "right")):
        table.add_column(col, justify=justify)
    for r in sorted(rows, key=lambda r: -(r["eval_acc"] or 0)):
        table.add_row(r["name"], r["family"], f"{r['params']:,}", f"{r['eval_acc']:.2f}",
                      f"{r['plateau_delta']:+.2f}", f"{r['train_seconds']:.0f}")
    return table


def build_zoo_with_progress(name: str, seed: int = 0, workers: Optional[int] = None) -> list[dict]:
    """Build a zoo, showing a progress bar and one line per finished model."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..zoo import build_zoo, get_zoo

    zoo = get_zoo(name, seed)
    todo = len(zoo.missing())
    start = time.perf_counter()
    if todo:
        with Progress(TextColumn("[bold]building zoo {task.fields[zoo]}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err_console) as progress:
            task = progress.add_task("zoo", total=todo, zoo=name)

            def done(row: dict) -> None:
                progress.console.print(f"  {row['name']:<18} {row['family']:<12} eval {row['eval_acc']:6.2f}%  "
                                       f"({row['train_seconds']:.0f} s)")
                progress.advance(task)

            rows = build_zoo(zoo, workers=workers, on_done=done)
        err_console.print(f"built {todo} models in {time.perf_counter() - start:.0f} s -> {zoo.directory}")
    else:
        rows = build_zoo(zoo, workers=workers)
    return rows


@zoo_app.command("build")
def zoo_build(name: str = typer.Argument("mnist1d", help="Zoo name."),
              seed: int = typer.Option(0, help="Data-generation seed: an independent zoo of the same recipe."),
              workers: Optional[int] = typer.Option(None, help="Worker processes (default: all cores).")) -> None:
    """Train the zoo's missing models (cached and reused) and print its table."""
    rows = build_zoo_with_progress(name, seed, workers)
    console.print(zoo_table(rows, f"zoo {name} (seed {seed})"))


@data_app.command("export")
def data_export(data: str = typer.Argument(..., help="Dataset reference of generated images, e.g. glyphs or "
                                           "glyphs:train=2000,eval=500,seed=1."),
                out: Path = typer.Option(..., "--out", "-o", help="New directory: train/, val/ (and calib/) of "
                                         "class folders of PNG images.")) -> None:
    """Write a generated image dataset as an ImageNet-style folder, readable as `imagefolder:<out>`."""
    from ..data.references import export_imagefolder, load_dataset

    root = export_imagefolder(load_dataset(data), out)
    console.print(f"wrote {root} (read it back as imagefolder:{root})")


@zoo_app.command("list")
def zoo_list(name: str = typer.Argument("mnist1d", help="Zoo name: mnist1d (built-in) or timm (timm's registry)."),
             seed: int = typer.Option(0),
             filter: Optional[str] = typer.Option(None, "--filter", help="timm: a glob over the names, e.g. 'resnet*'."),
             pretrained: bool = typer.Option(False, "--pretrained", help="timm: list the pretrained tags "
                                             "(resnet50.a1_in1k) instead of the architectures."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON rows instead of a table.")) -> None:
    """Print name, family, parameters and eval accuracy of the zoo's built models (timm: family,
    parameters, input size, classes and top-1 where timm's bundled metadata has it; no network)."""
    from ..zoo import get_zoo, list_zoo

    if name == "timm":
        _timm_list(filter, pretrained, as_json)
        return
    if filter is not None or pretrained:
        raise AnyteachError("--filter and --pretrained list timm's zoo: anyteach zoo list timm --filter 'resnet*'")
    zoo = get_zoo(name, seed)
    rows = list_zoo(zoo)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    console.print(zoo_table(rows, f"zoo {name} (seed {seed}): {len(rows)}/{len(zoo.names)} built"))
    if zoo.missing():
        err_console.print(f"missing: {', '.join(zoo.missing())} (run `anyteach zoo build {name}`)")


def _timm_list(pattern: Optional[str], pretrained: bool, as_json: bool) -> None:
    from rich.status import Status

    from ..zoo.timm_zoo import list_timm

    with Status("listing timm's models", console=err_console) as status:
        rows = list_timm(pattern, pretrained, on_count=lambda n: status.update(
            f"counting parameters on the meta device (cached): {n}"))
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    kind = "pretrained tags" if pretrained else "architectures"
    table = Table(title=f"timm {kind}{f' matching {pattern!r}' if pattern else ''}: {len(rows)}",
                  caption="reference: timm:<name> (architectures: timm:<name>@<weights file>); top-1: where timm's "
                          "bundled metadata has it")
    for col, justify in (("model", "left"), ("family", "left"), ("params", "right"), ("input", "right"),
                         ("classes", "right"), ("top-1 %", "right")):
        table.add_column(col, justify=justify, no_wrap=col == "model")
    for r in rows:
        size = "x".join(str(v) for v in r["input_size"][1:]) if r["input_size"] else "-"
        table.add_row(r["name"], r["family"], f"{r['params']:,}" if r["params"] is not None else "-", size,
                      str(r["num_classes"] or "-"), f"{r['top1']:.2f}" if r["top1"] is not None else "-")
    console.print(table)


# ---------------------------------------------------------------------------------------------
# info


@app.command()
def info(model: str = typer.Argument(..., help="Model reference: timm:<name>[@weights], zoo:<zoo>/<model>, path."),
         data: Optional[str] = typer.Option(None, help="Also measure eval accuracy on this dataset."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Resolve a model reference and print its metadata (and eval accuracy with --data)."""
    from ..models.references import load_model

    m = load_model(model)
    out = {"reference": model, **m.info.to_dict()}
    if data is not None:
        from ..data.predictions import predict

        out["eval_acc"] = round(predict(m, data).accuracy, 2)
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
def flips(teacher: Optional[str] = typer.Argument(None, help="Teacher model reference (pair mode)."),
          student: Optional[str] = typer.Argument(None, help="Student model reference (pair mode)."),
          data: str = typer.Option(..., "--data", help="Dataset reference, e.g. mnist1d."),
          zoo: Optional[str] = typer.Option(None, "--zoo", help="Analyse every ordered pair of this built-in zoo."),
          model: Optional[list[str]] = typer.Option(None, "--model", help="Analyse every ordered pair of these "
                                                    "models (repeat the option)."),
          split: str = typer.Option("eval", help="Split to measure on."),
          top_p: str = typer.Option("2,5,20,50", "--top-p", help="Top-p% class shares, comma-separated."),
          as_json: bool = typer.Option(False, "--json", help="Print the results as JSON instead of tables."),
          json_path: Optional[Path] = typer.Option(None, "--json-out", help="Write the results as JSON here."),
          csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write per-class rows (pair) or per-pair "
                                                  "rows (zoo) as CSV here."),
          plots: Optional[Path] = typer.Option(None, "--plots", help="Write PNG figures into this directory."),
          plot_student: Optional[str] = typer.Option(None, "--plot-student", help="Student of the per-class "
                                                     "figure (zoo mode; default: the median-accuracy model)."),
          semantic: bool = typer.Option(False, "--semantic", help="Pair mode: semantic relatedness of the top "
                                        "classes (needs anyteach[semantic]).")) -> None:
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
        result = complementarity.analyze_zoo(zoo if zoo is not None else list(model), data, split, top_p=shares,
                                             on_model=lambda ref: err_console.print(f"  predictions: {ref}"))
        _print_json(result.matrices()) if as_json else _print_zoo(result)
        _save_analysis(result, json_path, csv_path, plots and (lambda: figures.zoo_figures(result, plots,
                                                                                      student=plot_student)))
        err_console.print(f"{result.num_models} models, {result.num_models * (result.num_models - 1)} ordered pairs "
                          f"in {time.perf_counter() - start:.1f} s")
        return
    if teacher is None or student is None:
        raise AnyteachError("give TEACHER and STUDENT model references, or --zoo NAME, or --model REF (repeated)")
    pair = complementarity.analyze_pair(teacher, student, data, split, top_p=shares, semantic=semantic)
    _print_json(pair.as_dict()) if as_json else _print_pair(pair)
    _save_analysis(pair, json_path, csv_path, plots and (lambda: figures.pair_figures(pair, plots)))


def _print_json(obj) -> None:
    from ..core.io import json_ready

    print(json.dumps(json_ready(obj), indent=2, allow_nan=False))


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
    rows = [("teacher accuracy", f"{pair.teacher_acc:.2f}%"), ("student accuracy", f"{pair.student_acc:.2f}%"),
            ("complementary knowledge (positive flips)", f"{pair.positive_flips:.2f}% of samples"),
            ("negative flips", f"{pair.negative_flips:.2f}% of samples"),
            ("entropy of per-class flips", f"{pair.entropy:.3f} (uniform ln {pair.num_classes} = "
                                           f"{pair.uniform_entropy:.3f})")]
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
    for col, justify in (("student", "left"), ("acc %", "right"), ("min", "right"), ("from teacher", "left"),
                         ("median", "right"), ("max", "right"), ("from teacher", "left"), ("entropy", "right")):
        table.add_column(col, justify=justify)
    for s in np.argsort(-result.accuracy, kind="stable"):
        others = [t for t in range(result.num_models) if t != s]
        values = result.positive_flips[s, others]
        low, high = others[int(np.argmin(values))], others[int(np.argmax(values))]
        table.add_row(short(result.models[s]), f"{result.accuracy[s]:.2f}", f"{values.min():.2f}",
                      short(result.models[low]), f"{np.median(values):.2f}", f"{values.max():.2f}",
                      short(result.models[high]), f"{np.nanmedian(result.entropy[s, others]):.3f}")
    console.print(table)
    student, teacher, value = result.minimum()
    off = result.off_diagonal()
    console.print(f"minimum complementary knowledge: {value:.2f}% (teacher {short(teacher)} -> student "
                  f"{short(student)}); median over pairs {np.median(result.positive_flips[off]):.2f}%")
    console.print(f"entropy of per-class flips: median {np.nanmedian(result.entropy[off]):.3f}, range "
                  f"{np.nanmin(result.entropy[off]):.3f}-{np.nanmax(result.entropy[off]):.3f} "
                  f"(uniform ln {result.num_classes} = {result.uniform_entropy:.3f})")


# ---------------------------------------------------------------------------------------------
# study, summary, report


def _csv(text: Optional[str]) -> Optional[list[str]]:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def summary_table(frame, title: str, key: str = "method") -> Table:
    """A rich table of aggregate rows (`anyteach.aggregate.METRIC_COLUMNS`)."""
    from ..report.aggregate import SIGNIFICANCE

    table = Table(title=title, caption="succ.: median over students of the per-student success rate (Δ > 0); "
                  f"pooled: over all runs; sig+ / sig−: runs with a significant gain / harm (p < {SIGNIFICANCE:g}); "
                  "avail.: Δ of "
                  "the student–teacher ensemble; taken: ΣΔ / Σ avail. over runs with something to take")
    columns = [(key, key, "{}"), ("runs", "runs", "{:d}"), ("succ. %", "median_success_rate", "{:.1f}"),
               ("pooled %", "pooled_success_rate", "{:.1f}"), ("Δ pp", "mean_delta", "{:+.2f}"),
               ("gain %", "mean_gain", "{:.2f}"), ("loss %", "mean_loss", "{:.2f}"),
               ("sig+ %", "significant_gain_rate", "{:.0f}"), ("sig− %", "significant_harm_rate", "{:.0f}"),
               ("avail. pp", "mean_ensemble_delta", "{:+.2f}"), ("taken %", "pooled_efficiency", "{:.0f}")]
    for header, _, _ in columns:
        table.add_column(header, justify="left" if header == key else "right", no_wrap=header == key)
    for row in frame.to_dict("records"):
        if not row.get("runs"):
            continue
        table.add_row(*[fmt.format(int(row[col]) if fmt == "{:d}" else row[col]) if row[col] == row[col] else "-"
                        for _, col, fmt in columns])
    return table


def print_summary(study_dir: Path) -> None:
    from ..report.aggregate import CONTROL_METHOD, SELF_CONTROL, summarize

    summary = summarize(study_dir)
    summary.require_runs(study_dir)
    console.print(summary_table(summary.by_method, f"study {study_dir}: per method"))
    for method in summary.methods:
        part = summary.by_bucket[summary.by_bucket["method"] == method]
        if part["runs"].sum():
            console.print(summary_table(part, f"{method}: per teacher-strength bucket (acc(T) − acc(S0), pp)",
                                        key="bucket"))
    for name, paired in ((CONTROL_METHOD, summary.vs_control), (SELF_CONTROL, summary.vs_self)):
        if not len(paired):
            continue
        table = Table(title=f"against the {name} control, paired by student, seed and budget",
                      caption="Δ beyond control: each run's Δ minus its student's control Δ (a control of the same "
                              "data and budget: column control); p: one-sided sign test over students")
        for header in ("method", "control", "runs", "Δ beyond control pp", "runs above control %",
                       "students better / worse", "p better", "p worse"):
            table.add_column(header, justify="left" if header in ("method", "control") else "right")
        for r in paired.to_dict("records"):
            table.add_row(r["method"], r["control"], str(r["paired_runs"]), f"{r['mean_delta_vs_control']:+.2f}",
                          f"{r['beats_control_rate']:.0f}", f"{r['students_better']} / {r['students_worse']}",
                          f"{r['p_better_than_control']:.3g}", f"{r['p_worse_than_control']:.3g}")
        console.print(table)
    from ..report.findings import verdict

    for sentence in verdict(summary):  # each with its sample size; no verdict below findings.MIN_STUDENTS
        console.print(sentence.replace("**", "").replace("`", ""), highlight=False, soft_wrap=True)
    err_console.print(summary.status_line(), highlight=False)


@app.command()
@with_option_flags(TRAINING_OPTIONS, METHOD_OPTIONS, exclude=PER_RUN_OPTIONS)
def study(spec: Optional[Path] = typer.Argument(None, help="Study definition (YAML); flags override its keys."),
          out: Path = typer.Option(..., "--out", "-o", help="Study directory (store, run directories, report)."),
          zoo: Optional[str] = typer.Option(None, help="Use a built-in zoo's models (and its data), e.g. mnist1d."),
          models: Optional[str] = typer.Option(None, help="Comma-separated model references (instead of --zoo)."),
          data: Optional[str] = typer.Option(None, help="Dataset reference (default: the zoo's)."),
          pairs: Optional[int] = typer.Option(None, help="Draw this many random ordered pairs (default: all)."),
          balanced: Optional[bool] = typer.Option(None, "--balanced/--unbalanced",
                                                  help="Balance the drawn pairs over teacher-strength buckets."),
          pair_seed: Optional[int] = typer.Option(None, "--pair-seed", help="Seed of the pair draw (the runs' "
                                                  "seeds are --seeds)."),
          methods: Optional[str] = typer.Option(None, help="Comma-separated methods, e.g. kl,kl+dp,xe."),
          seeds: Optional[str] = typer.Option(None, help="Comma-separated transfer seeds (default: 0)."),
          workers: Optional[int] = typer.Option(None, help="Local worker processes (1: in-process)."),
          executor: Optional[str] = typer.Option(None, help="local (default) or ray."),
          address: Optional[str] = typer.Option(None, help="Address of an existing Ray cluster."),
          num_gpus: Optional[float] = typer.Option(None, help="GPUs per run (Ray)."),
          name: Optional[str] = typer.Option(None, help="Study name for the report."),
          imports: Optional[list[str]] = typer.Option(None, "--import", help="A module or Python file that "
                                                      "registers methods; imported by every worker (repeatable)."),
          retry_failed: bool = typer.Option(False, "--retry-failed", help="Also run again the runs that diverged "
                                            "or whose checkpoint was corrupt (restarted from scratch)."),
          log: Optional[str] = typer.Option(None, "--log", help="Experiment trackers for every run, comma-separated: "
                                            "tensorboard, wandb, mlflow (each an optional package)."),
          options: Optional[dict] = None) -> None:
    """Run a transfer study (pairs x methods x seeds) into a resumable SQLite store; re-run to resume.

    The training and method option flags set the study's recipe: options of every run."""
    from ..study.driver import build_study_spec, run_study

    if zoo is not None and models is not None:
        raise AnyteachError("give --zoo or --models, not both")
    definition = build_study_spec(spec, models=zoo if zoo is not None else _csv(models), data=data, pairs=pairs,
                                  balanced=balanced, pair_seed=pair_seed, methods=_csv(methods), seeds=_csv(seeds),
                                  recipe=options, workers=workers, executor=executor, address=address,
                                  resources={"num_gpus": num_gpus} if num_gpus is not None else None, name=name,
                                  imports=imports)
    from ..study.notices import study_notices

    for notice in study_notices(definition):
        err_console.print(f"[yellow]note:[/yellow] {notice}", highlight=False, soft_wrap=True)
    try:
        outcome = run_study(definition, out, retry_failed=retry_failed, log=_csv(log) or ())
    except KeyboardInterrupt:
        err_console.print(f"[yellow]interrupted[/yellow]: finished runs are in {out}/study.sqlite; run the same "
                          "command again to resume", highlight=False)
        raise typer.Exit(130) from None
    err_console.print(f"{outcome.finished} runs finished now, {outcome.skipped} were already done, "
                      f"{len(outcome.failed)} failed; {outcome.seconds:.0f} s -> {out} "
                      f"({human_bytes(disk_use(out))} on disk)", highlight=False)
    if outcome.skipped + outcome.finished:
        print_summary(Path(out))
    if outcome.held_back:
        err_console.print(f"[yellow]{len(outcome.held_back)} runs failed earlier[/yellow] (diverged or a corrupt "
                          "checkpoint) and were not run again; --retry-failed retries them", highlight=False)
    if outcome.failed:
        err_console.print(f"[red]{len(outcome.failed)} runs failed[/red] (first: {outcome.failed[0][1].splitlines()[0]}); "
                          "crashed runs are retried by the same command, diverged ones with --retry-failed",
                          highlight=False)
    if outcome.failed or outcome.held_back:
        raise typer.Exit(1)
    err_console.print(f"next: anyteach report {out}")


@app.command()
def summary(study_dir: Path = typer.Argument(..., help="Study directory."),
            as_json: bool = typer.Option(False, "--json", help="Print one JSON object per method.")) -> None:
    """Aggregate a study: success rates, deltas, gains, losses per method and teacher-strength bucket."""
    if as_json:
        from ..report.aggregate import summarize

        result = summarize(study_dir)
        result.require_runs(study_dir)
        print(result.to_json())
        return
    print_summary(study_dir)


@app.command()
def report(study_dir: Path = typer.Argument(..., help="Study directory."),
           out: Optional[Path] = typer.Option(None, "--out", help="Where report.md, report.html and figures/ go "
                                              "(default: the study directory; needed when it is read-only).")) -> None:
    """Write report.md, a self-contained report.html and the study's PNG figures (into the study directory)."""
    from ..report.aggregate import summarize
    from ..report.document import headline_text, write_report

    result = summarize(study_dir)
    result.require_runs(study_dir)
    files = write_report(study_dir, result, out=out)
    console.print(headline_text(result), highlight=False, soft_wrap=True)
    err_console.print(f"report: {files.markdown}\n        {files.html}\nfigures: {len(files.figures)} in "
                      f"{files.figures[0].parent if files.figures else study_dir}")


# ---------------------------------------------------------------------------------------------
# transfer


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
    table = Table(title=f"{result.config['method']}: {result.config['student']['name']} <- "
                        f"{', '.join(t['name'] for t in result.config['teachers']) or 'no teacher'}")
    table.add_column("metric")
    table.add_column("value", justify="right")

    def num(value, fmt):
        return "-" if value is None else format(value, fmt)

    rows = [("student acc before → after %", f"{f['student_acc_before']:.2f} → {f['student_acc']:.2f}"),
            ("teacher acc %", num(f.get("teacher_acc"), ".2f")),
            ("transfer delta pp", f"{f['transfer_delta']:+.2f}"),
            ("knowledge gain / loss %", f"{f['knowledge_gain']:.2f} / {f['knowledge_loss']:.2f}"),
            ("gain / loss flips", f"{f['gain_count']} / {f['loss_count']}"),
            ("p (gain) / p (loss)", f"{f['p_gain']:.2g} / {f['p_loss']:.2g}"),
            ("transfer rate %", num(f.get("transfer_rate"), ".2f")),
            ("routed to teacher %", num(f.get("routed_to_teacher"), ".2f"))]
    for name, value in rows:
        table.add_row(name, value)
    return table


@app.command("transfer")
@with_option_flags(TRAINING_OPTIONS, METHOD_OPTIONS)
def transfer_command(
    student: Optional[str] = typer.Option(None, "--student", help="Student model reference."),
    teacher: Optional[list[str]] = typer.Option(None, "--teacher", help="Teacher model reference; repeat it for "
                                                "several (methods that route between teachers: kl+dp, kl+dp-u)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="Several teachers: parallel (one run routing between "
                                       "them), sequential (one stage per teacher) or soup (averaged students)."),
    curriculum: Optional[str] = typer.Option(None, "--curriculum", help="Order of the sequential stages: given "
                                             "(default), asc or desc teacher accuracy on the eval split."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="With --mode: write PNG figures into this directory."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset reference (required, except for MNIST-1D "
                                       "models: mnist1d)."),
    method: Optional[str] = typer.Option(None, "--method", help="Transfer method (see `anyteach methods`; "
                                         "default kl+dp)."),
    config: Optional[Path] = typer.Option(None, "--config", help="A YAML file of the run: student, teacher, data, "
                                          "name (the method) and options, as a study's method entry; flags override "
                                          "it."),
    log: Optional[str] = typer.Option(None, "--log", help="Experiment trackers, comma-separated: tensorboard, "
                                      "wandb, mlflow (each an optional package)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default: under the cache)."),
    option: Optional[list[str]] = typer.Option(None, "--option",
                                               help="Any other option as key=value, e.g. --option beta=5 "
                                                    "(repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different run in --out."),
    restart: bool = typer.Option(False, "--restart", help="Discard what --out holds of this run (e.g. a corrupt "
                                 "checkpoint) and train it again from scratch."),
    as_json: bool = typer.Option(False, "--json", help="Print the final metrics as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live progress."),
    imports: Optional[list[str]] = typer.Option(None, "--import", help="A module or Python file that registers "
                                                "methods, imported first (repeatable)."),
    options: Optional[dict] = None,
) -> None:
    """Transfer knowledge from a teacher (or several, with --mode) into a student; resumable (re-run the
    same command). Every training and method option has a flag; method defaults: `anyteach methods`."""
    from ..core.registry import import_plugins
    from ..training.transfer import transfer

    import_plugins(imports or [])
    options = {**options, **_option_pairs(option)}
    if config is not None:
        from ..training.run_config import read_run_config

        run = read_run_config(config)
        student = student if student is not None else run.student
        teacher = teacher or run.teachers or None
        data = data if data is not None else run.data
        method = method if method is not None else run.method
        options = {**run.options, **options}
    if student is None:
        raise AnyteachError("give the student: --student <model reference> (or student: in --config)")
    method = method or "kl+dp"
    data = data if data is not None else _default_data(student)
    trackers = _csv(log) or []
    if distributed.launched_by_torchrun():
        from ..core.options import TrainingOptions

        device = TrainingOptions(**{k: v for k, v in options.items() if k == "device"}).device
        distributed.init_from_env(device)
    if mode is not None:
        if len(teacher or []) < 2:
            raise AnyteachError(f"--mode {mode} combines several teachers: give at least two --teacher (with one "
                                "teacher, drop --mode)")
        _transfer_multi(student, teacher or [], data, method, mode, curriculum, out, overwrite, restart, quiet, as_json,
                        plots, options)
        return
    if curriculum is not None or plots is not None:
        raise AnyteachError("--curriculum and --plots apply to several teachers: add --mode parallel|sequential|soup")
    result = transfer(student, teacher or None, data, method, out, overwrite=overwrite, restart=restart,
                      progress=not quiet, log=trackers, **options)
    if not distributed.is_main():
        return
    if as_json:
        print(json.dumps(result.final, indent=2))
        return
    console.print(transfer_summary(result))
    _print_run_note(result, method)
    where = result.student_path or result.run_dir
    err_console.print(f"{'student' if result.student_path else 'run'}: {where}", highlight=False, soft_wrap=True)


def _print_run_note(result, method: str) -> None:
    """One line when the run changed nothing: WiSE kept the original, or the student did not move."""
    from ..methods import get_method, preset_recipe
    from ..training.run_notes import run_note

    steps = next((row.get("steps") for row in reversed(result.history) if row.get("steps") is not None), None)
    note = run_note(result.final, get_method(method).trains, steps, result.config["training"].get("lr"),
                    preset_recipe(method))
    if note is not None:
        err_console.print(f"[yellow]{note}[/yellow]", highlight=False, soft_wrap=True)


def _default_data(student: str) -> str:
    """`mnist1d` for a student that takes MNIST-1D signals; any other student needs `--data`.

    Raises:
        AnyteachError: the student is an image model (or any model not made for MNIST-1D).
    """
    from ..models.references import load_model

    if student.startswith("zoo:"):  # a zoo member: the data its zoo was trained on
        from ..zoo import get_zoo
        from ..zoo.zoos import parse_zoo_ref

        name, seed, _ = parse_zoo_ref(student)
        data = get_zoo(name, seed).data
        err_console.print(f"data: {data} (zoo {name}'s own; --data sets another)", highlight=False, soft_wrap=True)
        return data
    size = load_model(student).info.preprocessing.input_size
    if size is not None and len(size) > 1:
        raise AnyteachError(f"give the data: --data <dataset reference> (e.g. --data imagefolder:/path/to/images); "
                            f"the student {student} takes inputs of shape {tuple(size)}, and the default dataset, "
                            "mnist1d, is for MNIST-1D models")
    err_console.print("data: mnist1d (the default for MNIST-1D models; --data sets another)", highlight=False)
    return "mnist1d"


def multi_summary(result) -> Table:
    """Per stage (or soup ingredient) and for the final student: accuracy, Δ, gain / loss, p-values."""
    table = Table(title=f"{result.config['method']} {result.label}: {result.config['student']['name']} <- "
                        f"{', '.join(result.config['order'])}",
                  caption="vs S0: against the original student; vs start: against the stage's start student")
    for col in ("stage", "teacher", "teacher acc %", "acc %", "Δ vs S0 pp", "gain / loss % vs S0",
                "Δ vs start pp", "p gain / p loss vs S0"):
        table.add_column(col, justify="left" if col in ("stage", "teacher") else "right")

    def cells(m):
        return (f"{m['transfer_delta']:+.2f}", f"{m['knowledge_gain']:.2f} / {m['knowledge_loss']:.2f}",
                f"{m['p_gain']:.2g} / {m['p_loss']:.2g}")

    for row in result.stage_metrics:
        delta, flips, p = cells(row["vs_original"])
        table.add_row(str(row["stage"]), row["teacher"], f"{row['teacher_acc']:.2f}", f"{row['student_acc']:.2f}",
                      delta, flips, f"{row['vs_start']['transfer_delta']:+.2f}", p)
    f = result.final
    delta, flips, p = cells(f)
    table.add_row("final", result.mode, "", f"{f['student_acc']:.2f}", delta, flips, "", p, style="bold")
    return table


def _transfer_multi(student, teachers, data, method, mode, curriculum, out, overwrite, restart, quiet, as_json, plots,
                    options) -> None:
    from ..training.multi_teacher import transfer_multi
    from ..report.figures import multi_teacher_figures

    result = transfer_multi(student, teachers, data, method, mode, out, curriculum=curriculum or "given",
                            overwrite=overwrite, restart=restart, progress=not quiet, **options)
    if not distributed.is_main():
        return
    if as_json:
        print(json.dumps({"final": result.final, "stages": result.stage_metrics}, indent=2))
    else:
        console.print(multi_summary(result))
    if plots is not None:
        runs = {result.label: result}
        if mode == "soup":  # its ingredients are the single-teacher runs
            runs.update({f"single: {row['teacher']}": run for row, run in zip(result.stage_metrics, result.stages)})
        for path in multi_teacher_figures(runs, plots):
            err_console.print(f"wrote {path}")
    err_console.print(f"student: {result.student_path}\nrun: {result.run_dir}", highlight=False, soft_wrap=True)


@app.command("push")
def push_command(model: Path = typer.Argument(..., help="A model saved by anyteach (e.g. a run's student.safetensors)."),
                 repo_id: str = typer.Argument(..., help="Hub repository: <user or organisation>/<name>."),
                 private: bool = typer.Option(False, "--private", help="Create the repository as private."),
                 token: Optional[str] = typer.Option(None, "--token", help="Hub token (default: your login or "
                                                     "HF_TOKEN).")) -> None:
    """Upload a student (or any saved model) to the Hugging Face hub with a timm config.json and a model card."""
    from ..models.hub import push_to_hub

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


@app.command()
def teachers(student: str = typer.Argument(..., help="Student model reference (or its name in --zoo)."),
             zoo: str = typer.Option(..., "--zoo", help="Candidate teachers: a zoo (mnist1d, zoo:mnist1d@1) or "
                                     "comma-separated model references."),
             data: str = typer.Option(..., "--data", help="Dataset with a calib split, e.g. mnist1d:calib=5000 "
                                      "(every signal is measured there, never on eval)."),
             method: Optional[str] = typer.Option(None, "--method", help="Method whose gain is forecast "
                                                  "(default: the teaching preset pl+ens+wise)."),
             fit: Optional[Path] = typer.Option(None, "--fit", help="Re-fit the forecaster on this finished study "
                                                "first (written to STUDY_DIR/forecaster.json)."),
             forecaster: Optional[Path] = typer.Option(None, "--forecaster", help="A forecaster file (default: the "
                                                       "shipped one)."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
             plots: Optional[Path] = typer.Option(None, "--plots", help="Write a PNG of the ranking here.")) -> None:
    """Rank every candidate teacher of a student by the forecast gain beyond the no-teacher control."""
    from rich import box

    from ..analysis.forecast import DEFAULT_METHOD, Forecaster, ranking_figure, rank_teachers, shipped_forecaster
    from ..models.references import display_name as short

    chosen = Forecaster.load(forecaster) if forecaster is not None else shipped_forecaster()
    if fit is not None:
        from ..report.teacher_choice import fit_from_study

        chosen = fit_from_study(fit, data, base=chosen)
        err_console.print(f"re-fitted on {fit}: {chosen.save(fit / 'forecaster.json')}", highlight=False)
    ranking = rank_teachers(student, zoo, data, method=method or DEFAULT_METHOD, forecaster=chosen,
                            on_model=None if as_json else lambda ref: err_console.print(f"  predictions: {ref}"))
    if plots is not None:
        err_console.print(f"wrote {ranking_figure(ranking, plots / 'teachers.png')}")
    if as_json:
        print(json.dumps(ranking.as_dict(), indent=2))
        return
    t = ranking.table
    table = Table(title=f"teachers for {short(ranking.student)}: forecast Δ of {ranking.method} beyond "
                        f"{ranking.control} (signals on the calib split of {ranking.data})")
    why = {"available_gain": "avail.", "complementary_knowledge": "compl.", "accuracy_difference": "acc. gap",
           "log_available_gain": "avail.", "log_available_gain_x_student_log_size": "avail.",
           "student_log_size": "size", "student_overconfidence": "overconf."}
    table.box, table.padding, table.pad_edge, table.collapse_padding = box.SIMPLE_HEAD, (0, 0), False, True
    for col, justify in (("#", "right"), ("teacher", "left"), ("acc %", "right"), ("strength", "left"),
                         ("compl. %", "right"), ("avail. pp", "right"), ("forecast pp", "right"), ("why", "left")):
        table.add_column(col, justify=justify, no_wrap=True, min_width=len(col))
    for r in t.itertuples():
        table.add_row(str(r.rank), short(r.teacher), f"{r.teacher_acc:.2f}", r.bucket,
                      f"{r.complementary_knowledge:.2f}", f"{r.available_gain:+.2f}",
                      f"{r.forecast:+.2f} ±{ranking.forecast.half_width:.2f}" + ("*" if r.extrapolated else ""),
                      why.get(r.top_signal, r.top_signal))
    console.print(table)
    if t["extrapolated"].any():
        console.print(f"* {int(t['extrapolated'].sum())} of {len(t)} forecasts are extrapolated: "
                      f"{ranking.forecast.extrapolation_note(t)}. Read their order, not their size in pp; re-fit "
                      "on a finished study of your own models with --fit STUDY_DIR.", highlight=False, soft_wrap=True)
    console.print(ranking.verdict(), highlight=False, soft_wrap=True)
    console.print(f"student accuracy {t['student_acc'].iloc[0]:.2f}% (calib); forecaster: "
                  f"{ranking.forecast.sentence()}; {ranking.seconds:.1f} s", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------
# demo


@app.command()
def demo(out: Path = typer.Option(Path("anyteach-demo"), "--out", "-o", help="Output directory (complementarity "
                                    "analysis, study, report); re-running resumes the study."),
         workers: Optional[int] = typer.Option(None, help="Worker processes for the zoo build and the study "
                                               "(default: all cores)."),
         zoo: str = typer.Option("mnist1d", "--zoo", help="The built-in zoo: mnist1d, or glyphs (timm models on "
                                 "generated images; its report checks the MNIST-1D conclusions).")) -> None:
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
    console.print(f"\nreport: {result.report_html}\n        {result.report_markdown}\n"
                  f"complementarity figures and tables: {out / 'complementarity'}")
    err_console.print(f"demo finished in {time.perf_counter() - start:.0f} s")


def _click_errors() -> tuple[type, type]:
    """Click's exception base and its "no arguments: show the help" error, as the click that typer
    runs on defines them (typer 0.29 vendors its own copy of click)."""
    base = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    no_args = getattr(sys.modules[base.__module__], "NoArgsIsHelpError", None) or type("_Never", (Exception,), {})
    return base, no_args


def main() -> None:
    click_error, no_args = _click_errors()
    try:
        code = app(standalone_mode=False, prog_name="anyteach")  # click's own errors (a flag's value, an unknown flag) come here
        if isinstance(code, int) and code:
            sys.exit(code)
    except no_args as e:  # `anyteach` or a group alone: its help, as click shows it
        e.show()
        sys.exit(e.exit_code)
    except click_error as e:  # one line like every other error: the message and where the help is
        context = getattr(e, "ctx", None)
        where = f" (see `{context.command_path} --help`)" if context is not None else ""
        _fail(" ".join(e.format_message().split()) + where, e.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except SystemExit as e:
        if distributed.active():
            _leave_process_group(e.code if isinstance(e.code, int) else int(e.code is not None))
        raise
    except AnyteachError as e:
        if _state["debug"]:
            raise
        _fail(str(e), e.exit_code)
    except OSError as e:  # a path the user gave: unwritable, a file where a directory belongs, a full disk
        if _state["debug"] or e.errno is None:
            raise
        _fail(*os_error_message(e))


def _fail(message: str, code: int) -> None:
    if distributed.is_main():  # under torchrun every rank raises the same error: print it once
        err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    if distributed.active():
        _leave_process_group(code)
    sys.exit(code)


def _leave_process_group(code: int) -> None:
    """End a torchrun rank: wait for the others (after success), flush, and exit without tearing the
    process group down. Every file is written (atomically) by now; torch's gloo teardown, in
    destroy_process_group or at interpreter exit, aborts a process now and then (seen in about 1 of
    8 launches of a script of four DDP runs), which would turn a finished run into a failed launch."""
    import os

    if code == 0:
        distributed.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
