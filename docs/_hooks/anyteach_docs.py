"""MkDocs hooks of the anyteach site (mkdocs.yml `hooks:`).

- The research log lives in research/ at the top of the repository, apart from the user docs; its pages and
  figures are added to the site under `research/` so the results pages can link to it.
- The command-line reference (`reference/cli.md`) is generated from the typer commands themselves: every
  command and subcommand with its usage, help and options, so it cannot drift from the code.
"""

from __future__ import annotations

import html
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
RESEARCH = "research"
CLI_MARKER = "<!-- anyteach-cli-reference -->"
RESEARCH_SUFFIXES = {".md", ".png", ".svg", ".csv", ".json", ".yaml", ".py"}


def on_files(files, config):
    """Add the research log (its Markdown pages and the files they link) to the site."""
    for path in sorted((ROOT / RESEARCH).rglob("*")):
        if path.is_file() and path.suffix in RESEARCH_SUFFIXES and "__pycache__" not in path.parts:
            rel = path.relative_to(ROOT).as_posix()
            if files.get_file_from_path(rel) is None:
                files.append(File(rel, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    return markdown


def cli_reference() -> str:
    """Markdown for every `anyteach` command, from the click commands typer builds (typer may run on its own
    copy of click, so the commands are read by what they have, not by their class)."""
    import typer.main

    import anyteach.cli  # noqa: F401  (registers the commands)
    from anyteach.cli.app import app

    root = typer.main.get_command(app)
    out: list[str] = []

    def walk(command, path: list[str], parent) -> None:
        ctx = command.context_class(command, info_name=path[-1], parent=parent)
        if len(path) > 1:
            out.append(f"## `{' '.join(path)}`\n")
            out.append(f"```\n{command.get_usage(ctx)}\n```\n")
            if command.help:
                out.append(_text(command.help) + "\n")
            rows = []
            for param in command.get_params(ctx):
                record = param.get_help_record(ctx)
                if record is None:
                    continue
                names, help_text = record
                rows.append(f"| `{names}` | {_text(help_text).replace('|', '&#124;')} |")
            if rows:
                out.append("| option | what it does |\n|---|---|\n" + "\n".join(rows) + "\n")
        if hasattr(command, "list_commands"):
            for name in sorted(command.list_commands(ctx)):
                sub = command.get_command(ctx, name)
                if sub is not None and not getattr(sub, "hidden", False):
                    walk(sub, [*path, name], ctx)

    walk(root, ["anyteach"], None)
    return "\n".join(out)


def _text(text: str) -> str:
    """Help text as one line of Markdown: HTML-escaped outside its `code` spans (which Markdown shows as
    they are), without click's paragraph markers."""
    parts = " ".join(str(text).replace("\b", "").split()).split("`")
    return "`".join(part if i % 2 else html.escape(part, quote=False) for i, part in enumerate(parts))
