"""Incremental occlusion sweep (private to :mod:`zfnet.analysis.occlusion`): recompute only what a square changes.

An occluder changes only the activations inside its receptive field, which grows layer by layer. The
*chain* is the longest run of leaf modules from the model's input in which each module consumes the
previous one's output and is one of Conv2d (zero padding), MaxPool2d or a point-wise module (ReLU, LRN,
eval-mode BatchNorm / Dropout, ...), each called once; it is found from a real forward pass
(:func:`find_chain`) and accepted only if (1) running its modules one after another reproduces the
recorded output (no hidden functional op such as a residual ``+=``) and (2) the rest of the model depends on
the chain's last output alone: with the chain's modules swapped for pass-throughs and its last output
replayed, a NaN input must give the model's own, finite output. Otherwise the caller falls back to the plain
batched sweep.

The unoccluded image is run once and the input of every spatial op is cached. For each position and spatial
op, the interval of outputs whose window meets the changed interval of its input is computed per axis
(exact integer arithmetic with kernel, stride, padding, dilation: :mod:`zfnet.analysis.chain`); those outputs are recomputed from a patch
of the cached input (padded with zeros for convs, -inf for max pools, exactly the op's implicit padding)
with the previous op's recomputed window pasted in, by the same op with padding 0. Point-wise ops act on the
window only. To batch positions, every position uses a window of the same length per op (the largest
needed), shifted to stay inside the map. Patches are assembled channels-last by one ``index_select``. After
the chain the window is pasted into the cached map and the rest of the model runs in full on many positions
at once (:func:`rest_forward`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from zfnet.analysis import hooks
from zfnet.analysis.chain import Op, effective_kernel, input_span, output_span, pair

_POINTWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.LocalResponseNorm,  # mixes channels, not positions
    nn.BatchNorm2d,  # eval mode: per-channel affine
    nn.ReLU6,
    nn.Hardswish,
    nn.Hardtanh,
)


@dataclass
class SweepCache:
    """The unoccluded pass, op by op (:func:`cache_forward`)."""

    ops: list[Op] = field(default_factory=list)  # the chain; ``Op.module`` runs the point-wise ones
    pixels: dict[int, torch.Tensor] = field(default_factory=dict)  # per spatial op: its padded cached input
    # as channels-last pixels (Hp * Wp, C)
    padded_w: dict[int, int] = field(default_factory=dict)  # per spatial op: the width Wp of that input
    layer_end: int = -1  # index of the op whose output is the analysed layer's output
    layer_out: torch.Tensor | None = None  # that output (C, H, W)
    conv_out: torch.Tensor | None = None  # output of the chain (1, C, H, W)
    paths: list[str] = field(default_factory=list)


def module_kind(module: nn.Module) -> str:
    """"conv", "pool", "pointwise" or "unknown" (a module the incremental sweep cannot window)."""
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            return "unknown"
        return "conv"
    if isinstance(module, nn.MaxPool2d):
        return "unknown" if module.return_indices else "pool"
    if isinstance(module, _POINTWISE):
        return "pointwise"
    return "unknown"




class _Replay(nn.Module):
    """Stands in for the chain's last module: returns the given tensor whatever its input."""

    def __init__(self, t: torch.Tensor):
        super().__init__()
        self.t = t

    def forward(self, *_a, **_k):
        return self.t


class _Pass(nn.Module):
    """Stands in for an earlier chain module: returns its input (no work)."""

    def forward(self, x, *_a, **_k):
        return x


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if n and not list(m.children())]


@torch.no_grad()
def find_chain(model: nn.Module, x: torch.Tensor, layer: str, call: int = 0) -> tuple[list[tuple[str, nn.Module]], int]:
    """(chain modules in order, index of the module giving ``layer``'s output) or ([], -1) when the chain
    does not reach ``layer``. ``x``: one image (1, C, H, W); the model must be in eval mode."""
    leaves = _leaves(model)
    target = hooks.find_layer(model, layer)
    events: list[tuple[str, nn.Module, Any, Any]] = []
    counts: dict[int, int] = {}
    marks: dict[str, Any] = {}

    def hook(path, m):
        def fn(_m, inp, out):
            counts[id(m)] = counts.get(id(m), 0) + 1
            events.append((path, m, inp[0] if inp else None, out))
        return fn

    seen = [0]

    def layer_hook(_m, _i, out):
        if seen[0] == call:
            marks["pos"], marks["out"] = len(events), out
        seen[0] += 1

    with hooks.attached([(m, hook(path, m)) for path, m in leaves] + [(target, layer_hook)]):
        model(x)
    chain, head = [], x
    for path, m, inp, out in events:
        if inp is not head or not isinstance(out, torch.Tensor) or counts[id(m)] != 1 or module_kind(m) == "unknown":
            break
        chain.append((path, m))
        head = out
    end = -1
    if "pos" in marks:
        for j in range(min(marks["pos"], len(chain)) - 1, -1, -1):
            if events[j][3] is marks["out"]:
                end = j
                break
    return (chain, end) if end >= 0 else ([], -1)


