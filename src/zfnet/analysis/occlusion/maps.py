"""Occlusion sensitivity (Zeiler & Fergus 2014, Fig. 7): a grey square slid over the image, on any CNN.

For every position of the square one forward pass gives all of the paper's maps at once:

* ``feature``   (b) the total activation (sum over space) of the feature map of ``layer`` (a module path:
  ``"conv5"``, ``"features.28"``, ``"layer4.1"``) that is strongest on the unoccluded image (``channel``);
* ``prob``      (d) the probability of the correct class ``target`` (softmax of the model's output);
* ``top_class`` / ``top_prob``  (e) the most probable class and its probability;
* ``projection`` (c) the deconvnet projection of that feature map's top activation (``project=True``).

Conventions
-----------
* Positions: the square (``size`` x ``size`` pixels) has its top / left corner at ``0, stride, 2*stride,
  ...`` as long as it fits inside the image, i.e. ``n = (H - size) // stride + 1`` positions per axis
  (Captum's ``Occlusion`` adds one more position, truncated at the border, when ``stride`` does not divide
  ``H - size``). ``maps["ys"]``/``maps["xs"]`` hold the top / left coordinates.
* ``fill``: the value of the square, a number or one value per channel (default 0: the images are
  mean-subtracted, so 0 is the mean, the paper's "grey").
* "Strongest feature map": by default (``rank_by="max"``) the channel holding the largest single
  activation of ``layer`` on the unoccluded image (``rank_by="sum"``: the largest total). ``channel=``
  overrides the choice. A layer module that runs several times per forward needs ``call=``.
* The model is evaluated in eval mode; every module's own flag is restored afterwards.

How the sweep is computed (``method``)
--------------------------------------
``"incremental"`` (chosen by ``"auto"`` where the model's layers allow it): only the activations inside
each square's receptive field are recomputed, along the chain of conv / max-pool / point-wise modules from
the input; the rest of the model runs in full on many positions at once (see
:mod:`zfnet.analysis.occlusion.incremental`; exact up to float rounding, checked in float64 by the tests).
Torchvision's ``alexnet`` / ``vgg``, and our models, qualify; residual networks (``resnet18``) do not.

``"full"``: occluded copies built with one broadcast mask (``torch.where(mask, fill, image)``) and run
through the whole model in batches, the layer's map summed inside a forward hook
(:mod:`zfnet.analysis.occlusion.full`, with the memory budget).

Chunks: positions run in batches of ``chunk``. ``chunk=None`` derives it from memory: the bytes one
position needs are estimated from the unoccluded run, times 2; the budget is half the free memory of a CUDA
device, or on CPU a quarter of the available RAM capped at 1 GiB; never more than all positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from zfnet.analysis import deconvnet, hooks
from zfnet.analysis.occlusion import incremental as inc
from zfnet.analysis.occlusion.full import as_logits, default_chunk, full_chunk, memory_budget

__all__ = ["memory_budget", "occlusion_maps", "occlusion_positions", "pixel_attribution", "projection"]


# ----------------------------------------------------------------------------------------- helpers
def occlusion_positions(length: int, size: int, stride: int) -> torch.Tensor:
    """Top (or left) coordinates of the square along an axis of ``length`` pixels: 0, stride, ... while it fits."""
    if size < 1 or stride < 1:
        raise ValueError(f"occlusion size and stride must be positive ints, got size={size}, stride={stride}")
    if size > length:
        raise ValueError(f"occlusion size {size} is larger than the image side {length}")
    return torch.arange(0, length - size + 1, stride)


def pixel_attribution(
    values: torch.Tensor, reference: float, size: int, stride: int, hw: tuple[int, int]
) -> torch.Tensor:
    """Spread a position map onto pixels the way Captum's ``Occlusion`` does.

    Each pixel gets the mean of ``reference - values[i, j]`` over the squares that cover it (0 where no
    square does). With ``values`` the probability map and ``reference`` the unoccluded probability this is
    Captum's attribution, for the positions both share (see the module docstring).
    """
    h, w = hw
    ys, xs = occlusion_positions(h, size, stride), occlusion_positions(w, size, stride)
    diff = (reference - values.double()).cpu()
    total = torch.zeros(h, w, dtype=torch.float64)
    count = torch.zeros(h, w, dtype=torch.float64)
    for i, y in enumerate(ys.tolist()):
        for j, x in enumerate(xs.tolist()):
            total[y : y + size, x : x + size] += diff[i, j]
            count[y : y + size, x : x + size] += 1
    return torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))


# -------------------------------------------------------------------------------------- helpers
def _prepare_image(image: torch.Tensor, model: nn.Module) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image: expected a torch.Tensor (3, H, W), got {type(image).__name__}")
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"image: expected one image (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
        image = image[0]
    if image.dim() != 3:
        raise ValueError(f"image: expected (3, H, W), got {tuple(image.shape)}")
    dtype, device = hooks.dtype_device(model)
    return image.to(device=device, dtype=dtype)


def _fill_tensor(fill: Any, channels: int, like: torch.Tensor) -> torch.Tensor:
    f = torch.as_tensor(fill, dtype=like.dtype, device=like.device).flatten()
    if f.numel() == 1:
        f = f.expand(channels)
    if f.numel() != channels:
        raise ValueError(f"fill: expected a number or {channels} per-channel values, got {f.numel()} values")
    return f.reshape(channels, 1, 1)


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=1)


def projection(model: nn.Module, image: torch.Tensor, layer: str, channel: int, call: int | None = None
               ) -> torch.Tensor:
    """(c) of Fig. 7: :func:`zfnet.analysis.deconvnet.project` of map ``channel`` of ``layer`` for one image
    (3, H, W) -> (1, 3, H, W) on the CPU."""
    return _project(model, _prepare_image(image, model), layer, channel, call)


def _project(model: nn.Module, x: torch.Tensor, layer: str, channel: int, call: int | None = None
             ) -> torch.Tensor:
    channels = torch.tensor([channel], device=x.device)
    with torch.enable_grad():  # the deconvnet is autograd-based; the sweep itself runs under no_grad
        kw = {"call": call} if call is not None else {}
        return deconvnet.project(model, x[None], layer, channels, **kw).detach().cpu()


# ------------------------------------------------------------------------------------------- API
@torch.no_grad()
def occlusion_maps(
    model: nn.Module,
    image: torch.Tensor,
    target: int,
    size: int,
    stride: int,
    layer: str | nn.Module = "conv5",
    fill: float | Sequence[float] | torch.Tensor = 0.0,
    chunk: int | None = None,
    *,
    channel: int | None = None,
    rank_by: str = "max",
    method: str = "auto",
    bands: int | None = None,
    project: bool = False,
    keep_probs: bool = False,
    progress: bool = False,
    call: int | None = None,
) -> dict[str, Any]:
    """Occlusion maps of one mean-subtracted ``image`` (3, H, W) for the correct class ``target``.

    See the module docstring for the conventions. ``size`` / ``stride``: side and step of the square in
    pixels; ``layer``: module path of the layer whose strongest map is read (paper: ``conv5``); ``fill``: the square's
    value (number or per-channel); ``chunk``: positions per batch (None: from the memory budget);
    ``channel`` / ``rank_by``: which map; ``method``: "auto", "incremental" or "full"; ``bands``: the
    incremental sweep groups positions into bands x bands groups, each with its own (smaller) window
    sizes (None: 1; on a 2-core CPU more bands saved conv work but not time); ``project``: also compute (c);
    ``keep_probs``: also return the whole softmax per position; ``progress``: a tqdm bar; ``call``: which
    call of a layer module that runs several times per forward.

    Returns a dict: ``feature``, ``prob``, ``top_prob`` (float (n_y, n_x)), ``top_class`` (long (n_y, n_x)),
    ``ys``, ``xs`` (tops / lefts of the square), ``channel`` (int), ``unoccluded`` (dict of ``feature``,
    ``prob``, ``top_class``, ``top_prob``), ``projection`` ((1, 3, H, W) or None), ``probs`` ((n_y, n_x, C),
    only with ``keep_probs``), and ``size``, ``stride``, ``layer``, ``target``, ``fill``, ``method``,
    ``chunk``. Tensors are on the CPU.
    """
    if method not in ("auto", "incremental", "full"):
        raise ValueError(f"method: expected 'auto', 'incremental' or 'full', got {method!r}")
    if rank_by not in ("max", "sum"):
        raise ValueError(f"rank_by: expected 'max' or 'sum', got {rank_by!r}")
    x = _prepare_image(image, model)
    layer_mod = hooks.find_layer(model, layer)
    layer = hooks.path_of(model, layer)
    c_in, h, w = x.shape
    ys, xs = occlusion_positions(h, size, stride), occlusion_positions(w, size, stride)
    n_y, n_x = len(ys), len(xs)
    n_pos = n_y * n_x
    dev = x.device
    ys_d, xs_d = ys.to(dev), xs.to(dev)
    fill_t = _fill_tensor(fill, c_in, x)
    if chunk is not None and (isinstance(chunk, bool) or int(chunk) != chunk or chunk < 1):
        raise ValueError(f"chunk: expected a positive int or None, got {chunk!r}")

    with hooks.eval_mode(model):
        which = hooks.calls(model, x[None], [layer_mod], call)
        which = {layer: which[hooks.path_of(model, layer_mod)]}
        plan = inc.plan_chain(model, x[None], layer, which[layer]) if method != "full" else None
        if method == "auto":
            method = "incremental" if plan is not None else "full"
        elif method == "incremental" and plan is None:
            raise ValueError(f"method='incremental': the model's layers do not allow it up to layer {layer!r} (it "
                             "needs a chain of Conv2d / MaxPool2d / point-wise modules from the input to the layer, "
                             "with the rest of the model reading only the chain's output); use method='full'")
        # ---- the unoccluded image
        if method == "incremental":
            cache = inc.cache_forward(plan[0], plan[1], x[None])
            layer_map = cache.layer_out
            logits0 = as_logits(inc.rest_forward(model, plan[0], cache.conv_out, tuple(x.shape)))
        else:
            outs, logits0 = hooks.run(model, x[None], [layer], call=which, stop=False,
                                       reduce=lambda _p, o: o[0].detach().clone())
            layer_map, logits0 = outs[layer], as_logits(logits0)
        if layer_map.dim() != 3:
            raise ValueError(f"layer {layer!r}: expected a (C, H, W) feature map per image, got {tuple(layer_map.shape)}")
        n_classes = logits0.shape[1]
        if isinstance(target, bool) or not 0 <= int(target) < n_classes:
            raise ValueError(f"target: expected a class index in [0, {n_classes}), got {target!r}")
        target = int(target)
        probs0 = _softmax(logits0)[0]
        if channel is None:
            flat = layer_map.flatten(1)
            channel = int((flat.amax(1) if rank_by == "max" else flat.sum(1)).argmax())
        elif not 0 <= int(channel) < layer_map.shape[0]:
            raise ValueError(f"channel: expected an index in [0, {layer_map.shape[0]}), got {channel!r}")
        channel = int(channel)
        unoccluded = {
            "feature": float(layer_map[channel].sum()),
            "prob": float(probs0[target]),
            "top_class": int(probs0.argmax()),
            "top_prob": float(probs0.max()),
        }

        # ---- groups of positions (incremental: bands; full: one group)
        if method == "incremental":
            if bands is None:
                bands = 1
            groups = [(by, bx) for by in inc.bands(n_y, bands) for bx in inc.bands(n_x, bands)]
        else:
            groups = [(torch.arange(n_y), torch.arange(n_x))]

        if chunk is None:  # from the memory budget
            chunk = default_chunk(model, x, cache if method == "incremental" else None, ys_d, xs_d, size)
        chunk = int(chunk)

        feature = torch.empty(n_pos, dtype=x.dtype, device=dev)
        prob = torch.empty(n_pos, dtype=probs0.dtype, device=dev)
        top_prob = torch.empty(n_pos, dtype=probs0.dtype, device=dev)
        top_class = torch.empty(n_pos, dtype=torch.long, device=dev)
        all_probs = torch.empty(n_pos, n_classes, dtype=probs0.dtype, device=dev) if keep_probs else None

        def record(idx: torch.Tensor, logits: torch.Tensor) -> None:
            p = _softmax(logits)
            prob[idx] = p[:, target]
            tp, tc = p.max(dim=1)
            top_prob[idx], top_class[idx] = tp, tc
            if all_probs is not None:
                all_probs[idx] = p

        # incremental: the fc layers run on many positions at once (they stream their whole weight
        # matrices per call, so big batches pay); the conv windows, in chunks of ``chunk``
        fc_rows = n_pos
        pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        if method == "incremental":
            d = cache.conv_out[0].numel()
            per_row = 2 * (d + sum(m.out_features for m in model.modules() if isinstance(m, nn.Linear)) + n_classes)
            fc_rows = int(max(chunk, min(n_pos, memory_budget(dev) // max(1, 2 * per_row * x.element_size()))))

        def flush() -> None:
            if pending:
                idx = torch.cat([i for i, _ in pending])
                record(idx, as_logits(inc.rest_forward(model, plan[0], torch.cat([f for _, f in pending]),
                                                     tuple(x.shape))))
                pending.clear()

        work = []
        for by, bx in groups:
            gy, gx = by.to(dev), bx.to(dev)
            flat_y = gy.repeat_interleave(len(gx))
            flat_x = gx.repeat(len(gy))
            for start in range(0, len(flat_y), chunk):
                work.append((gy, gx, flat_y[start : start + chunk], flat_x[start : start + chunk]))
        if progress:
            from zfnet.progress import bar

            work = bar(work, desc="occlusion", unit="chunk")
        plans: dict[tuple[int, int], dict] = {}
        win0 = fill_t.reshape(1, 1, 1, c_in).expand(1, size, size, c_in)
        n_pending = 0
        for gy, gx, iy, ix in work:
            idx = iy * n_x + ix
            if method == "incremental":
                key = (int(gy[0]), int(gx[0]))
                if key not in plans:
                    plans[key] = inc.windows(cache, ys_d[gy], xs_d[gx], size)
                # the group's window starts are indexed by position within the group
                fmap, conv = inc.incremental_chunk(cache, plans[key], win0, iy - gy[0], ix - gx[0],
                                                   ys_d[gy], xs_d[gx], channel)
                if n_pending + len(idx) > fc_rows:
                    flush()
                    n_pending = 0
                pending.append((idx, conv))
                n_pending += len(idx)
            else:
                fsum, logits = full_chunk(model, x, fill_t, ys_d[iy], xs_d[ix], size, layer, channel, which)
                record(idx, logits)
                feature[idx] = fsum.to(feature.dtype)
                continue
            feature[idx] = fmap.flatten(1).sum(1).to(feature.dtype)
        flush()

    out = {
        "feature": feature.reshape(n_y, n_x).cpu(),
        "prob": prob.reshape(n_y, n_x).cpu(),
        "top_class": top_class.reshape(n_y, n_x).cpu(),
        "top_prob": top_prob.reshape(n_y, n_x).cpu(),
        "ys": ys,
        "xs": xs,
        "channel": channel,
        "unoccluded": unoccluded,
        "projection": _project(model, x, layer, channel, call) if project else None,
        "size": int(size),
        "stride": int(stride),
        "layer": layer,
        "target": target,
        "fill": fill_t.flatten().cpu(),
        "method": method,
        "chunk": chunk,
    }
    if all_probs is not None:
        out["probs"] = all_probs.reshape(n_y, n_x, n_classes).cpu()
    return out
