"""What fine-tuning kept: the same analyses on the source model and on the fine-tuned one.

* :func:`before_after`: top-9 deconvnet projections of the same few maps of one layer in the source
  model and in the fine-tuned one (``top9_before/<layer>.png``, ``top9_after/<layer>.png``: Fig. 2's layout,
  :func:`zfnet.figures.deconv.fig2`), with the overlap of each map's top-9 image sets;
* :func:`occlusion_per_class`: Fig. 7's occlusion figure (:mod:`zfnet.figures.occlusion`) for one
  image of each class, correctly classified by the fine-tuned model when one is.

``images``: a (N, 3, crop, crop) tensor of network inputs or a stream of them
(:class:`zfnet.data.image_files.FileStream`: batches in order, ``take(indices)``, ``batched(n)``): the
searches hold one batch at a time and only the winning images are decoded again for the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from zfnet.analysis.occlusion.images import occlude_images
from zfnet.analysis.deconvnet.top_projections import top_projections
from zfnet.analysis.topk import choose_maps, top_activations
from zfnet.figures.deconv import fig2
from zfnet.figures.occlusion import write_occlusion

__all__ = ["before_after", "occlusion_per_class"]


def _last_conv(model: nn.Module) -> str:
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__}: no nn.Conv2d to analyse")
    return convs[-1]


def _batches(images, n: int):
    return images.split(n) if isinstance(images, torch.Tensor) else images.batched(n)


def _take(images, index: list[int]) -> torch.Tensor:
    return images[index] if isinstance(images, torch.Tensor) else images.take(index)


def before_after(source: nn.Module, tuned: nn.Module, images, out_dir: str | Path, *,
                 layer: str | None = "conv5", maps: int = 4, k: int = 9, seed: int = 0,
                 mean: torch.Tensor | None = None) -> tuple[list[str], dict]:
    """Fig. 2 for ``maps`` maps of ``layer`` (None: the last conv) of both models over ``images`` (mean-
    subtracted crops). Returns (PNG paths, {"layer", "per_map": {map: overlap}, "mean"}), overlap = the
    fraction of a map's top-``k`` images that are the same in both models."""
    out_dir = Path(out_dir)
    layer = layer or _last_conv(tuned)
    k = min(k, len(images))
    t0 = top_activations(source, images, [layer], k=k)
    t1 = top_activations(tuned, images, [layer], k=k)
    chosen = choose_maps(t0[layer], maps, seed)
    paths = []
    for tag, model, t in (("before", source, t0), ("after", tuned, t1)):
        p, _ = fig2(top_projections(model, images, t, {layer: chosen}), out_dir / f"top9_{tag}", mean=mean)
        paths += p
    per_map = {}
    for c in chosen:
        a, b = set(t0[layer].image_index[c].tolist()), set(t1[layer].image_index[c].tolist())
        per_map[str(c)] = len(a & b) / k
    return paths, {"layer": layer, "per_map": per_map, "mean": sum(per_map.values()) / max(1, len(per_map))}


def occlusion_per_class(model: nn.Module, images, labels: torch.Tensor, out_dir: str | Path,
                        classes: Sequence[str], *, layer: str, mean: torch.Tensor | None = None) -> list[str]:
    """Fig. 7 for the first image of each class the model classifies correctly (else the first of the class)."""
    with torch.no_grad():
        predicted = torch.cat([model(b).argmax(1) for b in _batches(images, 32)])
    chosen = []
    for c in range(len(classes)):
        of_class = (labels == c).nonzero().flatten().tolist()
        right = [i for i in of_class if int(predicted[i]) == c]
        if of_class:
            chosen.append((right or of_class)[0])
    picked, names = _take(images, chosen), [classes[int(labels[i])] for i in chosen]
    maps = occlude_images(model, picked, labels[chosen], layer=layer, names=names)
    return write_occlusion(picked, maps, Path(out_dir) / "occlusion", names, class_names=list(classes), mean=mean)
