"""The deconvnet projections the Fig. 2 and Fig. 6 figures show (their writers: ``zfnet.figures.deconv``).

* :func:`top_projections`: per layer, the top-``k`` units of chosen maps projected to pixel space, with the
  image patches under them (Fig. 2);
* :func:`conv2_projections`: a model's layer-1 filters and the strongest unit of ``n_maps`` conv2 maps,
  projected (Fig. 6).

``images``: a (N, 3, H, W) tensor or a stream (re-iterable batches with ``take(indices)``, see
:func:`zfnet.analysis.topk.pick`): after the searches only the images the figures show are fetched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from zfnet.analysis.deconvnet.units import project_units
from zfnet.analysis.filters import first_conv
from zfnet.analysis.topk import TopK, choose_maps, pick, top_activations

__all__ = ["conv2_projections", "top_projections"]


def top_projections(model: nn.Module, images, topk: Mapping[str, TopK], maps: Mapping[str, Sequence[int]], *,
                    lrn: str = "identity") -> Iterator[tuple[str, dict]]:
    """Per layer of ``maps`` (``{layer: [channel, ...]}``, in order), lazily (one layer's projections held at a
    time): ``(layer, {"maps": [c, ...], "k": k, "projections": (M*k, 3, h, w), "patches": (M*k, 3, h, w),
    "units": [{"image_index", "y", "x", "value", "window"} per unit]})``, map by map, strongest unit first;
    ``window``: the [top, left, bottom, right] the projection covers. ``topk``: ``top_activations`` of those
    layers. The winning images of every layer are fetched once, before the first layer."""
    layers = list(maps)
    picked = pick(images, torch.cat([topk[layer].image_index[list(maps[layer])].reshape(-1) for layer in layers]))
    for layer in layers:
        t = topk[layer]
        chans = list(maps[layer])
        kk = t.values.shape[1]
        sel_c = torch.tensor(chans, dtype=torch.long).repeat_interleave(kk)
        sel_n = t.image_index[chans].reshape(-1)
        sel_y, sel_x = t.y[chans].reshape(-1), t.x[chans].reshape(-1)
        rows_n = picked.rows(sel_n)
        p = project_units(model, picked.images, layer, rows_n, sel_c, sel_y, sel_x, lrn=lrn)
        h, w = p.values.shape[-2:]
        units = [{"image_index": int(sel_n[j]), "y": int(sel_y[j]), "x": int(sel_x[j]),
                  "value": float(p.units["value"][j]),
                  "window": [int(p.top[j]), int(p.left[j]), int(p.top[j]) + h, int(p.left[j]) + w]}
                 for j in range(len(sel_n))]
        yield layer, {"maps": [int(c) for c in chans], "k": kk, "projections": p.values,
                      "patches": p.crop(picked.images, rows_n), "units": units}


def conv2_projections(model: nn.Module, images, *, n_maps: int = 16, lrn: str = "identity", seed: int = 0) -> dict:
    """Fig. 6's data for one model: ``{"filters": the first conv's weight, "maps": [c, ...] (``n_maps`` conv2
    maps, ``choose_maps``), "projections": (M, 3, h, w), "units": [{"image_index", "y", "x", "value"} per
    map]}``: each map's strongest unit over ``images`` (one pass), projected."""
    t = top_activations(model, images, ["conv2"], k=1)["conv2"]
    chans = choose_maps(t, n_maps, seed)
    n = t.image_index[chans, 0]
    picked = pick(images, n)
    p = project_units(model, picked.images, "conv2", picked.rows(n), chans, t.y[chans, 0], t.x[chans, 0], lrn=lrn)
    units = [{"image_index": int(n[j]), "y": int(p.units["y"][j]), "x": int(p.units["x"][j]),
              "value": float(p.units["value"][j])} for j in range(len(chans))]
    return {"filters": first_conv(model)[1].weight, "maps": [int(c) for c in chans], "projections": p.values,
            "units": units}
