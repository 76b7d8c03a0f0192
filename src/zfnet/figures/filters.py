"""Filter figures (Fig. 6): the weights of a conv layer as one image, each filter contrast-normalized on its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from zfnet.io import atomic_path

__all__ = ["filter_grid", "save_filters"]


def filter_grid(weight: torch.Tensor, nrow: int | None = None, upscale: int = 4) -> np.ndarray:
    """(out, 3, k, k) conv weights -> uint8 (H, W, 3) grid, each filter scaled to [0, 255] separately."""
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise ValueError(f"filter_grid expects RGB filters (out, 3, k, k), got {tuple(weight.shape)}")
    w = weight.detach().float().cpu()
    w = w.repeat_interleave(upscale, dim=-1).repeat_interleave(upscale, dim=-2)
    nrow = nrow or int(np.ceil(np.sqrt(w.shape[0])))
    grid = make_grid(w, nrow=nrow, normalize=True, scale_each=True, padding=2, pad_value=1.0)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def save_filters(weight: torch.Tensor, path: str | Path) -> Path:
    """Write the filter grid of ``weight`` (out, 3, k, k) as a PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(filter_grid(weight)).save(tmp)
    return Path(path)
