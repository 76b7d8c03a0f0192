"""Fig. 7's results for several images: each image's occlusion maps (:func:`zfnet.analysis.occlusion.occlusion_maps`)
with the deconv projection of the map they follow (panel (c); its writer: ``zfnet.figures.occlusion``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from zfnet.analysis.occlusion.maps import occlusion_maps, projection

__all__ = ["occlude_images"]


def occlude_images(model: torch.nn.Module, images: torch.Tensor, labels, *, size: int | None = None,
                   stride: int | None = None, layer: str = "conv5", fill: float = 0.0, chunk: int | None = None,
                   project: bool = True, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """``occlusion_maps`` of each image (N, 3, H, W, mean-subtracted) for its label (N,): a grey square of
    ``size`` (None: H // 7, 32 at 224) slid by ``stride`` (None: size // 2), ``layer``'s strongest map
    followed. ``project``: add ``"projection"``, that map projected by the deconvnet, where the deconvnet
    accepts the model (else a warning naming the image, ``names[i]``, and no projection)."""
    if images.dim() != 4:
        raise ValueError(f"images: expected (N, 3, H, W), got {tuple(images.shape)}")
    labels = torch.as_tensor(labels).long().flatten()
    if labels.numel() != images.shape[0]:
        raise ValueError(f"labels: expected {images.shape[0]} labels, got {labels.numel()}")
    names = list(names) if names is not None else [f"{i:03d}" for i in range(images.shape[0])]
    size = int(size if size is not None else max(1, images.shape[-2] // 7))
    stride = int(stride if stride is not None else max(1, size // 2))
    results = []
    for i in range(images.shape[0]):
        maps = occlusion_maps(model, images[i], int(labels[i]), size, stride, layer=layer, fill=fill, chunk=chunk)
        if project:
            try:
                maps["projection"] = projection(model, images[i], maps["layer"], maps["channel"])
            except Exception as exc:  # a deconvnet that rejects this model: the figure without (c)
                warnings.warn(f"occlusion figure {names[i]}: no deconv projection ({exc})", RuntimeWarning,
                              stacklevel=2)
        results.append(maps)
    return results
