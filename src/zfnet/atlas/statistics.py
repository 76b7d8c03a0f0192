"""Per-map statistics of whole layers over a stream (issue 28, part B).

STAND-IN: the smallest honest version of the contract's :func:`unit_statistics`: the top-k by
:func:`zfnet.analysis.topk.top_activations` and a second pass for the statistics; the one-pass version
replaces this file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from zfnet.analysis import hooks
from zfnet.analysis.topk import TopK, top_activations

__all__ = ["LayerStats", "selectivity_index", "unit_statistics"]


class LayerStats(NamedTuple):
    topk: TopK
    top_labels: torch.Tensor   # (C, k) int64
    mean: torch.Tensor         # (C,)
    max: torch.Tensor          # (C,)
    fire_rate: torch.Tensor    # (C,)
    class_mean: torch.Tensor   # (C, n_classes)
    selectivity: torch.Tensor  # (C,)


def selectivity_index(class_mean: torch.Tensor) -> torch.Tensor:
    """Morcos et al. (2018): (mu_max - mu_rest) / (mu_max + mu_rest) over the classes seen; NaN when undefined."""
    seen = ~torch.isnan(class_mean).all(0)
    cm = class_mean[:, seen]
    if cm.shape[1] < 2:
        return torch.full((class_mean.shape[0],), float("nan"))
    top, arg = cm.max(1)
    rest = (cm.sum(1) - top) / (cm.shape[1] - 1)
    den = top + rest
    return torch.where((den > 0) & (cm.min(1).values >= 0), (top - rest) / den.clamp_min(1e-30),
                       torch.tensor(float("nan")))


@torch.no_grad()
def unit_statistics(model: nn.Module, stream, layers: Sequence[str], *, n_classes: int, k: int = 9) -> dict[str, LayerStats]:
    layers = list(layers)
    topk = top_activations(model, stream, layers, k=k)
    dtype, device = hooks.dtype_device(model)
    acc: dict[str, dict] = {}
    labels_all = []
    with hooks.eval_mode(model):
        for x, y, _ in stream:
            outs, _ = hooks.run(model, x.to(device, dtype), layers, reduce=lambda _p, o: o.detach().float().cpu())
            labels_all.append(y)
            for layer in layers:
                a = outs[layer]
                a = a[:, :, None, None] if a.ndim == 2 else a
                s = acc.setdefault(layer, {"sum": 0.0, "n": 0, "max": None, "fire": 0.0,
                                           "csum": torch.zeros(a.shape[1], n_classes),
                                           "ccount": torch.zeros(n_classes)})
                s["sum"] = s["sum"] + a.sum((0, 2, 3)).double()
                s["n"] += a.shape[0] * a.shape[2] * a.shape[3]
                m = a.amax((0, 2, 3))
                s["max"] = m if s["max"] is None else torch.maximum(s["max"], m)
                s["fire"] = s["fire"] + (a > 0).sum((0, 2, 3)).double()
                s["csum"].index_add_(1, y.long(), a.mean((2, 3)).t())
                s["ccount"] += torch.bincount(y.long(), minlength=n_classes).float()[:n_classes]
    labels = torch.cat(labels_all).long()
    out = {}
    for layer in layers:
        s, t = acc[layer], topk[layer]
        cm = s["csum"] / s["ccount"].clamp_min(1)
        cm[:, s["ccount"] == 0] = float("nan")
        top_labels = torch.where(t.image_index >= 0, labels[t.image_index.clamp_min(0)], torch.full_like(t.image_index, -1))
        out[layer] = LayerStats(t, top_labels, (s["sum"] / s["n"]).float(), s["max"], (s["fire"] / s["n"]).float(),
                                cm, selectivity_index(cm))
    return out
