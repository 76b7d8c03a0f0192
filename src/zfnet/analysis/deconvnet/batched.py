"""Top units of whole layers projected together (issue 28, part A).

STAND-IN: the smallest honest version of the contract's :func:`project_top_units`, a loop over
:func:`~zfnet.analysis.deconvnet.units.project_units` per chunk of maps and
:func:`~zfnet.analysis.deconvnet.gradients.guided_backprop`; the batched engine replaces this file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from zfnet.analysis.deconvnet.gradients import guided_backprop
from zfnet.analysis.deconvnet.projections import Projections
from zfnet.analysis.deconvnet.units import project_units
from zfnet.analysis.topk import TopK, pick

__all__ = ["UnitProjections", "project_top_units"]


@dataclass
class UnitProjections:
    """One chunk of units of one layer, map-major, each map's units strongest first."""

    layer: str
    channels: list[int]
    units: dict[str, torch.Tensor]  # image_index (stream index), channel, y, x, value: (len(channels)*k,)
    deconv: Projections
    guided: Projections | None
    patches: torch.Tensor  # (U, 3, h, w): the input windows under deconv's frames (zero outside the image)


def project_top_units(model: nn.Module, images, topk: Mapping[str, TopK], *,
                      channels: Mapping[str, Sequence[int]] | None = None, lrn: str = "identity",
                      guided: bool = False, max_units: int = 1024, batch_size: int = 32) -> Iterator[UnitProjections]:
    """The top-k units of every map of ``topk`` (or of ``channels``), projected chunk by chunk (at most
    ``max_units`` units per chunk), deconvnet and (``guided``) guided backprop in the same frames."""
    wanted = {layer: list(range(t.values.shape[0])) for layer, t in topk.items()} if channels is None \
        else {layer: [int(c) for c in cs] for layer, cs in channels.items()}
    for layer, chans in wanted.items():
        t = topk[layer]
        k = t.values.shape[1]
        per = max(1, int(max_units) // k)
        for s in range(0, len(chans), per):
            chunk = chans[s:s + per]
            c = torch.tensor(chunk, dtype=torch.long).repeat_interleave(k)
            n, y, x = (getattr(t, f)[chunk].reshape(-1) for f in ("image_index", "y", "x"))
            picked = pick(images, n)
            rows = picked.rows(n)
            p = project_units(model, picked.images, layer, rows, c, y, x, lrn=lrn, batch_size=batch_size)
            p.units["image_index"] = n.clone()
            g = None
            if guided:
                full = torch.cat([guided_backprop(model, picked.images[rows[i:i + batch_size]], layer,
                                                  c[i:i + batch_size], torch.stack([y, x], 1)[i:i + batch_size],
                                                  lrn=lrn).detach()
                                  for i in range(0, len(c), batch_size)])
                g = Projections(p.crop(full, torch.arange(len(c))), p.top.clone(), p.left.clone(), p.image_size,
                                dict(p.units))
            yield UnitProjections(layer, chunk, dict(p.units), p, g, p.crop(picked.images, rows))
