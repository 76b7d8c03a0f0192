"""Fast deconvnet for many units (:class:`Deconvnet`): cached switches, receptive-field windows, units batched.

For models whose path to the layer is a plain chain of ``conv2d / relu / max_pool2d / local_response_norm /
dropout`` (every model in ``zfnet.models`` and torchvision's ``alexnet`` / ``vgg`` ``features``; the chain is
recorded from the real forward by :mod:`zfnet.analysis.chain`). One forward per image caches the switches of
every pool (or, given the units, the recorded chain replayed on their receptive-field boxes only:
``cache(images, units=...)``); a unit's projection is then computed only over its receptive field: at every level the signal
is kept in the window that can reach the unit (clipped to the feature map), the cached switch window is
gathered, and the transposed convolution runs on that window. Units with the same window geometry (every
interior unit of a layer) are batched across images into one backward. The arithmetic is the same sums as
autograd's (tests check equality with ``project``, an explicit deconvnet and Captum); it returns each
projection in the unit's receptive-field frame (:class:`~zfnet.analysis.deconvnet.projections.Projections`).

Details that make it fast on a CPU (``benchmarks/bench_deconvnet.py``): the caching forward costs about a
plain forward (small batches, which stay in the CPU's caches; pools run channels-last, several times faster
on the CPU with the same maxima and switches; switches stored as uint8 offsets inside their pool window,
computed in int32 without divisions); the backward steps on windows (:mod:`zfnet.analysis.deconvnet.backward`) keep
tensors channels-last; on a CPU the unpooling and every transposed convolution of a sparse enough signal run
in :mod:`zfnet.analysis.deconvnet.sparse` (non-zero elements only), else oneDNN, conv1 -> RGB in polyphase form;
LRN gradients (``lrn="gradient"``) use the cached per-image factors ``D^-beta`` and ``a * D^(-beta-1)``.
The convolutions themselves run in the model's own layout, so the cached activations (the seeds) are
bitwise those of the model's forward.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from zfnet.analysis import hooks
from zfnet.analysis.chain import AxisProfile, Op, axis_profile, back_windows, cover_boxes
from zfnet.analysis.deconvnet import backward
from zfnet.analysis.deconvnet.projections import Projections
from zfnet.analysis.deconvnet.recorder import ChainRecorder, NotAChainError, lrn_factors, switch_offsets
from zfnet.analysis.deconvnet.rectifiers import RectifierGuard, check_lrn

__all__ = ["Deconvnet"]


class Deconvnet:
    """Fast deconvnet for many units: cached switches, receptive-field windows, units batched.

    >>> dn = Deconvnet(model, ["conv1", "conv5"])          # layers: module paths
    >>> dn.cache(images)                                    # one forward per image (switches, activations)
    >>> dn.cache(images, units=("conv5", image_index, ys, xs))  # or only what these units need
    >>> p = dn.project_units("conv5", image_index, channels, ys, xs)   # Projections, RF frames
    >>> p.full()                                            # (U, 3, H, W), equal to project(...)

    ``lrn``: as in :func:`project`. ``memory_mb``: working-set budget per batch of units. ``guided=True``:
    ``cache(images)`` also keeps each ReLU's mask (output > 0) and the LRN factors, so that
    ``project_units(..., rule="guided", lrn="gradient")`` gives guided backprop (Springenberg et al. 2015).
    Raises :class:`NotAChainError` if the path to a layer is not a plain conv/relu/pool/LRN chain.
    """

    def __init__(self, model: nn.Module, layers: Iterable[str | nn.Module], *, lrn: str = "identity",
                 memory_mb: float = 192.0, call: int | None = None, guided: bool = False):
        self.model = model
        self.guided = bool(guided)
        self.relu_mask: dict[int, torch.Tensor] = {}
        self.lrn = check_lrn(lrn)
        self.layers = list(layers)
        if not self.layers:
            raise ValueError("layers: give at least one layer")
        self.targets = {(l if isinstance(l, str) else str(id(l))): hooks.find_layer(model, l) for l in self.layers}
        self.memory_bytes = memory_mb * 2**20
        self.call = call  # which call of a layer module that runs several times per forward
        self._call: dict[str, int] = {}
        self.ops: list[Op] | None = None
        self.ends: dict[str, int] = {}
        self.acts: dict[str, torch.Tensor] = {}
        self.pool_idx: dict[int, torch.Tensor] = {}
        self.lrn_in: dict[int, torch.Tensor] = {}
        self.image_size: tuple[int, int] | None = None
        self.polyphase: dict[int, tuple[torch.Tensor, tuple[int, int]]] = {}
        # cache(units=...): the boxes the forward computed, as (image, box) pairs: ``_box_image`` (B,) and
        # ``_boxes`` (B, levels, 4): top, bottom, left, right (exclusive) at every level of the chain; None:
        # every position of every image was computed
        self._boxes: torch.Tensor | None = None
        self._box_image: torch.Tensor | None = None
        self._profiles: dict[tuple, AxisProfile] = {}

    # -- forward ---------------------------------------------------------------------------------
    def _record(self, x: torch.Tensor) -> tuple[ChainRecorder, dict[str, torch.Tensor], dict[str, int]]:
        rec = ChainRecorder(x, keep_lrn_inputs=self.lrn == "gradient" or self.guided, keep_relu_masks=self.guided)
        outs: dict[str, torch.Tensor] = {}
        ends: dict[str, int] = {}
        remaining = set(self.targets)
        seen = {name: 0 for name in self.targets}

        def make_hook(name):
            def hook(_m, _inp, out):
                k = seen[name]
                seen[name] += 1
                if name in outs or k != self._call.get(name, 0):
                    return
                if out is not rec.head:
                    raise NotAChainError(
                        f"the output of layer {name!r} is not the end of the recorded chain (the module "
                        "transforms its input with ops the recorder did not see, or returns a non-tensor)"
                    )
                # a copy: a later in-place op (ReLU(inplace=True) after a conv) must not change it
                rec.paused = True
                try:
                    outs[name], ends[name] = out.detach().clone(), len(rec.ops)
                finally:
                    rec.paused = False
                remaining.discard(name)
                if not remaining:
                    raise hooks.Stop

            return hook

        guard = RectifierGuard()
        with hooks.attached((mod, make_hook(name)) for name, mod in self.targets.items()):
            try:
                with rec, guard:
                    self.model(x)
            except hooks.Stop:
                pass
            except RuntimeError as exc:
                guard.reraise(exc)
                raise
        if remaining:
            raise RuntimeError(f"layers {sorted(remaining)} were not called by the model's forward pass")
        return rec, outs, ends

    @torch.no_grad()
    def cache(self, images: torch.Tensor, batch_size: int | None = None, units=None) -> "Deconvnet":
        """One forward per image: the switches of every pool and the activations of the layers.

        ``batch_size``: images per forward (None: 2 on the CPU, where small batches stay in the caches and
        run faster than large ones, else 32).

        ``units``: ``(layer, image_index, ys, xs)`` (optional): compute only what these units' projections need.
        The chain is recorded from a forward of an empty batch (or, for a model that cannot run one, of the
        first image); every image with units is then run through the recorded chain on boxes only: its units' positions grouped into few boxes (:func:`~zfnet.analysis.chain.cover_boxes`), each
        box's receptive-field window at every level (clipped to the map, zero / -inf padding where the
        receptive field leaves it); images without units not at all. The same products and sums as the whole
        forward; the convolution kernels may pick another summation order for small windows, so activations
        agree with the whole forward's to float rounding (not always bitwise). Afterwards only units inside
        those boxes can be projected (others raise).
        """
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError(f"images: expected a (N, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")
        dtype, device = hooks.dtype_device(self.model)
        if batch_size is None:
            batch_size = 2 if device.type == "cpu" else 32
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int or None, got {batch_size!r}")
        batch_size = int(batch_size)
        if units is not None:
            if self.guided:
                raise ValueError("units: a Deconvnet(guided=True) caches whole images only; call cache(images)")
            return self._cache_windows(images, units)
        self._boxes = self._box_image = None
        pools: dict[int, list] = {}
        lrns: dict[int, list] = {}
        masks: dict[int, list] = {}
        acts: dict[str, list] = {}
        ops = None
        with hooks.eval_mode(self.model):
            which = hooks.calls(self.model, images[:1].to(device=device, dtype=dtype), self.layers, self.call)
            self._call = {name: which[hooks.path_of(self.model, l)] for name, l in zip(self.targets, self.layers)}
            for s in range(0, images.shape[0], batch_size):
                x = images[s:s + batch_size].to(device=device, dtype=dtype)
                rec, outs, ends = self._record(x)
                sig = [(o.kind, o.in_shape, o.out_shape, o.k, o.s, o.p) for o in rec.ops]
                if ops is None:
                    ops, sig0, self.ends = rec.ops, sig, ends
                elif sig != sig0:
                    raise NotAChainError("the recorded chain changed between batches")
                for i, t in rec.pool_idx.items():
                    pools.setdefault(i, []).append(t)
                for i, t in rec.lrn_in.items():
                    lrns.setdefault(i, []).append(t)
                for i, t in rec.relu_mask.items():
                    masks.setdefault(i, []).append(t)
                for name, t in outs.items():
                    acts.setdefault(name, []).append(t.detach())
        self.ops = ops
        self.pool_idx = {i: torch.cat(v) for i, v in pools.items()}
        self.lrn_in = {i: torch.cat(v, dim=1) for i, v in lrns.items()}
        self.relu_mask = {i: torch.cat(v) for i, v in masks.items()}
        self.acts = {k: torch.cat(v) for k, v in acts.items()}
        self._finish(images)
        return self

    def _finish(self, images: torch.Tensor) -> None:
        self.image_size = tuple(images.shape[-2:])
        self._profiles.clear()
        for name, end in self.ends.items():
            if end == 0:
                raise NotAChainError(f"layer {name!r} outputs the input itself (no op before it)")
            if self.acts[name].ndim != 4:
                raise NotAChainError(f"layer {name!r} output is not a (N, C, H, W) map")

    def _cache_windows(self, images: torch.Tensor, units) -> "Deconvnet":
        """``cache(images, units=...)``: the recorded chain replayed on each image's receptive-field boxes."""
        try:
            layer, image_index, ys, xs = units
        except (TypeError, ValueError):
            raise ValueError("units: expected (layer, image_index, ys, xs)") from None
        name = layer if isinstance(layer, str) else str(id(layer))
        if name not in self.targets:
            raise KeyError(f"units: layer {layer!r} was not given to this Deconvnet; layers: {list(self.targets)}")
        n, yy, xx = (torch.as_tensor(v, dtype=torch.long).reshape(-1).cpu() for v in (image_index, ys, xs))
        if not (len(n) == len(yy) == len(xx)) or len(n) == 0:
            raise ValueError("units: expected image_index, ys, xs of equal, non-zero lengths")
        if ((n < 0) | (n >= images.shape[0])).any():
            raise ValueError(f"units: image_index must lie in [0, {images.shape[0]})")
        dtype, device = hooks.dtype_device(self.model)
        first = int(n[0])
        with hooks.eval_mode(self.model):
            x0 = images[first:first + 1].to(device=device, dtype=dtype)
            which = hooks.calls(self.model, x0, self.layers, self.call)
            self._call = {nm: which[hooks.path_of(self.model, l)] for nm, l in zip(self.targets, self.layers)}
            try:  # the chain (shapes, weights) from an empty batch: no arithmetic
                rec, outs, self.ends = self._record(x0[:0])
                first = None
            except Exception:  # a model that cannot run an empty batch: one image's whole forward
                rec, outs, self.ends = self._record(x0)
        self.ops = ops = rec.ops
        end = self.ends[name]
        _, h_n, w_n = ops[end - 1].out_shape
        if ((yy < 0) | (yy >= h_n) | (xx < 0) | (xx >= w_n)).any():
            raise ValueError(f"units: ys / xs outside the {h_n} x {w_n} map of layer {name!r}")
        count = images.shape[0]
        # whole-size buffers, filled inside each image's windows
        self.acts = {nm: outs[nm].new_zeros((count, *outs[nm].shape[1:])) for nm in outs}
        self.pool_idx = {i: t.new_zeros((count, *t.shape[1:])) for i, t in rec.pool_idx.items()}
        self.lrn_in = {i: t.new_zeros((t.shape[0], count, *t.shape[2:])) for i, t in rec.lrn_in.items()}
        depth = len(ops)
        boxes, box_image = [], []
        if first is not None:  # recorded on that image: whole maps up to the deepest recorded layer
            for nm, t in outs.items():
                self.acts[nm][first] = t[0]
            for i, t in rec.pool_idx.items():
                self.pool_idx[i][first] = t[0]
            for i, t in rec.lrn_in.items():
                self.lrn_in[i][:, first] = t[:, 0]
            boxes.append(torch.tensor([[0, sh[1], 0, sh[2]] for sh in [o.in_shape for o in ops] + [ops[-1].out_shape]]))
            box_image.append(first)
        ends_at = {e: nm for nm, e in self.ends.items()}
        profile = functools.lru_cache(maxsize=None)(lambda a, b, axis: back_windows(ops, end, a, b, axis))
        for img in torch.unique(n).tolist():
            if img == first:
                continue
            sel = n == img
            for y0, y1, x0, x1 in cover_boxes(ops, end, yy[sel].tolist(), xx[sel].tolist(), profile):
                py, px = profile(y0, y1, 0), profile(x0, x1, 1)
                box = torch.zeros((depth + 1, 4), dtype=torch.long)
                for lvl in range(end + 1):
                    box[lvl] = torch.tensor([py[0][lvl], py[0][lvl] + py[1][lvl], px[0][lvl], px[0][lvl] + px[1][lvl]])
                boxes.append(box)
                box_image.append(img)
                x = images[img:img + 1, :, py[0][0]:py[0][0] + py[1][0], px[0][0]:px[0][0] + px[1][0]]
                self._replay(x.to(device=device, dtype=dtype), img, py, px, end, ends_at)
        self._boxes, self._box_image = torch.stack(boxes), torch.tensor(box_image)
        self._finish(images)
        return self

    def _replay(self, h: torch.Tensor, img: int, py, px, end: int, ends_at: dict[int, str]) -> None:
        """The recorded chain's forward on one image's windows (``py`` / ``px``: :func:`~zfnet.analysis.chain.back_windows`)."""
        for i in range(end):
            op = self.ops[i]
            pads = (px[2][i], px[3][i], py[2][i], py[3][i])
            if op.kind == "conv":
                h = F.conv2d(F.pad(h, pads) if any(pads) else h, op.weight, op.bias, op.s, 0, op.dilation, op.groups)
            elif op.kind == "relu":
                h = F.relu(h)
            elif op.kind == "lrn":
                size, alpha, beta, k = op.lrn
                if i in self.lrn_in:
                    fac = lrn_factors(h, size, alpha, beta, k)
                    self.lrn_in[i][:, img, py[0][i]:py[0][i] + py[1][i], px[0][i]:px[0][i] + px[1][i]] = fac[:, 0]
                h = F.local_response_norm(h, size, alpha, beta, k)
            elif op.kind == "pool":
                hp = F.pad(h, pads, value=float("-inf")) if any(pads) else h
                cpu = hp.device.type == "cpu"
                if cpu:  # as the recorder: channels-last on the CPU, the same maxima and switches
                    hp = hp.contiguous(memory_format=torch.channels_last)
                ks = tuple((k - 1) // d + 1 for k, d in zip(op.k, op.dilation))
                h, idx = F.max_pool2d_with_indices(hp, ks, op.s, 0, op.dilation)
                if cpu:
                    h = h.contiguous()
                r0, c0 = py[0][i + 1], px[0][i + 1]
                self.pool_idx[i][img, r0:r0 + h.shape[2], c0:c0 + h.shape[3]] = \
                    switch_offsets(idx, hp.shape[-1], op.s, (0, 0), op.k)[0]
            if i + 1 in ends_at:
                nm = ends_at[i + 1]
                r0, c0 = py[0][i + 1], px[0][i + 1]
                self.acts[nm][img, :, r0:r0 + h.shape[2], c0:c0 + h.shape[3]] = h[0]

    # -- geometry --------------------------------------------------------------------------------
    def _profile(self, end: int, pos: int, axis: int) -> AxisProfile:
        key = (end, pos, axis)
        if key not in self._profiles:
            self._profiles[key] = axis_profile(self.ops, end, pos, axis)
        return self._profiles[key]

    def _name(self, layer) -> str:
        name = layer if isinstance(layer, str) else str(id(layer))
        if self.ops is None:
            raise RuntimeError("call cache(images) first")
        if name not in self.ends:
            raise KeyError(f"layer {layer!r} was not given to this Deconvnet; layers: {list(self.ends)}")
        return name

    def receptive_field(self, layer, y: int, x: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), bottom/right exclusive: the input pixels that can reach unit (y, x)."""
        end = self.ends[self._name(layer)]
        py, px = self._profile(end, int(y), 0), self._profile(end, int(x), 1)
        return py.starts[0], px.starts[0], py.starts[0] + py.lengths[0], px.starts[0] + px.lengths[0]

    # -- backward --------------------------------------------------------------------------------
    def _iter_units(self, layer, image_index, channels, ys, xs, values, rule: str, lrn: str | None,
                    out: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Project batch by batch (same geometry per batch), each unit into its row of ``out`` (U, C, h, w),
        its receptive-field frame (every element written); yield ``(positions in the input lists, seeds)``."""
        name = self._name(layer)
        end = self.ends[name]
        acts = self.acts[name]
        dev = acts.device
        lrn = self.lrn if lrn is None else check_lrn(lrn)
        if rule not in ("deconvnet", "guided"):
            raise ValueError(f"rule: expected 'deconvnet' or 'guided', got {rule!r}")
        if (rule == "guided" or lrn != self.lrn) and not self.guided:
            raise ValueError("rule='guided' / another lrn than the constructor's: build Deconvnet(guided=True)")
        n = torch.as_tensor(image_index, dtype=torch.long).reshape(-1).cpu()
        ch = torch.as_tensor(channels, dtype=torch.long).reshape(-1).cpu()
        yy = torch.as_tensor(ys, dtype=torch.long).reshape(-1).cpu()
        xx = torch.as_tensor(xs, dtype=torch.long).reshape(-1).cpu()
        if not (len(n) == len(ch) == len(yy) == len(xx)):
            raise ValueError("image_index, channels, ys, xs: expected equal lengths")
        _, c_n, h_n, w_n = acts.shape
        for what, t, hi in (("image_index", n, acts.shape[0]), ("channels", ch, c_n), ("ys", yy, h_n),
                            ("xs", xx, w_n)):
            if len(t) and ((t < 0) | (t >= hi)).any():
                raise ValueError(f"{what}: expected values in [0, {hi}) for layer {name!r}")
        if self._boxes is not None and len(n):
            box = self._boxes[:, end]  # (B, 4): top, bottom, left, right of what cache(units=...) computed
            inside = ((n[:, None] == self._box_image[None]) & (yy[:, None] >= box[:, 0]) & (yy[:, None] < box[:, 1])
                      & (xx[:, None] >= box[:, 2]) & (xx[:, None] < box[:, 3]))
            outside = ~inside.any(1)
            if outside.any():
                j = int(outside.nonzero()[0, 0])
                raise ValueError(
                    f"unit (image {int(n[j])}, y {int(yy[j])}, x {int(xx[j])}) of layer {name!r} lies outside the "
                    "windows computed by cache(images, units=...); cache it with those units, or without units")
        if values is None:
            vals_all = acts[n.to(dev), ch.to(dev), yy.to(dev), xx.to(dev)]
        else:
            vals_all = torch.as_tensor(values, dtype=acts.dtype, device=dev).reshape(-1)
        groups: dict[tuple, list[int]] = {}
        for j, (y, x) in enumerate(zip(yy.tolist(), xx.tolist())):
            key = (self._profile(end, y, 0).key(), self._profile(end, x, 1).key())
            groups.setdefault(key, []).append(j)
        for members in groups.values():
            sel = torch.tensor(members, dtype=torch.long)
            y0, x0 = int(yy[sel[0]]), int(xx[sel[0]])
            py, px = self._profile(end, y0, 0), self._profile(end, x0, 1)
            chunk = max(1, int(self.memory_bytes // max(1.0, backward.window_bytes(self.ops, end, py, px, acts.dtype))))
            sy_all = torch.tensor([self._profile(end, int(v), 0).starts for v in yy[sel].tolist()], device=dev)
            sx_all = torch.tensor([self._profile(end, int(v), 1).starts for v in xx[sel].tolist()], device=dev)
            for s in range(0, len(members), chunk):
                part = sel[s:s + chunk]
                sl = slice(s, s + chunk)
                nd = n[part].to(dev)
                if min(py.lengths) == 0 or min(px.lengths) == 0:
                    g = acts.new_zeros((len(part), self.ops[0].in_shape[0], max(py.lengths[0], 0),
                                        max(px.lengths[0], 0)))
                else:
                    g = backward.project_windows(self, end, py, px, nd, ch[part].to(dev), vals_all[part.to(dev)],
                                                 sy_all[sl], sx_all[sl], rule=rule, lrn=lrn)
                oy, ox = py.starts[0] - py.vstart, px.starts[0] - px.vstart
                rows = part.to(out.device)
                # index_copy_ / index_fill_ on strided views: far faster than out[rows, :, a:b, c:d] = g
                out[:, :, oy:oy + g.shape[2], ox:ox + g.shape[3]].index_copy_(0, rows, g.to(out.dtype))
                for sl_y, sl_x in ((slice(0, oy), slice(None)), (slice(oy + g.shape[2], None), slice(None)),
                                   (slice(oy, oy + g.shape[2]), slice(0, ox)),
                                   (slice(oy, oy + g.shape[2]), slice(ox + g.shape[3], None))):
                    if out[:1, :, sl_y, sl_x].numel():  # the frame outside the clipped window
                        out[:, :, sl_y, sl_x].index_fill_(0, rows, 0)
                yield part, vals_all[part.to(dev)].detach().cpu()

    def project_units(self, layer, image_index, channels, ys, xs, values=None, *, rule: str = "deconvnet",
                      lrn: str | None = None) -> Projections:
        """Projections of the units ``(image_index[j], channels[j], ys[j], xs[j])`` of ``layer``, in order.

        ``image_index`` indexes the images given to :meth:`cache`. ``values`` (optional) overrides the seed
        values (default: the cached activations, i.e. the units' own values). ``rule``: "deconvnet" or
        "guided" (each ReLU's backward also masked by its forward output > 0; seed with ``values=1``);
        ``lrn`` (default the constructor's): both need ``Deconvnet(guided=True)``.
        """
        name = self._name(layer)
        end = self.ends[name]
        u = len(torch.as_tensor(channels).reshape(-1))
        vlen_y = axis_profile(self.ops, end, 0, 0).vlen
        vlen_x = axis_profile(self.ops, end, 0, 1).vlen
        acts = self.acts[name]
        # every element of every row is written by _iter_units (window and the frame around it)
        out = acts.new_empty((u, self.ops[0].in_shape[0], vlen_y, vlen_x))
        n, yy, xx = (torch.as_tensor(v, dtype=torch.long).reshape(-1).cpu() for v in (image_index, ys, xs))
        ch = torch.as_tensor(channels, dtype=torch.long).reshape(-1).cpu()
        units = {"image_index": n.clone(), "channel": ch.clone(), "y": yy.clone(), "x": xx.clone(),
                 "value": torch.zeros(u, dtype=acts.dtype)}
        for part, seeds in self._iter_units(layer, image_index, channels, ys, xs, values, rule, lrn, out):
            units["value"][part] = seeds
        # after the loop, which checked ys / xs
        top = torch.tensor([self._profile(end, v, 0).vstart for v in yy.tolist()], dtype=torch.long)
        left = torch.tensor([self._profile(end, v, 1).vstart for v in xx.tolist()], dtype=torch.long)
        return Projections(out, top, left, self.image_size, units)
