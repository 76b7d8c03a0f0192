"""Unit ablation: the top-1 accuracy a model loses when one feature map alone is zeroed.

The survey's ablation approach (remove a part, measure what is lost; the paper's Table 3 removes whole
layers) brought down to single units, as Morcos et al. 2018 do: for each listed unit (layer, channel), the
map is set to 0 at the layer's output (for our models the paper's layer output, the block after ReLU /
pool / norm) and the first ``images`` images of a stream are classified again.

Two paths, the same numbers:

* models with ``forward_to`` / ``forward_from`` (:class:`zfnet.models.paper_cnn.PaperCNN`): the layer's
  output for the images is computed once and kept (``images`` x the layer's size: the demo's conv1,
  200 x 48 x 27 x 27 floats, is 28 MB; ZFNet's conv1 at 224, 96 x 55 x 55 floats, is 1.2 MB an image);
  then only the layers above run, on ``batch_units`` ablated copies of the cached maps stacked in one batch.
  The next block's conv (or fc) is linear: its output for the intact maps is kept too (``images`` x its
  size) and each copy's is that minus the zeroed map's own contribution (1/C of the conv's work). A map
  that is already 0 on every image (a dead unit) loses nothing and is not run.
* any other model (torchvision resnet18, vgg16): a full forward of ``batch_units`` copies of each image
  batch, a forward hook zeroing each copy's own map (correct, slower).

Memory: the cached layer output (and the next conv's), plus one forward of ``batch_size`` rows (``batch_units`` copies of
``batch_size // batch_units`` images, at least one): bounded by ``images``, ``batch_units`` and
``batch_size``, never by the stream's length.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn

from zfnet.analysis import hooks
from zfnet.atlas.statistics import labelled_batches

__all__ = ["Ablation", "unit_ablation"]


class Ablation(NamedTuple):
    baseline: float  # top-1 accuracy of the intact model on the images used
    images: int  # images used
    drop: dict[str, dict[int, float]]  # {layer: {channel: baseline - accuracy with that map zeroed}}


def first_images(stream, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images of ``stream`` and their labels (fewer when the stream has fewer); a visualize
    stream reads only those (its ``head(n)``)."""
    if callable(getattr(stream, "head", None)):
        x, y = stream.head(n)
        if not len(x):
            raise ValueError("stream: no images")
        return x, torch.as_tensor(y).long()
    xs, ys, got = [], [], 0
    for xb, yb in labelled_batches(stream):
        take = min(len(xb), n - got)
        xs.append(xb[:take])
        ys.append(yb[:take])
        got += take
        if got >= n:
            break
    if not got:
        raise ValueError("stream: no images")
    return torch.cat(xs), torch.cat(ys)


def _zero_(z: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
    """``z`` (U*b, C, ...), U copies of b images: sets copy u's map ``channels[u]`` to 0, in place."""
    u = len(channels)
    z.view(u, z.shape[0] // u, z.shape[1], -1)[torch.arange(u), :, channels.to(z.device)] = 0
    return z


def _check_channels(layer: str, channels: list[int], c: int) -> None:
    bad = [ch for ch in channels if not 0 <= ch < c]
    if bad:
        raise ValueError(f"units[{layer!r}]: channels {bad[:5]} outside the layer's 0..{c - 1} ({c} maps)")


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[s:s + batch_size]).argmax(1).cpu() for s in range(0, len(x), batch_size)])


class _Above:
    """The layers above ``layer`` of a model with ``forward_from``, run on copies of the layer's cached output
    with one map zeroed per copy.

    When the next block starts with a conv (groups 1, zero padding) or a linear layer, that layer's output
    for the intact maps is computed once (kept beside the cache) and each copy's is that minus the zeroed
    map's own contribution (a grouped conv of one input map per copy: 1/C of the layer's work); the rest of
    the block and the layers above run on the result. Otherwise the copies run through ``forward_from``."""

    def __init__(self, model: nn.Module, layer: str, cache: torch.Tensor, batch_size: int):
        layers = list(model.feature_layers)
        self.model, self.layer = model, layer
        self.next = layers[layers.index(layer) + 1] if layer != layers[-1] else None
        modules = list(model.block(self.next).children()) if self.next is not None else []
        first = modules[0] if modules else None
        fits = isinstance(first, nn.Linear) or (
            isinstance(first, nn.Conv2d) and first.groups == 1 and first.padding_mode == "zeros")
        self.first, self.rest = (first, modules[1:]) if fits else (None, [])
        if self.first is not None:
            self.pre = torch.cat([self.first(self._into(cache[s:s + batch_size]))
                                  for s in range(0, len(cache), batch_size)])

    def _into(self, a: torch.Tensor) -> torch.Tensor:
        return torch.flatten(a, 1) if isinstance(self.first, nn.Linear) else a

    def logits(self, a: torch.Tensor, start: int, chunk: torch.Tensor) -> torch.Tensor:
        """Outputs (U*b, classes), copy-major, for images ``start..start+b`` (``a``: their cached maps)."""
        u, b = len(chunk), len(a)
        if self.first is None:
            return self.model.forward_from(_zero_(a.repeat(u, *([1] * (a.ndim - 1))), chunk), self.layer)
        f, sel = self.first, a[:, chunk.to(a.device)]  # (b, U, ...): each copy's zeroed map
        cout = f.weight.shape[0]
        if isinstance(f, nn.Conv2d):
            w = f.weight[:, chunk].transpose(0, 1).reshape(u * cout, 1, *f.weight.shape[2:])
            part = torch.nn.functional.conv2d(sel, w, None, f.stride, f.padding, f.dilation, groups=u)
            part = part.view(b, u, cout, *part.shape[2:]).transpose(0, 1)
        else:
            hw = a[0, 0].numel() if a.ndim > 2 else 1
            part = torch.einsum("bup,oup->ubo", sel.reshape(b, u, hw), f.weight.view(cout, -1, hw)[:, chunk])
        x = (self.pre[start:start + b].unsqueeze(0) - part).reshape(u * b, *self.pre.shape[1:])
        for m in self.rest:
            x = m(x)
        return self.model.forward_from(x, self.next)