@torch.no_grad()
def rest_forward(model: nn.Module, chain: list[tuple[str, nn.Module]], chain_out: torch.Tensor,
                 x_shape: tuple[int, ...], fill: float = 0.0) -> Any:
    """The model's output with the chain's output replaced by ``chain_out`` (B, C, H, W): the chain's modules
    are swapped for pass-throughs (the last one replays ``chain_out``) on an input of ``fill`` values."""
    swaps = []
    try:
        for i, (path, m) in enumerate(chain):
            parent_path, _, name = path.rpartition(".")
            parent = model.get_submodule(parent_path) if parent_path else model
            swaps.append((parent, name, parent._modules[name]))
            parent._modules[name] = _Replay(chain_out) if i == len(chain) - 1 else _Pass()
        dummy = chain_out.new_full((1, *x_shape), fill).expand(chain_out.shape[0], *x_shape)
        return model(dummy)
    finally:
        for parent, name, m in reversed(swaps):
            parent._modules[name] = m


def _close(a, b) -> bool:
    return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and bool(
        torch.isfinite(a).all()) and torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max().clamp(min=1)))


@torch.no_grad()
def plan_chain(model: nn.Module, x: torch.Tensor, layer: str, call: int = 0):
    """``(chain, layer index)`` when the incremental sweep is exact for this model and layer, else None.
    ``x``: one image (1, C, H, W); the model must be in eval mode."""
    chain, end = find_chain(model, x, layer, call)
    if not chain:
        return None
    h = x
    for _p, m in chain:  # (1) the modules one after another reproduce the recorded chain
        h = m(h.clone())
    ref = model(x)
    via_chain = rest_forward(model, chain, h, tuple(x.shape[1:]), math.nan)  # (2) the rest reads nothing else
    if not _close(via_chain, ref):
        return None
    return chain, end


def cache_forward(chain: list[tuple[str, nn.Module]], end: int, x: torch.Tensor) -> SweepCache:
    """Run the unoccluded image (1, C, H, W) through the chain op by op, caching the padded input of every
    spatial op (zeros for convs, -inf for max pools: exactly their implicit padding)."""
    cache = SweepCache(paths=[p for p, _ in chain])
    cur = x
    for i, (path, m) in enumerate(chain):
        kind = module_kind(m)
        out = m(cur.clone() if kind == "pointwise" else cur)  # in-place point-wise ops must not touch cur
        op = Op(kind, tuple(cur.shape[1:]), tuple(out.shape[1:]), module=m, path=path)
        if kind != "pointwise":
            op.k = effective_kernel(m.kernel_size, m.dilation)
            op.s = pair(m.stride if m.stride is not None else m.kernel_size)
            op.p = pair(m.padding)
            n_in, n_out = cur.shape[-2:], out.shape[-2:]
            # max-pool ceil mode may let the last window run past the padding: pad enough for every window
            pad_hi = tuple(max(0, input_span(0, n_out[a], op.k[a], op.s[a], op.p[a])[1] - n_in[a]) for a in range(2))
            padded = F.pad(cur[0], (op.p[1], pad_hi[1], op.p[0], pad_hi[0]),
                           value=0.0 if kind == "conv" else -math.inf)
            cache.padded_w[i] = padded.shape[-1]
            cache.pixels[i] = padded.permute(1, 2, 0).reshape(-1, padded.shape[0])
        cache.ops.append(op)
        if i == end:
            cache.layer_end, cache.layer_out = i, out[0].clone()
        cur = out
    cache.conv_out = cur
    return cache


def windows(cache: SweepCache, ys: torch.Tensor, xs: torch.Tensor, size: int) -> dict[int, tuple]:
    """Per spatial op: (window start per y position, per x position, length y, length x) at its output.

    The true changed interval is propagated exactly; the recomputed window has one length per op for all
    the positions given (the largest), shifted left / up where it would leave the map."""
    iv = [(ys, ys + size), (xs, xs + size)]
    plan = {}
    for i, op in enumerate(cache.ops):
        if not op.spatial:
            continue
        starts, lengths, new = [], [], []
        for a in range(2):
            n_out = op.out_shape[1 + a]
            lo, hi = output_span(iv[a][0], iv[a][1], op.k[a], op.s[a], op.p[a], n_out)
            length = min(n_out, max(1, int((hi - lo).max())))
            starts.append(lo.clamp(max=n_out - length))
            lengths.append(length)
            new.append((lo, hi))
        plan[i] = (starts[0], starts[1], lengths[0], lengths[1])
        iv = new
    return plan


