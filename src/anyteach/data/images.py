"""Image files to what a model reads: every PIL mode to 8-bit RGB, and an image folder's manifest.

PIL opens images in many modes, and `Image.convert("RGB")` is right for only some of them: it
clips 16-bit and 32-bit integer images (a 16-bit PNG becomes almost entirely white) and float
images, and it drops transparency, exposing whatever colour the transparent pixels happen to hold.
`to_rgb8` converts each mode by its meaning:

| mode | conversion |
|---|---|
| `1`, `L`, `RGB`, `CMYK`, `YCbCr`, ... | PIL's own conversion to RGB (CMYK: R = (255 − C)(255 − K) / 255) |
| `I;16`, `I;16B`, `I;16L`, `I` | 16-bit values (0 .. 65535) scaled to 8 bits (round(v / 257)); `I` is read |
|  | as 16-bit (what a 16-bit PNG opens as) and clipped |
| `F` | values in [0, 1] when the image's maximum is at most 1 (the convention of float image files), |
|  | else in [0, 255]; scaled and clipped |
| `RGBA`, `LA`, `PA`, `P` with transparency, `RGBa`, `La` | composited over white, as an image viewer shows it |

An image folder's identity is its manifest (`folder_manifest`): a digest over every sample's
(relative path, class, size, modification time), so that editing, relabelling, replacing or
swapping a file changes the identity of exactly the split it belongs to, and with it every cache
and run key built from it. `verify=True` hashes file contents instead of (size, time): a folder
copied elsewhere (new times, same bytes) keeps its identity, at the cost of reading every byte.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

TRANSPARENT_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


def _grey_to_rgb(values: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.repeat(values[..., None], 3, axis=2))


def to_rgb8(image):
    """`image` (any PIL mode) as an 8-bit RGB PIL image, converted by the mode's meaning (module docstring).

    Args:
        image: a PIL image.

    Returns:
        A PIL image of mode `RGB`.
    """
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return image
    if mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        return _grey_to_rgb(np.round(np.clip(values, 0, 65535) / 257.0).astype(np.uint8))
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        return _grey_to_rgb(np.round(np.clip(values * scale, 0, 255)).astype(np.uint8))
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in TRANSPARENT_MODES:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb8(path: str):
    """Open an image file and convert it with `to_rgb8` (the image folders' loader).

    Raises:
        PIL.Image.DecompressionBombError: an image over PIL's pixel limit.
        OSError: not an image file, or a damaged one.
    """
    from PIL import Image

    with open(path, "rb") as f:
        image = Image.open(f)
        image.load()
        return to_rgb8(image)


def file_content_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def symlink_loop(root: str | Path) -> tuple[str, str] | None:
    """The first directory symlink under the split folder `root` that would read images twice, as (link,
    target); None when there is none: a link to one of its own ancestors (`ln -s .. train/a/loop`: following it
    reads the same images again and again, those of class b found through `train/a/loop/b/` labelled a), or a
    link inside one class folder to a folder of another class of the same split (`train/a/more -> ../b`: class
    b's images read again as class a).

    Only directory entries are inspected (the tree is walked without following links, as cheaply as listing it).
    """
    top = os.path.realpath(root)
    for directory, subdirs, _ in os.walk(os.fspath(root), followlinks=False):
        for name in subdirs:
            link = os.path.join(directory, name)
            if not os.path.islink(link):
                continue
            target = os.path.realpath(link)
            here = os.path.realpath(directory)
            if here == target or here.startswith(target.rstrip(os.sep) + os.sep):
                return link, target
            inside = os.path.relpath(here, top).split(os.sep)
            if inside != ["."] and target.startswith(top + os.sep):  # from inside a class, into this split
                own_class = os.path.join(top, inside[0])
                if not (target == own_class or target.startswith(own_class + os.sep)):
                    return link, target
    return None


def same_images(
    root: str | Path, samples: Sequence[tuple[str, int]], other_root: str | Path, other: Sequence[tuple[str, int]]
) -> bool:
    """Two split folders hold the same images: one is (a link to) the other, or they list the same files (whatever
    their labels: a copy of val/ as unlabelled/ is the same images) and an even sample of 16 of them has the same
    bytes. Cheap when they differ: folders of different sizes or file names are told apart without reading a
    file."""
    if os.path.realpath(root) == os.path.realpath(other_root):
        return True
    if len(samples) != len(other) or not samples:
        return False
    if any(
        os.path.relpath(path, root) != os.path.relpath(other_path, other_root)
        for (path, _), (other_path, _) in zip(samples, other)
    ):
        return False
    picks = np.unique(np.linspace(0, len(samples) - 1, 16).round().astype(int))
    return all(file_content_digest(samples[i][0]) == file_content_digest(other[i][0]) for i in picks)


def folder_manifest(root: str | Path, samples: Sequence[tuple[str, int]], verify: bool = False) -> str:
    """The digest of a split folder's samples: (relative path, class, size, modification time) each.

    Args:
        root: the split's folder (paths are taken relative to it).
        samples: `(path, class index)` per sample, as torchvision's `ImageFolder.samples`.
        verify: hash each file's contents instead of its size and modification time.

    Returns:
        A hex digest (sha256).
    """
    root = os.fspath(root)
    h = hashlib.sha256(b"verify\n" if verify else b"stat\n")
    for path, target in samples:
        if verify:
            what = file_content_digest(path)
        else:
            st = os.stat(path)
            what = f"{st.st_size}:{st.st_mtime_ns}"
        h.update(f"{os.path.relpath(path, root)}\0{target}\0{what}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


__all__ = ["folder_manifest", "load_rgb8", "same_images", "symlink_loop", "to_rgb8"]