@torch.no_grad()
def _correct_cached(model, x, y, layer, channels, batch_units, batch_size, progress) -> dict[int, int]:
    """Correct predictions per channel, from the layer's cached output (models with ``forward_from``); a
    dead channel (0 on every image: zeroing it changes nothing) is left out."""
    cache = torch.cat([model.forward_to(x[s:s + batch_size], layer) for s in range(0, len(x), batch_size)])
    _check_channels(layer, channels, cache.shape[1])
    flat = cache.reshape(len(cache), cache.shape[1], -1)
    dead = set(torch.nonzero((flat == 0).all(2).all(0)).flatten().tolist())
    live = [ch for ch in channels if ch not in dead]
    progress.update(len(channels) - len(live))
    above = _Above(model, layer, cache, batch_size)
    correct: dict[int, int] = {}
    for s in range(0, len(live), batch_units):
        chunk = torch.tensor(live[s:s + batch_units])
        u = len(chunk)
        b = max(1, batch_size // u)
        hits = torch.zeros(u, dtype=torch.long)
        for i in range(0, len(cache), b):
            pred = above.logits(cache[i:i + b], i, chunk).argmax(1).cpu().view(u, -1)
            hits += (pred == y[i:i + b]).sum(1)
        correct.update(zip(chunk.tolist(), hits.tolist()))
        progress.update(u)
    return correct


@torch.no_grad()
def _correct_hooked(model, x, y, layer, channels, batch_units, batch_size, progress) -> dict[int, int]:
    """Correct predictions per channel by full forwards, a hook zeroing each copy's map (any model)."""
    which = hooks.calls(model, x[:1], [layer])
    path = hooks.path_of(model, layer)
    outs, _ = hooks.run(model, x[:1], [layer], reduce=lambda _p, o: o.shape, call=which)
    _check_channels(layer, channels, outs[path][1])
    module = hooks.find_layer(model, layer)
    correct = {}
    for s in range(0, len(channels), batch_units):
        chunk = torch.tensor(channels[s:s + batch_units])
        u = len(chunk)
        b = max(1, batch_size // u)
        hits = torch.zeros(u, dtype=torch.long)
        state = {"call": 0}

        def hook(_m, _i, out):
            k = state["call"]
            state["call"] += 1
            return _zero_(out.clone(memory_format=torch.contiguous_format), chunk) if k == which[path] else None

        with hooks.attached([(module, hook)]):
            for i in range(0, len(x), b):
                xb = x[i:i + b]
                state["call"] = 0
                pred = model(xb.repeat(u, *([1] * (xb.ndim - 1)))).argmax(1).cpu().view(u, len(xb))
                hits += (pred == y[i:i + b]).sum(1)
        correct.update(zip(chunk.tolist(), hits.tolist()))
        progress.update(u)
    return correct


def unit_ablation(model: nn.Module, stream, units: Mapping[str, Sequence[int]], *, images: int,
                  batch_units: int = 16, batch_size: int = 256, progress: bool = True) -> Ablation:
    """Top-1 accuracy drop of each unit of ``units`` ({layer: channels}) zeroed alone, over the first
    ``images`` images of ``stream`` (batches of ``(images, labels, ...)`` or one ``(images, labels)`` pair).

    ``batch_units``: ablated copies per forward; ``batch_size``: rows per forward (module docstring).
    The model runs in eval mode (restored after)."""
    from zfnet.progress import bar

    if images < 1:
        raise ValueError(f"images: expected a positive int, got {images!r}")
    if batch_units < 1 or batch_size < 1:
        raise ValueError(f"batch_units, batch_size: expected positive ints, got {batch_units!r}, {batch_size!r}")
    dtype, device = hooks.dtype_device(model)
    x, y = first_images(stream, images)
    x = x.to(device=device, dtype=dtype)
    fast = hasattr(model, "forward_from") and hasattr(model, "forward_to")
    todo = {layer: [int(c) for c in chans] for layer, chans in units.items()}
    drop: dict[str, dict[int, float]] = {}
    with hooks.eval_mode(model), bar(total=sum(map(len, todo.values())), desc="atlas: unit ablation",
                                     unit="unit", disable=not progress) as shown:
        baseline = int((_predict(model, x, batch_size) == y).sum())
        for layer, channels in todo.items():
            hooks.find_layer(model, layer)
            on_cache = fast and layer in getattr(model, "feature_layers", [layer])
            count = (_correct_cached if on_cache else _correct_hooked)(
                model, x, y, layer, channels, batch_units, batch_size, shown)
            drop[layer] = {ch: (baseline - count[ch]) / len(x) if ch in count else 0.0 for ch in channels}
    return Ablation(baseline=baseline / len(x), images=len(x), drop=drop)
