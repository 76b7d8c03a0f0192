"""The atlas's pictures of one unit, as JPEG: 3x3 grids of its top-k (projections, guided backprop, image
patches), its synthesized image, its evolution strip (one tile per checkpoint).

Display is the figures' (:mod:`zfnet.figures.tiles`, :mod:`zfnet.figures.synthesis`): each projection on
its own scale (zero at mid-grey, its largest magnitude at the ends), patches with the dataset mean added
back, a synthesized image stretched to its mean +- 3 standard deviations. A grid's tiles show each unit's
window inside the image (:func:`in_image`: a receptive field that reaches past the border holds zeros there),
at full resolution, as JPEG of quality :data:`QUALITY` (projections are noise-like and barely compress
losslessly: the demo's atlas was 226 MB as PNG; the values themselves are the data JSON's). Tiles are enlarged by an integer
factor (nearest neighbour) to at least :data:`TILE` px on their long side, so conv1's small windows are
visible; files are written atomically and the same tensors give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from zfnet.figures.synthesis import _stretch
from PIL import Image

from zfnet.figures.tiles import _grid, _image_rgb, _proj_rgb, _tile
from zfnet.io import atomic_path

__all__ = ["QUALITY", "TILE", "grid_png", "in_image", "strip_png", "synthesis_png", "tile_rgb"]

#: smallest long side of a tile, in px
TILE = 48
#: JPEG quality of every picture (libjpeg's scale; deterministic: the same pixels give the same bytes)
QUALITY = 90


def save_jpeg(img: np.ndarray, path: str | Path) -> Path:
    """``img`` (h, w, 3) uint8 as a baseline JPEG at ``path``, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="JPEG", quality=QUALITY, subsampling=0)  # 4:4:4: no chroma blur
    return Path(path)


def tile_rgb(x: torch.Tensor, kind: str, mean: torch.Tensor | None = None) -> np.ndarray:
    """One (3, h, w) tensor as the uint8 (h', w', 3) tile the atlas shows: ``kind`` ``projection`` (deconvnet
    or guided backprop), ``patch`` (an input window; ``mean``, (3,), added back) or ``synthesis``."""
    if kind == "projection":
        rgb = _proj_rgb(x)
    elif kind == "patch":
        rgb = _image_rgb(x, mean)
    elif kind == "synthesis":
        rgb = _stretch(x)
    else:
        raise ValueError(f"kind: expected 'projection', 'patch' or 'synthesis', got {kind!r}")
    return _tile(rgb, TILE)


def in_image(p) -> list[tuple[list[int], tuple[slice, slice, slice]]]:
    """Per projection of ``p`` (:class:`~zfnet.analysis.deconvnet.projections.Projections`): the part of its
    frame inside the image, as ``([top, left, bottom, right] in image pixels, index into values[u])``.
    Outside the image a frame holds zeros (projections) or nothing (patches): the tiles show the inside."""
    h, w = p.values.shape[-2:]
    H, W = p.image_size
    out = []
    for t, l in zip(p.top.tolist(), p.left.tolist()):
        y0, y1, x0, x1 = max(t, 0), min(t + h, H), max(l, 0), min(l + w, W)
        out.append(([y0, x0, y1, x1], (slice(None), slice(y0 - t, y1 - t), slice(x0 - l, x1 - l))))
    return out


def grid_png(tiles: Sequence[torch.Tensor], kind: str, path: str | Path, mean: torch.Tensor | None = None) -> Path:
    """The unit's top-k as a square grid (3x3 for k = 9), strongest first in row-major order."""
    ncol = math.ceil(math.sqrt(len(tiles)))
    return save_jpeg(_grid([tile_rgb(t, kind, mean) for t in tiles], ncol), path)


def strip_png(tiles: Sequence[torch.Tensor], path: str | Path) -> Path:
    """Projections in one row (the evolution strip: one tile per checkpoint, in training order)."""
    return save_jpeg(_grid([tile_rgb(t, "projection") for t in tiles], len(tiles)), path)


def synthesis_png(image: torch.Tensor, path: str | Path) -> Path:
    return save_jpeg(tile_rgb(image, "synthesis"), path)
