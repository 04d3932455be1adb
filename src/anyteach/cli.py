"""The `anyteach` command: a thin layer over the Python API (every verb has an API twin).

User errors (`AnyteachError`) are printed as one line and exit with status 2; `--debug` shows the
traceback instead.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import AnyteachError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="General knowledge transfer between any two pretrained classifiers.")
zoo_app = typer.Typer(no_args_is_help=True, help="Build and list the built-in model zoos.")
app.add_typer(zoo_app, name="zoo")

console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


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

    from .zoo import build_zoo, get_zoo

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


@zoo_app.command("list")
def zoo_list(name: str = typer.Argument("mnist1d", help="Zoo name."), seed: int = typer.Option(0),
             as_json: bool = typer.Option(False, "--json", help="Print JSON rows instead of a table.")) -> None:
    """Print name, family, parameters and eval accuracy of the zoo's built models."""
    from .zoo import get_zoo, list_zoo

    zoo = get_zoo(name, seed)
    rows = list_zoo(zoo)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    console.print(zoo_table(rows, f"zoo {name} (seed {seed}): {len(rows)}/{len(zoo.names)} built"))
    if zoo.missing():
        err_console.print(f"missing: {', '.join(zoo.missing())} (run `anyteach zoo build {name}`)")


# ---------------------------------------------------------------------------------------------
# info


@app.command()
def info(model: str = typer.Argument(..., help="Model reference: timm:<name>[@weights], zoo:<zoo>/<model>, path."),
         data: Optional[str] = typer.Option(None, help="Also measure eval accuracy on this dataset."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Resolve a model reference and print its metadata (and eval accuracy with --data)."""
    from .models import load_model

    m = load_model(model)
    out = {"reference": model, **m.info.to_dict()}
    if data is not None:
        from .predictions import predict

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
# demo


@app.command()
def demo(workers: Optional[int] = typer.Option(None, help="Worker processes (default: all cores).")) -> None:
    """The main job: build the built-in zoo (if missing) and print its table."""
    start = time.perf_counter()
    rows = build_zoo_with_progress("mnist1d", 0, workers)
    console.print(zoo_table(rows, "zoo mnist1d"))
    err_console.print(f"demo finished in {time.perf_counter() - start:.0f} s")


def main() -> None:
    try:
        app()
    except AnyteachError as e:
        if _state["debug"]:
            raise
        err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
