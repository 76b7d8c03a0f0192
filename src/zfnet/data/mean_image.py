"""The one reader of the prepare stage's mean image (``mean.npy``), for every stage that subtracts it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["read_mean_image"]


def read_mean_image(path: str | Path, key: str, sizes: tuple[int, ...] = (), or_else: str = "") -> torch.Tensor:
    """``path`` (``mean.npy``: (s, s, 3) as the prepare stage writes it, or (3, s, s)) as a (3, s, s) float32
    tensor. Errors name ``key`` (the config key or argument that gave the file) and the file; ``sizes``: the
    sides accepted (empty: any); ``or_else``: what the key accepts besides a file, for the missing-file error
    (e.g. "give 3 values, or null")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}={str(path)!r}: mean image not found (run the prepare stage, which writes "
                                f"it{'; or ' + or_else if or_else else ''})")
    try:
        m = torch.from_numpy(np.load(path)).float()
    except (ValueError, OSError) as err:
        raise ValueError(f"{key}={str(path)!r}: not a readable .npy mean image ({err}); run the prepare stage "
                         "again") from None
    if m.ndim == 3 and m.shape[-1] == 3 and m.shape[0] != 3:
        m = m.permute(2, 0, 1)
    if m.ndim != 3 or m.shape[0] != 3 or m.shape[1] != m.shape[2] or (sizes and m.shape[-1] not in sizes):
        side = f" with s = {' or '.join(str(s) for s in sizes)}" if sizes else ""
        raise ValueError(f"{key}={str(path)!r}: expected an (s, s, 3) or (3, s, s) mean image{side}; got shape "
                         f"{tuple(np.load(path, mmap_mode='r').shape)}")
    return m
