"""Projections of the top-k units of every map of whole layers, batched (the unit atlas's projections).

:func:`project_top_units` projects, for every chosen map of every layer of a ``top_activations`` result, its
top-k units (deconvnet and, with ``guided=True``, guided backprop beside it) and cuts the image patches under
them, chunk by chunk (:class:`UnitProjections`, at most ``max_units`` units each, map-major, each map's units
strongest first). Against a loop of :func:`~zfnet.analysis.deconvnet.units.project_units` per map it shares
the work the loop repeats:

* the forward: one per image per *group* of chunks, every layer of the group at once (the deepest layer's
  chain holds every lower switch), in batches of ``batch_size`` images; a group takes consecutive chunks,
  across layers, while their distinct images number at most ``max_units`` (so on a small dataset, one
  forward for everything; memory: at most ``max_units`` images' switches and activations);
* the backward: all units of a chunk go to the fast engine at once (:class:`Deconvnet`, units of the same
  receptive-field geometry batched across maps and images, transposed convolutions on windows).

Zero skipping: on a CPU the engine's backward multiplies only the non-zero elements of the signal
(:mod:`zfnet.analysis.deconvnet.sparse`; after unpooling and rectification about 6% of them on the demo model),
for the loop of :func:`~zfnet.analysis.deconvnet.units.project_units` too: what this function adds is the shared
forward and the batching (``benchmarks/bench_atlas_projections.py``).

Guided backprop (Springenberg et al. 2015) runs on the same engine: the deconvnet's backward with each
ReLU's backward also masked by its forward output > 0, seeded with 1, the LRN by its true gradient (as
:func:`~zfnet.analysis.deconvnet.gradients.guided_backprop` and Captum's ``GuidedBackprop``), whatever
``lrn`` the deconvnet uses.

Models that are not plain conv/ReLU/pool/LRN chains (torchvision ``resnet18``) fall back to batched autograd
(:func:`~zfnet.analysis.deconvnet.gradients.project` / ``guided_backprop``, ``batch_size`` units per
backward), full-image frames.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from zfnet.analysis.deconvnet.engine import Deconvnet
from zfnet.analysis.deconvnet.gradients import guided_backprop, project
from zfnet.analysis.deconvnet.projections import Projections
from zfnet.analysis.deconvnet.recorder import NotAChainError

if TYPE_CHECKING:  # zfnet.analysis.topk imports this package (its receptive fields): imported when called
    from zfnet.analysis.topk import IndexedImages, TopK

__all__ = ["UnitProjections", "project_top_units"]


@dataclass
class UnitProjections:
    """One chunk of units of one layer, map-major, each map's units strongest first.

    ``units``: image_index (stream index; -1 where the map has fewer than k images: a zero projection),
    channel, y, x, value, each (len(channels) * k,). ``deconv`` / ``guided``: the projections (receptive-field
    frames, or full frames on the autograd fallback); ``patches`` (U, 3, h, w): the input windows under
    ``deconv``'s frames (zero outside the image), cut on first access (by ``cut_patches``)."""

    layer: str
    channels: list[int]
    units: dict[str, torch.Tensor]
    deconv: Projections
    guided: Projections | None
    cut_patches: Callable[[], torch.Tensor]

    @functools.cached_property
    def patches(self) -> torch.Tensor:
        return self.cut_patches()


