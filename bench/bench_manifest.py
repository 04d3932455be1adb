"""Benchmark of an image folder's manifest (its content identity) against one prediction pass.

An image folder's identity is a manifest over every file's (relative path, class, size,
modification time) (`images.folder_manifest`), computed each time the folder is loaded. This
measures on a generated folder of `--files` tiny PNGs (default 100,000, 8x8 pixels, 10 classes,
half in `train/`, half in `val/`):

  (a) the manifest of both splits (one `stat` per file),
  (b) the same with `verify=1` (every file's contents hashed),
  (c) one prediction pass over `val/` (`predict` of a tiny random timm CNN at 32x32, default
      loader workers, no cache), scaled to the folder's whole file count,

and prints the ratios a/c (goal < 0.05) and b/c. Tiny files make the manifest's share as large as
it gets: a real image costs the prediction pass far more than 8x8 pixels, and the manifest the same.
It asserts nothing.

Usage: `python bench/bench_manifest.py [--files 100000] [--predict-files 5000]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_folder(root: Path, files: int, classes: int = 10) -> None:
    from PIL import Image

    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    encoded = []
    for p in pixels:
        path = root / "tmp.png"
        Image.fromarray(p).save(path)
        encoded.append(path.read_bytes())
    path.unlink()
    per = files // (2 * classes)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"class{c:02d}"
            folder.mkdir(parents=True)
            for i in range(per):
                (folder / f"{i:06d}.png").write_bytes(encoded[(i + c) % len(encoded)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument(
        "--predict-files",
        type=int,
        default=5_000,
        help="the prediction pass runs over this many val files and is scaled to --files",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    from torchvision.datasets import ImageFolder as TVImageFolder

    from anyteach import load_dataset, predict, timm_classifier
    from anyteach.data.images import folder_manifest

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "folder"
        start = time.perf_counter()
        make_folder(root, args.files)
        print(f"generated {args.files} files in {time.perf_counter() - start:.1f} s")
        folders = [TVImageFolder(str(root / s)) for s in ("train", "val")]
        os.sync()
        start = time.perf_counter()
        for f in folders:
            folder_manifest(f.root, f.samples)
        manifest = time.perf_counter() - start
        start = time.perf_counter()
        for f in folders:
            folder_manifest(f.root, f.samples, verify=True)
        verified = time.perf_counter() - start

        small = Path(tmp) / "small"  # the prediction pass over a val subset (same files), scaled
        for split in ("train", "val"):
            for c in range(10):
                (small / split / f"class{c:02d}").mkdir(parents=True)
        per = args.predict_files // 10
        for c in range(10):
            for f in sorted((root / "val" / f"class{c:02d}").iterdir())[:per]:
                os.link(f, small / "val" / f"class{c:02d}" / f.name)
            os.link(next((root / "train" / f"class{c:02d}").iterdir()), small / "train" / f"class{c:02d}" / "a.png")
        torch.manual_seed(0)
        model = timm_classifier("test_byobnet", num_classes=10)
        model.info.preprocessing = dataclasses.replace(model.info.preprocessing, input_size=(3, 32, 32))
        data = load_dataset(f"imagefolder:{small}")
        start = time.perf_counter()
        predict(model, data, "eval", cache=False)
        one_pass = (time.perf_counter() - start) * args.files / (per * 10)
    print(f"(a) manifest of {args.files} files: {manifest:.2f} s ({1e6 * manifest / args.files:.1f} µs/file)")
    print(f"(b) manifest with verify=1: {verified:.2f} s ({1e6 * verified / args.files:.1f} µs/file)")
    print(f"(c) one prediction pass over {args.files} files (measured on {per * 10}, scaled): {one_pass:.1f} s")
    print(f"a/c = {manifest / one_pass:.4f} (goal < 0.05); b/c = {verified / one_pass:.4f}")


if __name__ == "__main__":
    main()
