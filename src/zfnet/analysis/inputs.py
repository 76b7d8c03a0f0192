"""From image files to a model's input in one call: the pipeline's own preprocessing, for notebooks.

``load_images(paths, mean=...)`` decodes each file, resizes its smallest side to ``resize`` and centre-crops
``resize`` x ``resize`` (:func:`zfnet.data.preprocess.center_crop`, as the prepare stage does), takes the
centre ``crop`` x ``crop`` window (the evaluation crop), and subtracts the model's mean (the prepare stage's
per-pixel ``mean.npy``, a per-channel mean, or nothing); ``std`` optionally divides (torchvision-style
normalisation, with ``scale=1/255``). :func:`image_folder` lists an ImageFolder-style tree
(``root/<class>/<image>``) with labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from zfnet.data.crops import crop_offsets
from zfnet.data.mean_image import read_mean_image
from zfnet.data.preprocess import center_crop

__all__ = ["IMAGE_SUFFIXES", "image_folder", "load_images"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def _files(paths) -> list[Path]:
    if isinstance(paths, (str, Path)):
        p = Path(paths)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{p}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            return found
        return [p]
    return [Path(p) for p in paths]


def image_folder(root: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """An ImageFolder-style tree ``root/<class>/<image>``: (paths, labels, class names), classes sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: expected a folder of class folders (root/<class>/<image>)")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    paths, labels = [], []
    for i, c in enumerate(classes):
        files = sorted(f for f in (root / c).rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [i] * len(files)
    if not paths:
        raise FileNotFoundError(f"{root}: no images in class folders (expected root/<class>/<image>)")
    return paths, labels, classes


def _centre(x: torch.Tensor, crop: int) -> torch.Tensor:
    top, left = crop_offsets(x.shape[-1], crop)[4]
    return x[..., top : top + crop, left : left + crop]


def _mean(mean, resize: int, crop: int) -> torch.Tensor:
    if mean is None:
        return torch.zeros(3, 1, 1)
    if isinstance(mean, (str, Path)):
        mean = read_mean_image(mean, "mean", (resize, crop))
    m = torch.as_tensor(np.asarray(mean), dtype=torch.float32)
    if m.numel() in (1, 3):
        return m.reshape(-1, 1, 1)
    if m.ndim == 3 and m.shape[-1] == 3 and m.shape[0] != 3:
        m = m.permute(2, 0, 1)  # (H, W, 3) as the prepare stage writes mean.npy
    if m.ndim != 3 or m.shape[0] != 3 or m.shape[1] != m.shape[2] or m.shape[-1] not in (resize, crop):
        raise ValueError(f"mean: expected a number, 3 values, or a (3, s, s) / (s, s, 3) image with s = resize "
                         f"({resize}) or crop ({crop}); got shape {tuple(m.shape)}")
    return _centre(m, crop) if m.shape[-1] == resize else m


def load_images(paths: str | Path | Sequence[str | Path], resize: int = 256, crop: int = 224, mean=None,
                std=None, scale: float = 1.0) -> torch.Tensor:
    """Image files (a path, a list of paths or a folder) -> float32 (N, 3, crop, crop) model input.

    Each image: smallest side -> ``resize``, centre ``resize`` crop (the prepare stage), centre ``crop``
    window; then ``(pixels * scale - mean) / std``. ``mean``: None, a number or 3 values, a (3, s, s) or
    (s, s, 3) image with s = ``resize`` or ``crop``, or the path of the prepare stage's ``mean.npy``
    (``data/prepared/mean.npy``: our models' preprocessing). Raises ``BadImage`` naming an unreadable file.
    """
    if crop > resize:
        raise ValueError(f"crop ({crop}) must not exceed resize ({resize})")
    files = _files(paths)
    pixels = torch.stack([torch.from_numpy(center_crop(f, resize)).permute(2, 0, 1) for f in files])
    x = _centre(pixels, crop).float() * float(scale) - _mean(mean, resize, crop)
    if std is not None:
        x = x / torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
    return x.contiguous()
