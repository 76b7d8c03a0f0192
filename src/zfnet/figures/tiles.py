"""Shared pieces of the figure writers: atomic PNG / JSON writes, tiles, grids and labelled tables of tiles.

Display conventions: a projection is shown with zero at mid-grey and its largest absolute value at the ends
of the range (each projection scaled on its own, so the sign structure is visible); an image patch is shown
with the dataset mean added back when ``mean`` is given, else stretched to its own min..max.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from zfnet.io import atomic_path, write_text

__all__ = ["compose_table", "save_png", "save_json"]

_BG = (255, 255, 255)
_INK = (0, 0, 0)


# ------------------------------------------------------------------------------------------- writing
def save_png(img: np.ndarray | Image.Image, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(tmp, format="PNG")
    return Path(path)


def save_figure(fig, path) -> str:
    """Save a matplotlib ``Figure`` as PNG at ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi, bbox_inches="tight")
    return str(path)


def save_json(obj, path: str | Path) -> Path:
    return write_text(path, json.dumps(obj, indent=1))


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(label)).strip("_") or "model"


# ---------------------------------------------------------------------------------------- rendering
def _proj_rgb(p: torch.Tensor) -> np.ndarray:
    """(3, h, w) projection -> uint8 (h, w, 3): 0 at grey, +-max|p| at the ends."""
    p = p.detach().float().cpu()
    m = p.abs().max()
    x = 0.5 + 0.5 * p / m if m > 0 else torch.full_like(p, 0.5)
    return (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _image_rgb(x: torch.Tensor, mean: torch.Tensor | None = None) -> np.ndarray:
    x = x.detach().float().cpu()
    if mean is not None:
        y = x + mean.float().cpu().reshape(3, 1, 1) if mean.ndim <= 1 else x + mean.float().cpu()
        y = y / 255.0 if y.max() > 1.5 else y
    else:
        lo, hi = x.min(), x.max()
        y = (x - lo) / (hi - lo) if hi > lo else torch.full_like(x, 0.5)
    return (y.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _tile(arr: np.ndarray, cell: int) -> np.ndarray:
    """Nearest-neighbour upscale so that the tile is at least ``cell`` px on its long side."""
    f = max(1, int(np.ceil(cell / max(arr.shape[:2]))))
    return arr.repeat(f, 0).repeat(f, 1) if f > 1 else arr


def _grid(tiles: Sequence[np.ndarray], ncol: int, pad: int = 2) -> np.ndarray:
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    nrow = -(-len(tiles) // ncol)
    out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, ncol)
        out[pad + r * (h + pad): pad + r * (h + pad) + t.shape[0], pad + c * (w + pad): pad + c * (w + pad) + t.shape[1]] = t
    return out


def _to_rgb(t) -> np.ndarray:
    if isinstance(t, np.ndarray):
        return t
    return _proj_rgb(t)


def compose_table(rows: Sequence[Sequence], row_labels: Sequence[str] = (), col_labels: Sequence[str] = (),
                  title: str = "", cell: int = 64, pad: int = 6) -> Image.Image:
    """Rows of tiles (tensors = projections, or uint8 arrays) with row/column labels -> one image."""
    tiles = [[_tile(_to_rgb(t), cell) for t in row] for row in rows]
    h = max(t.shape[0] for row in tiles for t in row)
    w = max(t.shape[1] for row in tiles for t in row)
    label_w = 8 + 7 * max([len(s) for s in row_labels] + [0])
    head = 16 + (14 if col_labels else 0) + (14 if title else 0)
    ncol = max(len(r) for r in tiles)
    img = Image.new("RGB", (label_w + ncol * (w + pad) + pad, head + len(tiles) * (h + pad) + pad), _BG)
    draw = ImageDraw.Draw(img)
    y0 = 4
    if title:
        draw.text((4, y0), title, fill=_INK)
        y0 += 14
    for j, lab in enumerate(col_labels):
        draw.text((label_w + pad + j * (w + pad), y0), str(lab), fill=_INK)
    top = head
    for i, row in enumerate(tiles):
        y = top + i * (h + pad)
        if i < len(row_labels):
            draw.text((4, y + h // 2 - 6), row_labels[i], fill=_INK)
        for j, t in enumerate(row):
            img.paste(Image.fromarray(t), (label_w + pad + j * (w + pad), y))
    return img
