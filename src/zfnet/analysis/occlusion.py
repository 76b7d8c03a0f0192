"""Occlusion sensitivity (Zeiler & Fergus 2014, Fig. 7): a grey square slid over the image.

For every position of the square one forward pass gives all of the paper's maps at once:

* ``feature``   (b) the total activation (sum over space) of the feature map of ``layer`` that is
  strongest on the unoccluded image (its channel is ``channel``);
* ``prob``      (d) the probability of the correct class ``target``;
* ``top_class`` / ``top_prob``  (e) the most probable class and its probability;
* ``projection`` (c) the deconvnet projection of that feature map's top activation, from
  ``zfnet.analysis.deconvnet.project`` (only with ``project=True``; imported lazily).

Conventions
-----------
* Positions: the square (``size`` x ``size`` pixels) has its top / left corner at ``0, stride, 2*stride,
  ...`` as long as it fits inside the image, i.e. ``n = (H - size) // stride + 1`` positions per axis.
  When ``stride`` does not divide ``H - size`` the last rows / columns of pixels are never occluded
  (Captum's ``Occlusion`` instead adds one more position, truncated at the border).
  ``maps["ys"]``/``maps["xs"]`` hold the top / left coordinates; map entry ``[i, j]`` is the square at
  ``(ys[i], xs[j])``.
* ``fill``: the value of the square, a number or one value per channel (default 0: the images are
  mean-subtracted, so 0 is the mean, the paper's "grey").
* "Strongest feature map": by default (``rank_by="max"``) the channel holding the largest single
  activation of ``layer`` on the unoccluded image, the one whose top activation the deconvnet projects
  (``rank_by="sum"``: the largest total activation). ``channel=`` overrides the choice.
* The model is evaluated in eval mode (dropout off); its training flag is restored afterwards.

How the sweep is computed (``method``)
--------------------------------------
``"incremental"`` (default where the model allows it): an occluder changes only the activations inside
its receptive field, which grows layer by layer. The unoccluded image is run once and the input of every
spatial op (conv, max pool) is cached. For each position and each spatial op, the interval of outputs
whose window intersects the changed interval of its input is computed per axis (exact integer arithmetic
with kernel, stride, padding, dilation, ceil mode); those outputs are recomputed from a patch of the
cached input (padded with zeros for convs, -inf for max pools, exactly the op's implicit padding) with the
previous op's recomputed window pasted in, by the same op with padding 0. Point-wise ops (ReLU, LRN,
which mixes channels but not positions, eval-mode BatchNorm / Dropout) act on the window only. To batch
positions, every position uses a window of the same length per op (the largest needed), shifted to stay
inside the map; recomputing a few unchanged outputs is harmless. Patches are assembled channels-last by
one ``index_select`` from the cached pixels and the window's (no per-position Python loop). After the last
conv block the window is pasted into the cached map; the fc layers then run in full, on many positions at
once (they stream their whole weight matrices per call). The result equals the direct computation
(occlude, run the whole model) up to float rounding: ``tests/test_occlusion.py`` checks every position in
float64. A module it does not know (anything but Conv2d with zero padding, MaxPool2d and point-wise
modules in the conv blocks) makes ``"auto"`` fall back to ``"full"``. At 224 with a 32-pixel square the
recomputed windows are, per axis, 19 of 110 (conv1), 11 of 55, 8 of 26, 5 of 13, 7, 9, 11 of 13 (conv3-5),
6 of 6: about a quarter of the conv work (3-10x faster than the direct sweep on a loaded or idle 2-core
CPU: ``benchmarks/bench_occlusion.py``).

``"full"``: occluded copies built with one broadcast mask (``torch.where(mask, fill, image)``), run through
the whole model (``model.extract``).

Chunks: positions run in batches of ``chunk``. ``chunk=None`` derives it from memory: the bytes one
position needs are estimated from the unoccluded run, as the largest set of tensors alive at once
(``incremental``: previous window, gather buffer, index, patch, output and point-wise temporaries of the
worst op, plus the pasted last conv map; ``full``: the occluded copy and the largest input + output pair
of a module), times 2; the budget is half the free memory of a CUDA device, or on CPU a quarter of the
available RAM capped at 1 GiB (larger batches do not run faster on a CPU); never more than all positions.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["memory_budget", "occlusion_maps", "occlusion_positions", "pixel_attribution", "projection"]

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
)
_CPU_CAP = 1 << 30


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


def memory_budget(device: torch.device | str | None = None) -> int:
    """Bytes a sweep may use: half the free memory of a CUDA device; on CPU a quarter of the available
    RAM, capped at 1 GiB."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free // 2)
    avail = None
    try:
        import psutil

        avail = psutil.virtual_memory().available
    except Exception:  # pragma: no cover - psutil missing
        try:
            with open("/proc/meminfo") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        avail = int(line.split()[1]) * 1024
        except OSError:
            pass
    if avail is None:
        avail = 4 << 30
    return int(min(avail // 4, _CPU_CAP))


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


# ------------------------------------------------------------------------- incremental machinery
@dataclass
class _Op:
    module: nn.Module
    block: str
    kind: str  # "conv", "pool" or "pointwise"
    n_in: tuple[int, int]
    n_out: tuple[int, int]
    out_numel: int
    k: tuple[int, int] = (1, 1)  # effective kernel extent (dilation included)
    s: tuple[int, int] = (1, 1)
    p: tuple[int, int] = (0, 0)
    padded_w: int = 0  # width of the padded cached input
    cache: torch.Tensor | None = None  # padded cached input as channels-last pixels (Hp * Wp, C)


@dataclass
class _Cache:
    """The unoccluded pass, op by op."""

    ops: list[_Op] = field(default_factory=list)
    block_end: dict[str, int] = field(default_factory=dict)  # block -> index of its last op
    block_out: dict[str, torch.Tensor] = field(default_factory=dict)  # block -> output (C, H, W)
    conv_out: torch.Tensor | None = None  # output of the last conv block (1, C, H, W)


def _classify(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            return "unknown"
        return "conv"
    if isinstance(module, nn.MaxPool2d):
        return "unknown" if module.return_indices else "pool"
    if isinstance(module, _POINTWISE):
        return "pointwise"
    return "unknown"


def _conv_children(model: nn.Module) -> list[tuple[str, nn.Module]]:
    out = []
    for name in model.conv_layers:
        block = model.get_submodule(name)
        children = list(block.children()) if isinstance(block, nn.Sequential) else [block]
        out.extend((name, m) for m in children)
    return out


def _incremental_ok(model: nn.Module) -> bool:
    """The incremental sweep needs the PaperCNN layout and conv blocks made of known modules."""
    if not all(hasattr(model, a) for a in ("conv_layers", "fc_layers", "feature_layers")):
        return False
    convs = list(model.conv_layers)
    if list(model.feature_layers[: len(convs)]) != convs:
        return False
    return all(_classify(m) != "unknown" for _b, m in _conv_children(model))


def _cache_forward(model: nn.Module, x: torch.Tensor) -> _Cache:
    """Run the unoccluded image (1, C, H, W) through the conv blocks op by op, caching the padded input
    of every spatial op (zeros for convs, -inf for max pools: exactly their implicit padding)."""
    cache = _Cache()
    cur = x
    for block, m in _conv_children(model):
        kind = _classify(m)
        out = m(cur)
        n_in, n_out = (cur.shape[-2], cur.shape[-1]), (out.shape[-2], out.shape[-1])
        op = _Op(m, block, kind, n_in, n_out, out[0].numel())
        if kind != "pointwise":
            k, d = _pair(m.kernel_size), _pair(m.dilation)
            s = _pair(m.stride if m.stride is not None else m.kernel_size)
            p = _pair(m.padding)
            keff = tuple(d[a] * (k[a] - 1) + 1 for a in range(2))
            # max-pool ceil mode may let the last window run past the padding: pad enough for every window
            pad_hi = tuple(max(0, (n_out[a] - 1) * s[a] + keff[a] - n_in[a] - p[a]) for a in range(2))
            padded = F.pad(cur[0], (p[1], pad_hi[1], p[0], pad_hi[0]), value=0.0 if kind == "conv" else -math.inf)
            op.k, op.s, op.p, op.padded_w = keff, s, p, padded.shape[-1]
            op.cache = padded.permute(1, 2, 0).reshape(-1, padded.shape[0])
        cache.ops.append(op)
        cache.block_end[block] = len(cache.ops) - 1
        cache.block_out[block] = out[0]
        cur = out
    cache.conv_out = cur
    return cache


def _interval(a: torch.Tensor, b: torch.Tensor, k: int, s: int, p: int, n_out: int):
    """Outputs [lo, hi) of an op (kernel extent k, stride s, padding p) whose window meets inputs [a, b).

    Output o reads padded inputs [o*s, o*s + k), i.e. inputs [o*s - p, o*s - p + k - 1]: it meets [a, b)
    iff ceil((a + p - k + 1) / s) <= o <= floor((b - 1 + p) / s).
    """
    lo = torch.div(a + p - k + s, s, rounding_mode="floor").clamp(min=0)
    hi = torch.div(b - 1 + p, s, rounding_mode="floor").clamp(max=n_out - 1) + 1
    empty = (b <= a) | (hi <= lo)
    lo = torch.where(empty, lo.clamp(max=n_out - 1), lo)
    return lo, torch.where(empty, lo, hi)


def _windows(cache: _Cache, ys: torch.Tensor, xs: torch.Tensor, size: int) -> dict[int, tuple]:
    """Per spatial op: (window start per y position, per x position, length y, length x) at its output.

    The true changed interval is propagated exactly; the recomputed window has one length per op for all
    the positions given (the largest), shifted left / up where it would leave the map."""
    iv = [(ys, ys + size), (xs, xs + size)]
    plan = {}
    for i, op in enumerate(cache.ops):
        if op.kind == "pointwise":
            continue
        starts, lengths, new = [], [], []
        for a in range(2):
            lo, hi = _interval(iv[a][0], iv[a][1], op.k[a], op.s[a], op.p[a], op.n_out[a])
            length = min(op.n_out[a], max(1, int((hi - lo).max())))
            starts.append(lo.clamp(max=op.n_out[a] - length))
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


def _incremental_chunk(cache: _Cache, plan, win0, iy, ix, ys, xs, layer, channel):
    """Recompute, for the positions (ys[iy], xs[ix]) of one group, only the windows their squares reach.

    Windows are channels-last (B, h, w, C). Returns the ``layer`` map of ``channel`` (B, H, W) and the
    output of the last conv block (B, C, H, W), ready for the fc layers."""
    b = iy.shape[0]
    win, shared = win0, True  # the square itself: (1, size, size, C), the same for every position
    wy0, wx0 = ys[iy], xs[ix]
    fmap = None
    for i, op in enumerate(cache.ops):
        if op.kind == "pointwise":
            win = op.module(win.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        else:
            sy, sx, ly, lx = plan[i]
            oy0, ox0 = sy[iy], sx[ix]
            py0, px0 = oy0 * op.s[0], ox0 * op.s[1]  # patch start in padded input coordinates
            mh, mw = (ly - 1) * op.s[0] + op.k[0], (lx - 1) * op.s[1] + op.k[1]
            idx = _index(py0, px0, mh, mw, op.padded_w, wy0 + op.p[0], wx0 + op.p[1],
                         win.shape[1], win.shape[2], op.cache.shape[0], shared)
            patch = _assemble(op.cache, win, idx).permute(0, 3, 1, 2)  # channels-last NCHW view
            m = op.module
            if op.kind == "conv":
                out = F.conv2d(patch, m.weight, m.bias, m.stride, 0, m.dilation, m.groups)
            else:
                out = F.max_pool2d(patch, m.kernel_size, m.stride, 0, m.dilation, ceil_mode=False)
            win, shared = out.permute(0, 2, 3, 1), False
            wy0, wx0 = oy0, ox0
        if op.block == layer and cache.block_end[layer] == i:
            fmap = _paste_full(cache.block_out[layer][channel : channel + 1], win[..., channel : channel + 1],
                               wy0, wx0, shared, b)[..., 0]
    full = _paste_full(cache.conv_out[0], win, wy0, wx0, shared, b)
    return fmap, full.permute(0, 3, 1, 2)


def _paste_full(cached: torch.Tensor, win: torch.Tensor, wy0, wx0, shared: bool, b: int) -> torch.Tensor:
    """The whole map (B, H, W, C): cached (C, H, W) with each position's window pasted in."""
    c, h, w = cached.shape
    zero = torch.zeros(b, dtype=torch.long, device=cached.device)
    idx = _index(zero, zero, h, w, w, wy0, wx0, win.shape[1], win.shape[2], h * w, shared)
    return _assemble(cached.permute(1, 2, 0).reshape(-1, c), win, idx)


def _fc_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = torch.flatten(x, 1)
    for name in model.fc_layers:
        x = model.get_submodule(name)(x)
    return x


def _bands(n: int, k: int) -> list[torch.Tensor]:
    """Split n axis positions into k contiguous bands of near-equal size."""
    k = max(1, min(k, n))
    edges = [round(i * n / k) for i in range(k + 1)]
    return [torch.arange(edges[i], edges[i + 1]) for i in range(k) if edges[i + 1] > edges[i]]


# ------------------------------------------------------------------------------ the full sweep
def _full_chunk(model, x, fill_t, ty, tx, size, layer, channel):
    """All occluded copies of the chunk as one broadcast ``where``, then the whole model."""
    h, w = x.shape[-2:]
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    my = (rows[None, :] >= ty[:, None]) & (rows[None, :] < ty[:, None] + size)  # (B, H)
    mx = (cols[None, :] >= tx[:, None]) & (cols[None, :] < tx[:, None] + size)  # (B, W)
    mask = (my[:, :, None] & mx[:, None, :])[:, None]  # (B, 1, H, W)
    occluded = torch.where(mask, fill_t, x)  # (B, C, H, W)
    last = model.feature_layers[-1]
    feats = model.extract(occluded, [layer, last])
    return feats[layer][:, channel], feats[last]


def _activation_sizes(model: nn.Module, x: torch.Tensor) -> list[int]:
    """Per-example numel of every leaf module's output, in forward order."""
    sizes: list[int] = []

    def hook(_m, _i, o):
        if isinstance(o, torch.Tensor):
            sizes.append(o[0].numel())

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        model(x[None])
    finally:
        for hd in handles:
            hd.remove()
    return sizes or [x.numel()]


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
    param = next(model.parameters())
    return image.to(device=param.device, dtype=param.dtype)


def _fill_tensor(fill: Any, channels: int, like: torch.Tensor) -> torch.Tensor:
    f = torch.as_tensor(fill, dtype=like.dtype, device=like.device).flatten()
    if f.numel() == 1:
        f = f.expand(channels)
    if f.numel() != channels:
        raise ValueError(f"fill: expected a number or {channels} per-channel values, got {f.numel()} values")
    return f.reshape(channels, 1, 1)


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=1)


def projection(model: nn.Module, image: torch.Tensor, layer: str, channel: int) -> torch.Tensor | None:
    """(c) of Fig. 7: ``zfnet.analysis.deconvnet.project`` of map ``channel`` of ``layer`` for one image
    (3, H, W) -> (1, 3, H, W) on the CPU; None (with a warning) when that module or function is missing."""
    return _project(model, _prepare_image(image, model), layer, channel)


def _project(model: nn.Module, x: torch.Tensor, layer: str, channel: int) -> torch.Tensor | None:
    try:
        deconvnet = importlib.import_module("zfnet.analysis.deconvnet")
        project = getattr(deconvnet, "project")
    except (ImportError, AttributeError) as exc:
        warnings.warn(f"occlusion_maps(project=True): zfnet.analysis.deconvnet.project is unavailable ({exc}); "
                      "returning no projection", RuntimeWarning, stacklevel=3)
        return None
    channels = torch.tensor([channel], device=x.device)
    with torch.enable_grad():  # the deconvnet is autograd-based; the sweep itself runs under no_grad
        return project(model, x[None], layer, channels).detach().cpu()


# ------------------------------------------------------------------------------------------- API
@torch.no_grad()
def occlusion_maps(
    model: nn.Module,
    image: torch.Tensor,
    target: int,
    size: int,
    stride: int,
    layer: str = "conv5",
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
) -> dict[str, Any]:
    """Occlusion maps of one mean-subtracted ``image`` (3, H, W) for the correct class ``target``.

    See the module docstring for the conventions. ``size`` / ``stride``: side and step of the square in
    pixels; ``layer``: the conv block whose strongest map is read (paper: ``conv5``); ``fill``: the square's
    value (number or per-channel); ``chunk``: positions per batch (None: from the memory budget);
    ``channel`` / ``rank_by``: which map; ``method``: "auto", "incremental" or "full"; ``bands``: the
    incremental sweep groups positions into bands x bands groups, each with its own (smaller) window
    sizes (None: 1; on a 2-core CPU more bands saved conv work but not time); ``project``: also compute (c);
    ``keep_probs``: also return the whole softmax per position; ``progress``: a tqdm bar.

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
    conv_layers = list(getattr(model, "conv_layers", []))
    if layer not in conv_layers:
        raise ValueError(f"layer: expected a conv layer of the model {conv_layers}, got {layer!r}")
    x = _prepare_image(image, model)
    c_in, h, w = x.shape
    ys, xs = occlusion_positions(h, size, stride), occlusion_positions(w, size, stride)
    n_y, n_x = len(ys), len(xs)
    n_pos = n_y * n_x
    dev = x.device
    ys_d, xs_d = ys.to(dev), xs.to(dev)
    fill_t = _fill_tensor(fill, c_in, x)
    if method == "auto":
        method = "incremental" if _incremental_ok(model) else "full"
    elif method == "incremental" and not _incremental_ok(model):
        raise ValueError("method='incremental' needs conv blocks made of Conv2d / MaxPool2d / point-wise modules")
    if chunk is not None and (isinstance(chunk, bool) or int(chunk) != chunk or chunk < 1):
        raise ValueError(f"chunk: expected a positive int or None, got {chunk!r}")

    was_training = model.training
    model.eval()
    try:
        # ---- the unoccluded image
        if method == "incremental":
            cache = _cache_forward(model, x[None])
            layer_map = cache.block_out[layer]
            logits0 = _fc_forward(model, cache.conv_out)
        else:
            last = model.feature_layers[-1]
            feats = model.extract(x[None], [layer, last])
            layer_map, logits0 = feats[layer][0], feats[last]
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
            groups = [(by, bx) for by in _bands(n_y, bands) for bx in _bands(n_x, bands)]
        else:
            groups = [(torch.arange(n_y), torch.arange(n_x))]

        # ---- chunk size from the memory budget: per position, the largest set of tensors alive at once
        if chunk is None:
            if method == "incremental":
                plan = _windows(cache, ys_d, xs_d, size)
                peak, prev = 0, size * size * c_in
                for i, op in enumerate(cache.ops):
                    if i not in plan:
                        continue
                    ly, lx = plan[i][2], plan[i][3]
                    m_n = ((ly - 1) * op.s[0] + op.k[0]) * ((lx - 1) * op.s[1] + op.k[1])
                    out_numel = op.out_numel * ly * lx // (op.n_out[0] * op.n_out[1])
                    # previous window + its copy in the gather buffer, int64 index, patch, output and the
                    # temporaries of the point-wise ops after it (LRN: about 3)
                    peak = max(peak, 2 * prev + 2 * m_n + m_n * op.cache.shape[1] + 4 * out_numel)
                    prev = out_numel
                d = cache.conv_out[0].numel()
                per = peak + 4 * d  # + the pasted last conv map (index, buffer, map) and its pending copy
            else:
                acts = _activation_sizes(model, x)
                per = 3 * c_in * h * w + 2 * max(a + b for a, b in zip(acts, acts[1:] + [0]))
            chunk = int(max(1, min(n_pos, memory_budget(dev) // max(1, int(2 * per * x.element_size())))))
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
            per_row = 2 * (d + sum(m.out_features for m in model.modules() if isinstance(m, nn.Linear)))
            fc_rows = int(max(chunk, min(n_pos, memory_budget(dev) // max(1, 2 * per_row * x.element_size()))))

        def flush() -> None:
            if pending:
                idx = torch.cat([i for i, _ in pending])
                record(idx, _fc_forward(model, torch.cat([f for _, f in pending])))
                pending.clear()

        work = []
        for by, bx in groups:
            gy, gx = by.to(dev), bx.to(dev)
            flat_y = gy.repeat_interleave(len(gx))
            flat_x = gx.repeat(len(gy))
            for start in range(0, len(flat_y), chunk):
                work.append((gy, gx, flat_y[start : start + chunk], flat_x[start : start + chunk]))
        if progress:
            try:
                from tqdm.auto import tqdm

                work = tqdm(work, desc="occlusion", unit="chunk")
            except ImportError:  # pragma: no cover
                pass
        plans: dict[tuple[int, int], dict] = {}
        win0 = fill_t.reshape(1, 1, 1, c_in).expand(1, size, size, c_in)
        n_pending = 0
        for gy, gx, iy, ix in work:
            idx = iy * n_x + ix
            if method == "incremental":
                key = (int(gy[0]), int(gx[0]))
                if key not in plans:
                    plans[key] = _windows(cache, ys_d[gy], xs_d[gx], size)
                # the group's window starts are indexed by position within the group
                fmap, conv = _incremental_chunk(cache, plans[key], win0, iy - gy[0], ix - gx[0],
                                                ys_d[gy], xs_d[gx], layer, channel)
                if n_pending + len(idx) > fc_rows:
                    flush()
                    n_pending = 0
                pending.append((idx, conv))
                n_pending += len(idx)
            else:
                fmap, logits = _full_chunk(model, x, fill_t, ys_d[iy], xs_d[ix], size, layer, channel)
                record(idx, logits)
            feature[idx] = fmap.flatten(1).sum(1).to(feature.dtype)
        flush()
    finally:
        model.train(was_training)

    out = {
        "feature": feature.reshape(n_y, n_x).cpu(),
        "prob": prob.reshape(n_y, n_x).cpu(),
        "top_class": top_class.reshape(n_y, n_x).cpu(),
        "top_prob": top_prob.reshape(n_y, n_x).cpu(),
        "ys": ys,
        "xs": xs,
        "channel": channel,
        "unoccluded": unoccluded,
        "projection": _project(model, x, layer, channel) if project else None,
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
