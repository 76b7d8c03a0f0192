"""Deconvnet projections (Zeiler & Fergus 2014, §2.1, Fig. 1): one activation mapped back to pixel space.

To project the unit ``(channel c, row y, column x)`` of a layer's output for one image: seed the layer's
output with a one-hot map holding the unit's own activation value and pass it down to the pixels with
*unpool* (each max pool's backward places a value at the input position the forward pass picked, the
switches; overlapping 3x3/2 pools *sum* at shared switches: the linear adjoint of max pooling, exactly
autograd's ``max_pool2d`` backward), *rectify* (a ReLU's backward is ``relu(incoming signal)``) and
*filter* (the transposed convolution with the same filters, no biases). So the deconvnet is autograd with
every ReLU's backward replaced.

Where things live:

* :func:`project` (any model, autograd, one backward per batch) and its siblings ``guided_backprop`` and
  ``saliency``: :mod:`zfnet.analysis.gradients`;
* the ReLU rules, LRN choice (``lrn="identity"`` paper / ``"gradient"`` Captum) and refusals of other
  nonlinearities (named by module path): :mod:`zfnet.analysis.rectifiers`;
* the fast engine for many units on plain conv/ReLU/pool/LRN chains (:class:`Deconvnet`, receptive-field
  windows, cached switches): :mod:`zfnet.analysis.deconv_engine`, its steps down one op on windows in
  :mod:`zfnet.analysis.deconv_ops`, on the chain recorded by :mod:`zfnet.analysis.chain`; its output
  :class:`Projections` (receptive-field frames).

:func:`project_units` is the one entry point for projecting given units ``(image, channel, y, x)``: the
fast engine when the model is a plain chain up to the layer, else batched :func:`project` (full frames).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from zfnet.analysis._hooks import find_layer as resolve_layer
from zfnet.analysis.chain import NotAChainError
from zfnet.analysis.deconv_engine import Deconvnet
from zfnet.analysis.gradients import guided_backprop, project, saliency, select_units
from zfnet.analysis.projections import Projections
from zfnet.analysis.rectifiers import LRN_MODES, UnsupportedOpError

__all__ = [
    "Deconvnet",
    "LRN_MODES",
    "NotAChainError",
    "Projections",
    "UnsupportedOpError",
    "guided_backprop",
    "project",
    "project_units",
    "resolve_layer",
    "saliency",
    "select_units",
]


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