def _index(py0, px0, m: int, n: int, width: int, wy0, wx0, h: int, w: int, n_cache: int, shared: bool):
    """Flat pixel indices (B, m, n) of a patch at [py0, py0 + m) x [px0, px0 + n) of a map of ``width``
    columns stored as ``n_cache`` rows, followed by the rows of a window (B or 1, h, w) at (wy0, wx0):
    pixels inside the window come from the window, the others from the cache."""
    dev = py0.device
    rows = py0[:, None] + torch.arange(m, device=dev)
    cols = px0[:, None] + torch.arange(n, device=dev)
    ry, rx = rows - wy0[:, None], cols - wx0[:, None]
    inside = ((ry >= 0) & (ry < h))[:, :, None] & ((rx >= 0) & (rx < w))[:, None, :]
    base = n_cache if shared else n_cache + torch.arange(py0.shape[0], device=dev)[:, None, None] * (h * w)
    win_idx = base + ry.clamp(0, h - 1)[:, :, None] * w + rx.clamp(0, w - 1)[:, None, :]
    return torch.where(inside, win_idx, rows[:, :, None] * width + cols[:, None, :])


def _assemble(cache_pix: torch.Tensor, win: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Gather a patch (B, m, n, C) from the cached pixels and the window's, in one ``index_select``."""
    c = cache_pix.shape[1]
    buf = torch.cat([cache_pix, win.reshape(-1, c)])
    return buf.index_select(0, idx.reshape(-1)).reshape(*idx.shape, c)


def incremental_chunk(cache: SweepCache, plan, win0, iy, ix, ys, xs, channel):
    """Recompute, for the positions (ys[iy], xs[ix]) of one group, only the windows their squares reach.

    Windows are channels-last (B, h, w, C). Returns the analysed layer's map of ``channel`` (B, H, W) and
    the chain's output (B, C, H, W), ready for :func:`rest_forward`."""
    b = iy.shape[0]
    win, shared = win0, True  # the square itself: (1, size, size, C), the same for every position
    wy0, wx0 = ys[iy], xs[ix]
    fmap = None
    for i, op in enumerate(cache.ops):
        if not op.spatial:
            src = win.permute(0, 3, 1, 2)
            win = op.module(src.clone() if shared else src).permute(0, 2, 3, 1)
        else:
            sy, sx, ly, lx = plan[i]
            oy0, ox0 = sy[iy], sx[ix]
            py0, px0 = oy0 * op.s[0], ox0 * op.s[1]  # patch start in padded input coordinates
            mh, mw = input_span(0, ly, op.k[0], op.s[0], 0)[1], input_span(0, lx, op.k[1], op.s[1], 0)[1]
            pix = cache.pixels[i]
            idx = _index(py0, px0, mh, mw, cache.padded_w[i], wy0 + op.p[0], wx0 + op.p[1],
                         win.shape[1], win.shape[2], pix.shape[0], shared)
            patch = _assemble(pix, win, idx).permute(0, 3, 1, 2)  # channels-last NCHW view
            m = op.module
            if op.kind == "conv":
                out = F.conv2d(patch, m.weight, m.bias, m.stride, 0, m.dilation, m.groups)
            else:
                out = F.max_pool2d(patch, m.kernel_size, m.stride, 0, m.dilation, ceil_mode=False)
            win, shared = out.permute(0, 2, 3, 1), False
            wy0, wx0 = oy0, ox0
        if i == cache.layer_end:
            fmap = _paste_full(cache.layer_out[channel : channel + 1], win[..., channel : channel + 1],
                               wy0, wx0, shared, b)[..., 0]
    full = _paste_full(cache.conv_out[0], win, wy0, wx0, shared, b)
    return fmap, full.permute(0, 3, 1, 2)


def _paste_full(cached: torch.Tensor, win: torch.Tensor, wy0, wx0, shared: bool, b: int) -> torch.Tensor:
    """The whole map (B, H, W, C): cached (C, H, W) with each position's window pasted in."""
    c, h, w = cached.shape
    zero = torch.zeros(b, dtype=torch.long, device=cached.device)
    idx = _index(zero, zero, h, w, w, wy0, wx0, win.shape[1], win.shape[2], h * w, shared)
    return _assemble(cached.permute(1, 2, 0).reshape(-1, c), win, idx)


def bands(n: int, k: int) -> list[torch.Tensor]:
    """Split n axis positions into k contiguous bands of near-equal size."""
    k = max(1, min(k, n))
    edges = [round(i * n / k) for i in range(k + 1)]
    return [torch.arange(edges[i], edges[i + 1]) for i in range(k) if edges[i + 1] > edges[i]]