def _chunks(topk: Mapping[str, TopK], channels, max_units: int) -> list[tuple[str, list[int]]]:
    """``(layer, maps)`` chunks in layer order, each at most ``max_units`` units (at least one map)."""
    layers = list(topk) if channels is None else [name for name in topk if name in channels]
    if channels is not None:
        unknown = sorted(set(channels) - set(topk))
        if unknown:
            raise KeyError(f"channels: layers {unknown} are not in topk (layers: {list(topk)})")
    out = []
    for name in layers:
        n_maps = topk[name].values.shape[0]
        maps = list(range(n_maps)) if channels is None else [int(c) for c in channels[name]]
        bad = [c for c in maps if not 0 <= c < n_maps]
        if bad:
            raise ValueError(f"channels[{name!r}]: maps {bad[:5]} outside [0, {n_maps})")
        per = max(1, max_units // max(1, topk[name].values.shape[1]))
        out += [(name, maps[s:s + per]) for s in range(0, len(maps), per)]
    return out


def _groups(chunks, topk, max_images: int) -> list[list[tuple[str, list[int]]]]:
    """Consecutive chunks sharing one forward, while their distinct images number at most ``max_images``."""
    groups, current, seen = [], [], set()
    for name, maps in chunks:
        idx = {int(v) for v in topk[name].image_index[maps].reshape(-1).tolist() if v >= 0}
        if current and len(seen | idx) > max_images:
            groups.append(current)
            current, seen = [], set()
        current.append((name, maps))
        seen |= idx
    if current:
        groups.append(current)
    return groups


def _unit_fields(t: TopK, maps: list[int]) -> dict[str, torch.Tensor]:
    k = t.values.shape[1]
    return {"image_index": t.image_index[maps].reshape(-1).clone(),
            "channel": torch.tensor(maps, dtype=torch.long).repeat_interleave(k),
            "y": t.y[maps].reshape(-1).clone(), "x": t.x[maps].reshape(-1).clone()}


def _fill(p: Projections, valid: torch.Tensor, u: int, frame: tuple[int, int, int], size) -> Projections:
    """``p`` (the valid units) spread over ``u`` units; zero projections where a map had no image."""
    if bool(valid.all()):
        return p
    vals = p.values.new_zeros((u, *frame))
    vals[valid] = p.values
    top, left = torch.zeros(u, dtype=torch.long), torch.zeros(u, dtype=torch.long)
    top[valid], left[valid] = p.top, p.left
    return Projections(vals, top, left, size, {})


def _cut(d: Projections, images: torch.Tensor, rows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The image patches under ``d``'s frames (zero where a map had no image)."""
    if bool(valid.all()):
        return d.crop(images, rows)
    out = images.new_zeros((len(valid), images.shape[1], *d.values.shape[-2:]))
    sel = valid.nonzero().reshape(-1)
    out[sel] = Projections(d.values[sel], d.top[sel], d.left[sel], d.image_size).crop(images, rows)
    return out


def _chain_group(model, picked: IndexedImages, topk, group, lrn, guided, batch_size
                 ) -> Iterator[UnitProjections]:
    layers = list(dict.fromkeys(name for name, _ in group))
    dn = Deconvnet(model, layers, lrn=lrn, guided=guided).cache(picked.images, batch_size=batch_size)
    size = tuple(picked.images.shape[-2:])
    for name, maps in group:
        units = _unit_fields(topk[name], maps)
        valid = units["image_index"] >= 0
        rows = picked.rows(units["image_index"][valid])
        c, y, x = (units[f][valid] for f in ("channel", "y", "x"))
        d = dn.project_units(name, rows, c, y, x)
        units["value"] = torch.zeros(len(valid), dtype=d.units["value"].dtype)
        units["value"][valid] = d.units["value"]
        g = dn.project_units(name, rows, c, y, x, torch.ones(len(rows)), rule="guided", lrn="gradient") \
            if guided else None
        frame = tuple(d.values.shape[1:])
        d = _fill(d, valid, len(valid), frame, size)
        if not bool(valid.all()):
            g = None if g is None else _fill(g, valid, len(valid), frame, size)
        d.units = units
        if g is not None:
            g.units = units
        yield UnitProjections(name, list(maps), units, d, g, functools.partial(_cut, d, picked.images, rows, valid))


def _autograd_group(model, picked: IndexedImages, topk, group, lrn, guided, batch_size
                    ) -> Iterator[UnitProjections]:
    size = tuple(picked.images.shape[-2:])
    for name, maps in group:
        units = _unit_fields(topk[name], maps)
        u = len(units["channel"])
        valid = (units["image_index"] >= 0).nonzero().reshape(-1).tolist()
        outs = {"deconv": picked.images.new_zeros((u, picked.images.shape[1], *size))}
        if guided:
            outs["guided"] = torch.zeros_like(outs["deconv"])
        units["value"] = torch.zeros(u, dtype=picked.images.dtype)
        for s in range(0, len(valid), batch_size):
            sel = torch.tensor(valid[s:s + batch_size], dtype=torch.long)
            x = picked.images[picked.rows(units["image_index"][sel])]
            pos = torch.stack([units["y"][sel], units["x"][sel]], 1)
            out, (_c, _y, _x, v) = project(model, x, name, units["channel"][sel], pos, lrn=lrn, return_units=True)
            outs["deconv"][sel], units["value"][sel] = out.to(outs["deconv"].dtype), v.cpu().to(units["value"].dtype)
            if guided:
                outs["guided"][sel] = guided_backprop(model, x, name, units["channel"][sel], pos, lrn="gradient")
        zeros = torch.zeros(u, dtype=torch.long)
        proj = {k: Projections(v, zeros, zeros.clone(), size, units) for k, v in outs.items()}
        patches = torch.zeros_like(outs["deconv"])
        sel = torch.tensor(valid, dtype=torch.long)
        patches[sel] = picked.images[picked.rows(units["image_index"][sel])].to(patches.dtype)
        yield UnitProjections(name, list(maps), units, proj["deconv"], proj.get("guided"), lambda p=patches: p)


def project_top_units(model: nn.Module, images, topk: Mapping[str, TopK], *,
                      channels: Mapping[str, Sequence[int]] | None = None, lrn: str = "identity",
                      guided: bool = False, max_units: int = 1024, batch_size: int = 32
                      ) -> Iterator[UnitProjections]:
    """Deconvnet projections (and guided backprop) of the top-k units of the maps of ``topk``'s layers.

    ``images``: a (N, 3, H, W) tensor or a stream with ``take(indices)`` (:func:`~zfnet.analysis.topk.pick`);
    ``topk``: :func:`~zfnet.analysis.topk.top_activations` over those images; ``channels``: ``{layer: maps}``
    (None: every map of every layer of ``topk``, in its order). Yields :class:`UnitProjections` chunks of at
    most ``max_units`` units (whole maps, at least one). Memory is bounded by ``max_units`` (units per chunk,
    images per forward group) and ``batch_size`` (images per forward, units per autograd backward), never by
    the number of images. Each unit is seeded with its own activation (deconvnet) or 1 (guided); values equal
    :func:`~zfnet.analysis.deconvnet.units.project_units` per map.
    """
    for what, v in (("max_units", max_units), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{what}: expected a positive int, got {v!r}")
    from zfnet.analysis.topk import pick

    groups = _groups(_chunks(topk, channels, max_units), topk, max_units)
    chain = True
    for group in groups:
        idx = torch.cat([topk[name].image_index[maps].reshape(-1) for name, maps in group])
        picked = pick(images, idx)
        if chain:
            try:
                yield from _chain_group(model, picked, topk, group, lrn, guided, batch_size)
                continue
            except NotAChainError:
                chain = False
        yield from _autograd_group(model, picked, topk, group, lrn, guided, batch_size)
