"""Every PIL image mode reaches the model as the 8-bit RGB it means, compared with a conversion
written out here in numpy (not PIL's `convert`, which clips 16-bit images to white and drops
transparency); 16-bit PNGs through the whole image-folder path; and an image over PIL's
decompression-bomb limit, read in a loader worker, is one line naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from anyteach import AnyteachError, load_dataset
from anyteach.data.images import load_rgb8, to_rgb8

RNG = np.random.default_rng(0)
GREY8 = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
RGB8 = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
WORDS = np.array([[0, 1, 128, 257, 1000], [30000, 40000, 65534, 65535, 12345]], dtype=np.uint16)


def grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=2).astype(np.uint8)


def over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None] / 255.0
    return np.round(rgb * a + 255.0 * (1 - a)).astype(np.uint8)


def cmyk_reference(cmyk: np.ndarray) -> np.ndarray:
    c, k = cmyk[..., :3].astype(np.float64), cmyk[..., 3:].astype(np.float64)
    return np.round((255 - c) * (255 - k) / 255).astype(np.uint8)


def palette_with_transparency() -> tuple[Image.Image, np.ndarray]:
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    index = RNG.integers(0, 4, (5, 7), dtype=np.uint8)
    image = Image.fromarray(index, mode="P")
    image.putpalette(palette.tobytes())
    image.info["transparency"] = 2
    expected = palette[index].copy()
    expected[index == 2] = 255
    return image, expected


CASES = {
    "1": lambda: (Image.fromarray(GREY8 > 127).convert("1"), grey(np.where(GREY8 > 127, 255, 0))),
    "L": lambda: (Image.fromarray(GREY8, mode="L"), grey(GREY8)),
    "I;16": lambda: (Image.fromarray(WORDS), grey(np.round(WORDS / 257.0))),
    "I": lambda: (Image.fromarray(WORDS.astype(np.int32)), grey(np.round(WORDS / 257.0))),
    "F in [0, 1]": lambda: (Image.fromarray((GREY8 / 255.0).astype(np.float32)), grey(GREY8)),
    "F in [0, 255]": lambda: (
        Image.fromarray(GREY8.astype(np.float32) * 0.999 + 0.2),
        grey(np.round(GREY8 * 0.999 + 0.2)),
    ),
    "P with transparency": palette_with_transparency,
    "RGBA": lambda: (Image.fromarray(np.dstack([RGB8, ALPHA]), mode="RGBA"), over_white(RGB8, ALPHA)),
    "LA": lambda: (Image.fromarray(np.dstack([GREY8, ALPHA]), mode="LA"), over_white(grey(GREY8), ALPHA)),
    "CMYK": lambda: (
        Image.frombytes("CMYK", (7, 5), np.dstack([RGB8, ALPHA]).tobytes()),
        cmyk_reference(np.dstack([RGB8, ALPHA])),
    ),
    "RGB": lambda: (Image.fromarray(RGB8, mode="RGB"), RGB8),
}


@pytest.mark.parametrize("mode", list(CASES))
def test_each_mode_converts_to_the_rgb_it_means(mode):
    image, expected = CASES[mode]()
    if mode in ("I;16", "I", "F in [0, 1]", "F in [0, 255]", "1", "CMYK", "LA"):
        assert image.mode == mode.split()[0]
    out = to_rgb8(image)
    assert out.mode == "RGB" and out.size == image.size
    assert np.abs(np.asarray(out).astype(int) - expected.astype(int)).max() <= 1


def test_a_16_bit_png_is_scaled_not_white(tmp_path):
    """What `Image.fromarray(uint16_array).save(...)` writes, read back through the image folder."""
    for split, value in (("train", 30000), ("val", 20000)):  # each split its own image: a copy would be a leak
        (tmp_path / split / "a").mkdir(parents=True)
        Image.fromarray(np.full((8, 8), value, dtype=np.uint16)).save(tmp_path / split / "a" / "x.png")
    assert np.asarray(load_rgb8(str(tmp_path / "val" / "a" / "x.png")))[0, 0].tolist() == [78, 78, 78]
    data = load_dataset(f"imagefolder:{tmp_path}")
    x, _, _ = next(iter(data.loader("eval", batch_size=1, num_workers=0)))
    assert x.dtype == torch.uint8 and int(x.max()) == 78 and int(x.min()) == 78  # 20000 / 257, not 255


def test_a_decompression_bomb_in_a_loader_worker_is_one_line_naming_the_file(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.new("L", (8, 8)).save(tmp_path / split / "a" / "small.png")
    bomb = tmp_path / "val" / "a" / "zbomb.png"
    Image.new("1", (300, 300)).save(bomb)
    old = Image.MAX_IMAGE_PIXELS
    # 90,000 pixels > 2 x 30,000: PIL refuses to open it (forked workers inherit the limit); the
    # 224 x 224 crop of the small image stays under it
    Image.MAX_IMAGE_PIXELS = 30_000
    try:
        data = load_dataset(f"imagefolder:{tmp_path}")
        with pytest.raises(AnyteachError, match="zbomb.png has more pixels than PIL's decompression-bomb limit"):
            for _ in data.loader("eval", batch_size=2, num_workers=1):
                pass
    finally:
        Image.MAX_IMAGE_PIXELS = old
