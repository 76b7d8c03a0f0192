"""The one entry point for projecting given units ``(image, channel, y, x)``: the fast engine
(:class:`~zfnet.analysis.deconvnet.engine.Deconvnet`) when the model is a plain chain up to the layer, else
batched :func:`~zfnet.analysis.deconvnet.gradients.project` (full frames)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from zfnet.analysis.deconvnet.engine import Deconvnet
from zfnet.analysis.deconvnet.gradients import project
from zfnet.analysis.deconvnet.projections import Projections
from zfnet.analysis.deconvnet.recorder import NotAChainError

__all__ = ["project_units"]


def _long(v) -> torch.Tensor:
    return torch.as_tensor(v, dtype=torch.long).reshape(-1).cpu()


def project_units(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    image_index: Sequence[int] | torch.Tensor,
    channels: Sequence[int] | torch.Tensor,
    ys: Sequence[int] | torch.Tensor,
    xs: Sequence[int] | torch.Tensor,
    *,
    lrn: str = "identity",
    method: str = "auto",
    call: int | None = None,
    batch_size: int = 32,
) -> Projections:
    """Deconvnet projections of the units ``(image_index[j], channels[j], ys[j], xs[j])`` of ``layer``, in order.

    ``method``: "fast" (:class:`Deconvnet`, receptive-field frames; the model must be a plain chain up to the
    layer; on the CPU its forward runs only on the units' receptive fields, ``Deconvnet.cache(units=...)``),
    "autograd" (:func:`project` in batches of ``batch_size``; full-image frames) or "auto" (fast when the chain
    allows it). Each unit is seeded with its own activation. A single value (e.g. one channel)
    applies to every unit.
    """
    if method not in ("auto", "fast", "autograd"):
        raise ValueError(f"method: expected 'auto', 'fast' or 'autograd', got {method!r}")
    n, c, y, x = _long(image_index), _long(channels), _long(ys), _long(xs)
    u = max(len(n), len(c), len(y), len(x))
    n, c, y, x = (t.expand(u).clone() if len(t) == 1 else t for t in (n, c, y, x))  # a single value: every unit
    if not (len(n) == len(c) == len(y) == len(x)):
        raise ValueError("image_index, channels, ys, xs: expected equal lengths")
    if method != "autograd":
        uniq, inv = torch.unique(n, return_inverse=True)
        try:
            # on the CPU the forward runs only where these units' receptive fields reach (fewer MACs); an
            # accelerator runs whole batches faster than many small windows
            dn = Deconvnet(model, [layer], lrn=lrn, call=call)
            on_cpu = next(iter(model.parameters()), images).device.type == "cpu"
            dn.cache(images[uniq], units=(layer, inv, y, x) if on_cpu else None)
            p = dn.project_units(layer, inv, c, y, x)
            p.units["image_index"] = n.clone()
            return p
        except NotAChainError:
            if method == "fast":
                raise
    vals, outs = [], []
    for s in range(0, len(c), batch_size):
        sl = slice(s, s + batch_size)
        out, (_c, _y, _x, v) = project(model, images[n[sl]], layer, c[sl], torch.stack([y[sl], x[sl]], 1),
                                       lrn=lrn, call=call, return_units=True)
        outs.append(out)
        vals.append(v.cpu())
    zeros = torch.zeros(len(c), dtype=torch.long)
    return Projections(torch.cat(outs) if outs else images.new_zeros((0, *images.shape[1:])), zeros,
                       zeros.clone(), tuple(images.shape[-2:]),
                       {"image_index": n, "channel": c, "y": y, "x": x,
                        "value": torch.cat(vals) if vals else torch.zeros(0)})
