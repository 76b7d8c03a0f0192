"""Top-k activations per feature map (Fig. 2) and receptive fields.

``top_activations`` makes one streaming forward pass over a dataset and keeps, for every feature map of
every requested layer, the k images whose strongest response in that map is largest (a unit's value is
the max over spatial positions of one image's map; each image appears at most once per map, as in
Fig. 2). The forward stops at the deepest requested layer. Ties are broken deterministically: equal
values go to the lower image index, and within an image to the first position in row-major order.

The per-image maxima are taken inside forward hooks (so later in-place ops cannot alter them) and the
forward is stopped by the deepest hook.

``data`` may be a stream (any iterable of batches, re-iterable for several passes): the search holds one
batch at a time. The figures then need only the few images that won: :func:`pick` fetches them by stream
index, from a tensor by row or from a stream by its ``take(indices)`` (an :class:`IndexedImages`).

``receptive_field`` gives the input window of a unit by shape arithmetic over the conv/pool chain in
front of the layer (recorded from a forward pass, see :mod:`zfnet.analysis.deconvnet`), clipped at
every level to the feature map, i.e. exactly the pixels that can reach the unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn

from zfnet.analysis import hooks
from zfnet.analysis.deconvnet import Deconvnet

__all__ = ["IndexedImages", "RunningTopK", "TopK", "choose_maps", "pick", "receptive_field", "top_activations"]


class TopK(NamedTuple):
    """Per feature map, the k strongest images, strongest first: each field is (C, k)."""

    values: torch.Tensor  # activation value (max over the map of that image)
    image_index: torch.Tensor  # index of the image in the data (stream order); -1 where fewer than k images
    y: torch.Tensor  # row of the max in the feature map
    x: torch.Tensor  # column


class RunningTopK:
    """The running top-``k`` of one layer, fed a batch at a time in stream order (what :func:`top_activations`
    keeps per layer; the atlas's statistics keep it too): O(C x k) state, whatever the number of images.

    ``update(values, positions, width, extra)``: the batch's per-image maxima (B, C), their flat positions
    (row-major, in a map ``width`` wide) and optional per-image fields ``extra`` ({name: (B,)}, e.g. labels)
    carried along with the winners. Ties go to the lower image index (equal values keep stream order)."""

    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"k: expected a positive int, got {k!r}")
        self.k, self.seen = int(k), 0
        self.fields: dict[str, torch.Tensor] | None = None  # value, image_index, y, x, extras: (C, <=k)

    def update(self, values: torch.Tensor, positions: torch.Tensor, width: int,
               extra: Mapping[str, torch.Tensor] | None = None) -> None:
        b, c = values.shape
        # candidates in ascending image order: running (older images) first, then this batch
        cand = {"values": values.t(), "image_index": torch.arange(self.seen, self.seen + b, device=values.device).expand(c, b),
                "y": (positions // width).t(), "x": (positions % width).t()}
        for name, v in (extra or {}).items():
            cand[name] = torch.as_tensor(v, device=values.device).reshape(1, b).expand(c, b)
        if self.fields is not None:
            if set(cand) != set(self.fields):
                raise ValueError(f"extra fields changed between batches: {sorted(self.fields)} then {sorted(cand)}")
            # the running list is sorted by (value desc, index asc); re-sort the union by index first
            cand = {n: torch.cat([self.fields[n], t], 1) for n, t in cand.items()}
            order = torch.argsort(cand["image_index"], dim=1, stable=True)
            cand = {n: t.gather(1, order) for n, t in cand.items()}
        order = torch.sort(cand["values"], dim=1, descending=True, stable=True).indices[:, : self.k]
        self.fields = {n: t.gather(1, order) for n, t in cand.items()}
        self.seen += b

    def result(self) -> TopK:
        if self.fields is None:
            raise ValueError("data: no images")
        return TopK(*(self.fields[n].cpu() for n in TopK._fields))

    def extra(self, name: str) -> torch.Tensor:
        """Per-image field ``name`` of the winners, (C, k) like :meth:`result`'s fields."""
        if self.fields is None:
            raise ValueError("data: no images")
        return self.fields[name].cpu()


class IndexedImages(NamedTuple):
    """Images picked out of a dataset by their index in it (stream order): ``images[j]`` is image ``index[j]``."""

    images: torch.Tensor  # (M, 3, H, W)
    index: torch.Tensor  # (M,) ascending, unique

    def rows(self, image_index) -> torch.Tensor:
        """Row of each of ``image_index`` (stream indices) in ``images``; every one must have been picked."""
        n = torch.as_tensor(image_index, dtype=torch.long).reshape(-1)
        r = torch.searchsorted(self.index, n).clamp(max=max(len(self.index) - 1, 0))
        if len(n) and (len(self.index) == 0 or not bool((self.index[r] == n).all())):
            missing = sorted(set(n.tolist()) - set(self.index.tolist()))
            raise KeyError(f"images {missing[:5]} were not picked (picked: {len(self.index)} images)")
        return r


def pick(data, image_index) -> IndexedImages:
    """The images of ``data`` at ``image_index`` (stream indices; repeats and -1, "no image", dropped).

    ``data``: a (N, 3, H, W) tensor (rows) or a stream with ``take(indices) -> (M, 3, H, W)`` (the images at
    the given ascending indices, in that order): only the picked images are ever held."""
    idx = torch.unique(torch.as_tensor(image_index, dtype=torch.long).reshape(-1))
    idx = idx[idx >= 0]
    if isinstance(data, IndexedImages):
        return IndexedImages(data.images[data.rows(idx)], idx)
    if isinstance(data, torch.Tensor):
        return IndexedImages(data[idx], idx)
    take = getattr(data, "take", None)
    if take is None:
        raise TypeError(f"data: expected a (N, 3, H, W) tensor or a stream with take(indices), got {type(data).__name__}")
    images = take(idx.tolist())
    if len(images) != len(idx):
        raise ValueError(f"data.take: {len(idx)} images asked for, {len(images)} returned (indices beyond the data?)")
    return IndexedImages(images, idx)


def _batches(data, batch_size: int):
    if isinstance(data, torch.Tensor):
        for s in range(0, data.shape[0], batch_size):
            yield data[s:s + batch_size]
        return
    for batch in data:
        if isinstance(batch, (list, tuple)):
            batch = batch[0]
        elif isinstance(batch, dict):
            batch = batch.get("image", batch.get("x", next(iter(batch.values()))))
        if not isinstance(batch, torch.Tensor):
            raise TypeError(f"data: expected batches of tensors (or (x, y) tuples), got {type(batch).__name__}")
        yield batch


def _per_image_max(out: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(B, C, H, W) or (B, C) -> per image and map: max value, its flat position (first in row-major), W."""
    a = out.detach()
    if a.ndim == 2:
        a = a[:, :, None, None]
    if a.ndim != 4:
        raise ValueError(f"layer {name!r}: expected a (B, C, H, W) or (B, C) output, got {tuple(a.shape)}")
    b, c, h, w = a.shape
    vals, pos = a.reshape(b, c, h * w).max(dim=2)
    return vals, pos, w


def _reduce_layers(model: nn.Module, x: torch.Tensor, layers: Sequence[str], which: dict[str, int]) -> dict[str, tuple]:
    """Per layer (values, positions, width) of the per-image maxima; the forward stops at the deepest layer.

    Reduced inside the forward hooks, so a later in-place op (torchvision's ReLU(inplace=True) after a conv)
    cannot change a captured output, and no full feature map is kept.
    """
    outs, _ = hooks.run(model, x, layers, reduce=lambda name, out: _per_image_max(out, name), call=which)
    return outs


@torch.no_grad()
def top_activations(
    model: nn.Module,
    data,
    layers: Iterable[str],
    k: int = 9,
    batch_size: int = 64,
    progress: bool = False,
    call: int | None = None,
) -> dict[str, TopK]:
    """Running top-``k`` per feature map over ``data`` (a (N, 3, H, W) tensor or an iterable of batches).

    Returns ``{layer: TopK(values, image_index, y, x)}``, each field (C, k) (k = min(k, number of images)),
    strongest first. For 2-D layer outputs (fc) y and x are 0. The model runs in eval mode (restored after).
    A layer module that runs several times per forward is refused unless ``call`` picks the call.
    """
    layers = list(layers)
    if not layers:
        raise ValueError("layers: give at least one layer")
    run = {name: RunningTopK(k) for name in layers}  # refuses a k < 1
    dtype, device = hooks.dtype_device(model)
    it = _batches(data, batch_size)
    if progress:
        from zfnet.progress import bar

        total = len(data) if hasattr(data, "__len__") else None
        it = bar(it, total=None if total is None else -(-total // batch_size) if isinstance(data, torch.Tensor)
                 else total, desc="top activations", unit="batch")
    which = None
    with hooks.eval_mode(model):
        for xb in it:
            xb = xb.to(device=device, dtype=dtype)
            if which is None:
                which = hooks.calls(model, xb, layers, call)
            outs = _reduce_layers(model, xb, layers, which)
            for name in layers:
                run[name].update(*outs[name])
    if not run[layers[0]].seen:
        raise ValueError("data: no images")
    return {name: run[name].result() for name in layers}


def receptive_field(
    model: nn.Module, layer: str, y: int, x: int, input_size: int | Sequence[int] = 224
) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` (bottom/right exclusive) of the input pixels that reach unit (y, x).

    Computed by shape arithmetic over the chain of conv / pool layers in front of ``layer`` (recorded from a
    forward pass on zeros of ``input_size``); at every level the window is clipped to the feature map.
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else (int(input_size[0]), int(input_size[1]))
    dtype, device = hooks.dtype_device(model)
    dn = Deconvnet(model, [layer]).cache(torch.zeros(1, 3, h, w, dtype=dtype, device=device))
    _, _, hh, ww = dn.acts[layer].shape
    if not (0 <= y < hh and 0 <= x < ww):
        raise ValueError(f"(y, x) = ({y}, {x}) is outside layer {layer!r}'s {hh}x{ww} map")
    return dn.receptive_field(layer, y, x)


def choose_maps(topk: TopK, n: int, seed: int = 0) -> list[int]:
    """A deterministic random subset of ``n`` feature maps, preferring maps that respond (top value > 0)."""
    c = topk.values.shape[0]
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(c, generator=g).tolist()
    alive = [m for m in order if float(topk.values[m, 0]) > 0]
    dead = [m for m in order if float(topk.values[m, 0]) <= 0]
    return sorted((alive + dead)[: min(n, c)])
