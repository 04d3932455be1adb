"""`anyteach zoo build|list` and `anyteach data export`: the built-in zoos and generated datasets."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..core.errors import AnyteachError
from .app import console, data_app, err_console, zoo_app


def zoo_table(rows: list[dict], title: str) -> Table:
    table = Table(title=title)
    for col, justify in (
        ("model", "left"),
        ("family", "left"),
        ("params", "right"),
        ("eval acc %", "right"),
        ("plateau Δ pp", "right"),
        ("train s", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]  # left/right
    for r in sorted(rows, key=lambda r: -(r["eval_acc"] or 0)):
        table.add_row(
            r["name"],
            r["family"],
            f"{r['params']:,}",
            f"{r['eval_acc']:.2f}",
            f"{r['plateau_delta']:+.2f}",
            f"{r['train_seconds']:.0f}",
        )
    return table


def build_zoo_with_progress(name: str, seed: int = 0, workers: Optional[int] = None) -> list[dict]:
    """Build a zoo: first how many models it will train, then one line per finished model (with its
    count, `[3/8]`), and in a terminal a progress bar."""
    import os

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from ..zoo import build_zoo, get_zoo

    zoo = get_zoo(name, seed)
    todo = len(zoo.missing())
    if not todo:
        return build_zoo(zoo, workers=workers)
    start = time.perf_counter()
    cores = min(workers or os.cpu_count() or 1, todo)
    built = len(zoo.names) - todo
    err_console.print(
        f"zoo {name} (seed {seed}): {todo} of {len(zoo.names)} models to train"
        + (f" ({built} already built)" if built else "")
        + f", {cores} at a time",
        highlight=False,
        soft_wrap=True,
    )
    count = 0
    with Progress(
        TextColumn("[bold]building zoo {task.fields[zoo]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not err_console.is_terminal,  # in a log: the lines below, no bar
    ) as progress:
        task = progress.add_task("zoo", total=todo, zoo=name)

        def done(row: dict) -> None:
            nonlocal count
            count += 1
            progress.console.print(
                f"  [{count}/{todo}] {row['name']:<26} {row['family']:<12} eval {row['eval_acc']:6.2f}%  "
                f"({row['train_seconds']:.0f} s)",
                highlight=False,
            )
            progress.advance(task)

        rows = build_zoo(zoo, workers=workers, on_done=done)
    err_console.print(f"built {todo} models in {time.perf_counter() - start:.0f} s -> {zoo.directory}")
    return rows


@zoo_app.command("build")
def zoo_build(
    name: str = typer.Argument("mnist1d", help="Zoo name."),
    seed: int = typer.Option(0, help="Data-generation seed: an independent zoo of the same recipe."),
    workers: Optional[int] = typer.Option(None, help="Worker processes (default: all cores)."),
) -> None:
    """Train the zoo's missing models (cached and reused) and print its table."""
    rows = build_zoo_with_progress(name, seed, workers)
    console.print(zoo_table(rows, f"zoo {name} (seed {seed})"))


@data_app.command("export")
def data_export(
    data: Optional[str] = typer.Argument(
        None, help="Dataset reference of generated images, e.g. glyphs or glyphs:train=2000,eval=500,seed=1."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="New directory: train/, val/ (and calib/) of class folders of PNG images."
    ),
    zoo: Optional[str] = typer.Option(
        None, "--zoo", help="Export the draw a built-in zoo was trained on: glyphs, or glyphs@<seed> (instead of DATA)."
    ),
) -> None:
    """Write a generated image dataset as an ImageNet-style folder, readable as `imagefolder:<out>`."""
    from ..data.references import export_imagefolder, load_dataset
    from ..zoo import zoo_data

    if (data is None) == (zoo is None):
        raise AnyteachError(
            "give the dataset to export: a reference (anyteach data export glyphs --out DIR) or the zoo whose "
            "training draw to write (anyteach data export --zoo glyphs --out DIR), not both"
        )
    ref, why = zoo_data(zoo) if zoo is not None else (str(data), None)
    dataset = load_dataset(ref)
    root = export_imagefolder(dataset, out)
    sizes = ", ".join(f"{folder} {dataset.size(split)}" for split, folder in _export_folders(dataset))
    console.print(
        f"wrote {root}: the draw {dataset.ref}{f' ({why})' if why else ''}; {sizes} images "
        f"(read it back as imagefolder:{root})",
        highlight=False,
        soft_wrap=True,
    )
    if zoo is None:
        note = _other_draw_note(dataset)
        if note:
            err_console.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)


def _export_folders(dataset) -> list[tuple[str, str]]:
    """The splits `export_imagefolder` writes and their folders."""
    return [("train", "train"), ("eval", "val")] + ([("calib", "calib")] if dataset.has_split("calib") else [])


def _other_draw_note(dataset) -> Optional[str]:
    """A note when an exported draw is not the one the built-in zoo of its kind was trained on."""
    from ..data.references import load_dataset
    from ..zoo import ZOOS, get_zoo

    if dataset.name not in ZOOS:
        return None
    seed = getattr(dataset, "seed", 0)
    zoo = get_zoo(dataset.name, seed)
    trained = load_dataset(zoo.data)  # the same draw: the same splits, each of the same images
    splits = [split for split, _ in _export_folders(trained)]
    if splits == [split for split, _ in _export_folders(dataset)] and all(
        trained.split_identity(split) == dataset.split_identity(split) for split in splits
    ):
        return None
    at = f"@{seed}" if seed else ""
    return (
        f"this is not the draw the {dataset.name} zoo (seed {seed}) was trained on ({zoo.data}): its models "
        f"have seen none of these images; for that draw: anyteach data export --zoo {dataset.name}{at} --out DIR"
    )


@zoo_app.command("list")
def zoo_list(
    name: str = typer.Argument("mnist1d", help="Zoo name: mnist1d (built-in) or timm (timm's registry)."),
    seed: int = typer.Option(0),
    filter: Optional[str] = typer.Option(None, "--filter", help="timm: a glob over the names, e.g. 'resnet*'."),
    pretrained: bool = typer.Option(
        False, "--pretrained", help="timm: list the pretrained tags (resnet50.a1_in1k) instead of the architectures."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON rows instead of a table."),
) -> None:
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
        rows = list_timm(
            pattern,
            pretrained,
            on_count=lambda n: status.update(f"counting parameters on the meta device (cached): {n}"),
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    kind = "pretrained tags" if pretrained else "architectures"
    table = Table(
        title=f"timm {kind}{f' matching {pattern!r}' if pattern else ''}: {len(rows)}",
        caption="reference: timm:<name> (architectures: timm:<name>@<weights file>); top-1: where timm's "
        "bundled metadata has it",
    )
    for col, justify in (
        ("model", "left"),
        ("family", "left"),
        ("params", "right"),
        ("input", "right"),
        ("classes", "right"),
        ("top-1 %", "right"),
    ):
        table.add_column(col, justify=justify, no_wrap=col == "model")  # type: ignore[arg-type]
    for r in rows:
        size = "x".join(str(v) for v in r["input_size"][1:]) if r["input_size"] else "-"
        table.add_row(
            r["name"],
            r["family"],
            f"{r['params']:,}" if r["params"] is not None else "-",
            size,
            str(r["num_classes"] or "-"),
            f"{r['top1']:.2f}" if r["top1"] is not None else "-",
        )
    console.print(table)
