"""The glyphs generator: small RGB images of stroked shapes and letters, drawn offline from a seed.

`anyteach`'s image dataset (`glyphs` references in `data.py`) is made here, with no download and no
font file: each class is a glyph given as line segments in [-1, 1]² (`GLYPH_SEGMENTS`; pairs such as
E/F, T/plus, square/circle are drawn to be confusable), and every sample draws it with its own
shape jitter (each end point moves), affine warp (rotation, scale, shear, translation), stroke
width, foreground and background colours (with a gradient), clutter strokes and pixel noise. Drawing
is vectorised: the distance of every pixel to every segment of a chunk of samples is one tensor
expression, so a chunk of thousands of images is a few tensor operations (no loop over samples).
The same `(seed, stream, n)` always gives the same images and labels; every split of a dataset is
its own stream, so splits never share a sample. Labels are class-balanced (counts differ by at most
one) and shuffled.
"""

from __future__ import annotations

import math

import numpy as np
import torch

GLYPHS_VERSION = "glyphs-2"
"""Bumped whenever the drawing changes, so cached predictions of older images are never reused."""

_CIRCLE = [
    (0.8 * math.cos(a), 0.8 * math.sin(a), 0.8 * math.cos(b), 0.8 * math.sin(b))
    for a, b in ((2 * math.pi * k / 8, 2 * math.pi * (k + 1) / 8) for k in range(8))
]

GLYPH_SEGMENTS: dict[str, list[tuple[float, float, float, float]]] = {
    "ell": [(-0.5, -0.8, -0.5, 0.8), (-0.5, 0.8, 0.6, 0.8)],
    "tee": [(-0.7, -0.8, 0.7, -0.8), (0.0, -0.8, 0.0, 0.8)],
    "plus": [(-0.75, 0.0, 0.75, 0.0), (0.0, -0.75, 0.0, 0.75)],
    "cross": [(-0.7, -0.7, 0.7, 0.7), (-0.7, 0.7, 0.7, -0.7)],
    "triangle": [(0.0, -0.8, 0.75, 0.7), (0.75, 0.7, -0.75, 0.7), (-0.75, 0.7, 0.0, -0.8)],
    "square": [(-0.7, -0.7, 0.7, -0.7), (0.7, -0.7, 0.7, 0.7), (0.7, 0.7, -0.7, 0.7), (-0.7, 0.7, -0.7, -0.7)],
    "circle": _CIRCLE,
    "e": [(-0.5, -0.8, -0.5, 0.8), (-0.5, -0.8, 0.55, -0.8), (-0.5, 0.0, 0.4, 0.0), (-0.5, 0.8, 0.55, 0.8)],
    "f": [(-0.5, -0.8, -0.5, 0.8), (-0.5, -0.8, 0.55, -0.8), (-0.5, 0.0, 0.4, 0.0)],
    "h": [(-0.55, -0.8, -0.55, 0.8), (0.55, -0.8, 0.55, 0.8), (-0.55, 0.0, 0.55, 0.0)],
    "zed": [(-0.6, -0.75, 0.6, -0.75), (0.6, -0.75, -0.6, 0.75), (-0.6, 0.75, 0.6, 0.75)],
    "arrow": [(-0.75, 0.0, 0.75, 0.0), (0.75, 0.0, 0.25, -0.45), (0.75, 0.0, 0.25, 0.45)],
}
"""Each class's glyph: line segments `(x0, y0, x1, y1)` in [-1, 1]² (y points down)."""

GLYPH_CLASSES = list(GLYPH_SEGMENTS)
IMAGE_SIZE = 32
CHUNK = 2048  # samples drawn per tensor expression: (chunk, segments, pixels) floats stay ~ 100 MB


TEMPLATE_SIZE = 64
STROKE_WIDTHS = (0.05, 0.08, 0.11, 0.14)
"""Half-widths of the strokes (in glyph units, [-1, 1] is the template): each sample draws one."""


