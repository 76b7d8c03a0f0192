"""Each unit's evolution during training for the atlas (Fig. 4 per unit): at every saved checkpoint, the
map's strongest activation over the images (``top_activations`` with k=1, one pass per checkpoint)
projected by the deconvnet (``project_top_units``), in training order."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from zfnet.analysis.deconvnet.batched import project_top_units
from zfnet.analysis.topk import top_activations

__all__ = ["unit_evolution"]


def unit_evolution(checkpoints: Mapping[str, nn.Module], images, units: Mapping[str, Sequence[int]], *,
                   lrn: str = "identity", max_units: int = 1024, batch_size: int = 32
                   ) -> Iterator[tuple[str, int, list[torch.Tensor]]]:
    """``(layer, channel, [projection (3, h, w) per checkpoint])`` for every unit of ``units`` (``{layer:
    [channel, ...]}``); ``checkpoints``: ``{label: model}`` in training order. Holds one projection per
    unit and checkpoint (the budget's units), and one batch of images at a time while searching."""
    layers = [layer for layer, chans in units.items() if len(chans)]
    per: dict[tuple[str, int], list[torch.Tensor]] = {(l, int(c)): [] for l in layers for c in units[l]}
    for _label, model in checkpoints.items():
        tk = top_activations(model, images, layers, k=1, batch_size=batch_size)
        chans = {l: [int(c) for c in units[l]] for l in layers}
        for chunk in project_top_units(model, images, tk, channels=chans, lrn=lrn, max_units=max_units,
                                       batch_size=batch_size):
            for i, c in enumerate(chunk.channels):
                per[(chunk.layer, int(c))].append(chunk.deconv.values[i])
    for (layer, c), tiles in per.items():
        yield layer, c, tiles
