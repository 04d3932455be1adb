"""Matplotlib, set up once for every figure anyteach draws: headless backend, atomic PNG writes."""

from __future__ import annotations

from pathlib import Path

from .io import atomic_path

DPI = 130


def pyplot():
    """`matplotlib.pyplot` on the headless Agg backend (imported on first use: the CLI starts fast)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Write `fig` as a PNG, atomically, and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    pyplot().close(fig)
    return path


__all__ = ["DPI", "pyplot", "save_figure"]