def _segment_distance(points: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Distance of every point `points (P, 2)` to the nearest of each glyph's `segments (G, S, 4)`: (G, P)."""
    ax, ay, bx, by = (segments[..., i, None] for i in range(4))  # (G, S, 1)
    abx, aby = bx - ax, by - ay
    inv = 1.0 / (abx * abx + aby * aby).clamp_min(1e-8)
    apx, apy = points[:, 0] - ax, points[:, 1] - ay  # (G, S, P)
    t = ((apx * abx + apy * aby) * inv).clamp(0, 1)
    dx, dy = apx - t * abx, apy - t * aby
    return (dx * dx + dy * dy).amin(dim=1).sqrt()


_TEMPLATE_CACHE: dict[int, torch.Tensor] = {}


def glyph_templates(size: int = TEMPLATE_SIZE) -> torch.Tensor:
    """Every class drawn at every stroke width: `(classes * widths, 1, size, size)` masks in [0, 1],
    row `class * len(STROKE_WIDTHS) + width`. Drawn once (a distance field per glyph), then warped."""
    if size not in _TEMPLATE_CACHE:
        longest = max(len(s) for s in GLYPH_SEGMENTS.values())
        # padding repeats a glyph's first segment, which changes no distance minimum
        table = torch.tensor([s + [s[0]] * (longest - len(s)) for s in GLYPH_SEGMENTS.values()])
        coords = (torch.arange(size) + 0.5) / size * 2 - 1
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")
        d = _segment_distance(torch.stack([xx.flatten(), yy.flatten()], -1), table)  # (C, P)
        widths = torch.tensor(STROKE_WIDTHS)
        masks = ((widths[None, :, None] - d[:, None]) / (2.0 / size) + 0.5).clamp(0, 1)  # anti-aliased
        _TEMPLATE_CACHE[size] = masks.reshape(-1, 1, size, size)
    return _TEMPLATE_CACHE[size]


def _balanced_labels(n: int, num_classes: int, rng: torch.Generator) -> torch.Tensor:
    return (torch.arange(n) % num_classes)[torch.randperm(n, generator=rng)]


def _draw_chunk(labels: torch.Tensor, rng: torch.Generator, size: int) -> torch.Tensor:
    """Images (B, 3, size, size) in [0, 1] of the glyphs `labels`, every random choice from `rng`.

    Each glyph (and each clutter stroke) is its class's template warped by a per-sample affine map
    plus a smooth random displacement field (the shape jitter), sampled in one `grid_sample`."""
    import torch.nn.functional as F

    b = len(labels)
    templates = glyph_templates()
    widths = len(STROKE_WIDTHS)

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand((b, *shape), generator=rng)

    def warp(rows: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, jitter: float) -> torch.Tensor:
        """Templates `rows` seen through a random rotation, shear and aspect at `scale` (glyph size
        relative to the image), moved by `shift`, with a smooth displacement of std `jitter`: (B, size²)."""
        angle, shear, aspect = uniform(-0.3, 0.3), uniform(-0.2, 0.2), uniform(0.85, 1.18).sqrt()
        cos, sin = torch.cos(angle), torch.sin(angle)
        # output pixel p -> template point A (p - shift): A is the inverse of the drawing map
        a = (
            torch.stack(
                [torch.stack([cos * aspect, sin * aspect + shear], -1), torch.stack([-sin / aspect, cos / aspect], -1)],
                1,
            )
            / scale[:, None, None]
        )
        theta = torch.cat([a, -(a @ shift[..., None])], 2)
        grid = F.affine_grid(theta, [b, 1, size, size], align_corners=False)
        flow = F.interpolate(
            jitter * torch.randn(b, 2, 4, 4, generator=rng), size=(size, size), mode="bicubic", align_corners=False
        )
        grid = grid + flow.permute(0, 2, 3, 1)
        return F.grid_sample(templates[rows], grid, mode="bilinear", padding_mode="zeros", align_corners=False).view(
            b, -1
        )

    stroke = torch.randint(widths, (b,), generator=rng)
    glyph = warp(labels * widths + stroke, uniform(0.6, 0.9), uniform(-0.2, 0.2, 2), 0.04)
    # clutter: a zoomed-in fragment of a random glyph, thin, often in the glyph's own colour
    other = torch.randint(len(GLYPH_CLASSES), (b,), generator=rng) * widths
    clutter = warp(other, uniform(1.2, 2.2), uniform(-1.0, 1.0, 2), 0.1)
    clutter = clutter * (torch.rand(b, 1, generator=rng) < 0.5)

    coords = (torch.arange(size) + 0.5) / size * 2 - 1
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    background = uniform(0, 1, 3, 1)
    gradient = uniform(-0.3, 0.3, 3, 2)
    bg = background + gradient[..., 0:1] * xx.flatten() + gradient[..., 1:2] * yy.flatten()  # (B, 3, P)
    foreground = (background + uniform(0.3, 0.7, 3, 1)) % 1.0  # a colour apart from the background
    clutter_colour = torch.where(torch.rand(b, 1, 1, generator=rng) < 0.25, foreground, uniform(0, 1, 3, 1))
    image = torch.lerp(bg, clutter_colour, clutter[:, None])
    image = torch.lerp(image, foreground, glyph[:, None])
    image = image + uniform(0.01, 0.08, 1, 1) * torch.randn(image.shape, generator=rng)
    return image.clamp(0, 1).view(b, 3, size, size)


def generate_glyphs(n: int, seed: int, stream: int = 0, size: int = IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` glyph images (uint8, `(n, 3, size, size)`) and their labels (int64, balanced).

    Args:
        n: number of samples.
        seed: the dataset's seed.
        stream: which independent stream of that seed (one per split: train, eval, calib, fresh).
        size: image side in pixels.

    Returns:
        `(images, labels)`; the same arguments always give the same tensors.
    """
    rng = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, stream]).generate_state(1)[0]))
    labels = _balanced_labels(n, len(GLYPH_CLASSES), rng)
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for start in range(0, n, CHUNK):  # chunks bound memory; each chunk is vectorised
        part = labels[start : start + CHUNK]
        images[start : start + len(part)] = (_draw_chunk(part, rng, size) * 255).round().to(torch.uint8)
    return images, labels


def augment_images(
    x: torch.Tensor, generator: torch.Generator, shift: float = 0, rotate: float = 0, scale: float = 0, noise: float = 0
) -> torch.Tensor:
    """Random per-sample affine warp (translation up to `shift` of the image side, rotation up to
    `rotate` radians, zoom by a factor in [1 - scale, 1 + scale]) and Gaussian noise of std `noise`,
    on a batch `(B, 3, H, W)` at once. Returns floats in [0, 1] (8-bit input is converted)."""
    import torch.nn.functional as F

    x = x.float().div(255) if x.dtype == torch.uint8 else x
    b = len(x)
    if shift or rotate or scale:

        def uniform(r: float, *shape: int) -> torch.Tensor:
            return r * (2 * torch.rand((b, *shape), generator=generator) - 1)

        angle, zoom, move = uniform(rotate), 1 + uniform(scale), uniform(2 * shift, 2)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos, -sin, move[:, 0]], -1), torch.stack([sin, cos, move[:, 1]], -1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if noise:
        x = (x + noise * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    return x


__all__ = ["GLYPHS_VERSION", "GLYPH_CLASSES", "GLYPH_SEGMENTS", "IMAGE_SIZE", "augment_images", "generate_glyphs"]
