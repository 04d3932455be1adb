"""Render a study's `report.html` to a PNG with headless Chromium, to look at it as a reader would.

    python docs/scripts/render_report.py STUDY_DIR/report.html [--out report.png] [--width 1200]

Chromium (the Debian package `chromium`, or `chromium-browser` / `google-chrome`) is not a
dependency of anyteach: this script finds it on the PATH and exits with one line (status 2) when it
is absent. The page is self-contained (figures embedded as data URIs), so the render needs no
network and no server. `tests/test_report.py` renders the synthetic study's report with it when
Chromium is installed and checks that the PNG has the report's figures and tables in it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MAX_HEIGHT = 16000
"""The tallest screenshot taken (pixels)."""
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
"""Executable names tried in order."""


def find_chromium() -> str | None:
    """The first headless-capable Chromium on the PATH (None: none installed)."""
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def render(html: Path, png: Path, width: int = 1200, height: int | None = None, timeout: float = 120.0) -> Path:
    """Screenshot `html` into `png` (full page height unless `height` is given).

    Raises:
        FileNotFoundError: no Chromium on the PATH, or `html` does not exist.
        RuntimeError: Chromium failed or wrote no image.
    """
    browser = find_chromium()
    if browser is None:
        raise FileNotFoundError(f"no Chromium on the PATH (tried {', '.join(BROWSERS)}); apt-get install chromium")
    html = Path(html).resolve()
    if not html.is_file():
        raise FileNotFoundError(f"{html} does not exist")
    height = height or min(page_facts(html, width, timeout)["height"] + 40, MAX_HEIGHT)
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:  # a private profile: no state shared with other runs
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            html.as_uri(),
        ]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not png.exists():
        raise RuntimeError(f"chromium failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return png


def page_facts(html: Path, width: int = 1200, timeout: float = 120.0, screen: int = 1000) -> dict[str, int]:
    """What a reader's browser sees of `html` once loaded: `height` (pixels at `width`), `images`
    (figures that decoded: complete with a natural width), `broken_images`, `tables` (with rows), and
    where the opening verdict and figure end on a window `screen` pixels high (`verdict_bottom`,
    `figure_bottom`: pixels from the top, -1 when the page has none).

    Read from Chromium's DOM dump: a script writes the numbers into the page title.

    Raises:
        FileNotFoundError: no Chromium on the PATH.
    """
    browser = find_chromium()
    if browser is None:
        raise FileNotFoundError(f"no Chromium on the PATH (tried {', '.join(BROWSERS)}); apt-get install chromium")
    html = Path(html).resolve()
    probe = html.with_name(f".{html.stem}-probe.html")
    script = (
        "<script>window.addEventListener('load',()=>{const i=[...document.images];"
        "document.title='FACTS'+JSON.stringify({height:document.documentElement.scrollHeight,"
        "images:i.filter(x=>x.complete&&x.naturalWidth>0).length,"
        "broken_images:i.filter(x=>!(x.complete&&x.naturalWidth>0)).length,"
        "tables:[...document.querySelectorAll('table')].filter(t=>t.rows.length>1).length,"
        "verdict_bottom:bottom('.lead .verdict'),figure_bottom:bottom('.lead img')});});"
        "function bottom(s){const e=document.querySelector(s);return e?Math.ceil(e.getBoundingClientRect().bottom):-1;}"
        "</script>"
    )
    probe.write_text(html.read_text().replace("</body>", script + "</body>", 1))
    try:
        with tempfile.TemporaryDirectory() as profile:
            proc = subprocess.run(
                [
                    browser,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    f"--user-data-dir={profile}",
                    f"--window-size={width},{screen}",
                    "--dump-dom",
                    probe.as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
    finally:
        probe.unlink(missing_ok=True)
    start = proc.stdout.find("<title>FACTS")
    if start < 0:
        raise RuntimeError(f"chromium did not load {html} (exit {proc.returncode})")
    return json.loads(proc.stdout[start + len("<title>FACTS") : proc.stdout.index("</title>", start)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="a study's report.html")
    parser.add_argument("--out", type=Path, help="the PNG to write (default: beside the HTML, report.png)")
    parser.add_argument("--width", type=int, default=1200, help="viewport width in pixels")
    args = parser.parse_args(argv)
    try:
        png = render(args.html, args.out or args.html.with_suffix(".png"), args.width)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    facts = page_facts(args.html, args.width)
    print(
        f"{png}: {facts['images']} figures shown ({facts['broken_images']} broken), {facts['tables']} tables, "
        f"{facts['height']} px tall"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
