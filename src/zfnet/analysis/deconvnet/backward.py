"""The fast deconvnet's backward on receptive-field windows (private to :mod:`zfnet.analysis.deconvnet.engine`):
:func:`project_windows` walks a batch of units down the chain with three steps per op, *filter* (the
transposed convolution), *unpool* (scatter at the cached switches) and, with ``lrn="gradient"``, the LRN's
vector-Jacobian product; :func:`window_bytes` is the working set of one unit.

Every function takes a batch of units' windows ``g`` (U, C, h, w), channels-last, and the cached per-image
data of the op (switches / LRN factors) gathered at each unit's window rows and columns. Tricks for a CPU:
unpooling, and transposed convolutions of sparse signals, run in :mod:`zfnet.analysis.deconvnet.sparse`
(numba kernels that touch only non-zero elements); otherwise a stride-s transposed convolution with few
output channels (conv1 -> RGB) runs in its polyphase form, an ordinary convolution with s*s*C output
channels followed by a pixel shuffle (same products and sums, much better GEMM shapes); switches are uint8
offsets inside their pool window, so a window's scatter indices are one multiply-add.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zfnet.analysis.chain import Op, input_span
from zfnet.analysis.deconvnet import sparse


def project_windows(dn, end, py, px, n, ch, vals, sy, sx, rule: str = "deconvnet", lrn: str | None = None
                    ) -> torch.Tensor:
    """Project a batch of units of the :class:`~zfnet.analysis.deconvnet.engine.Deconvnet` ``dn`` (its
    cached switches / LRN factors) with the same window geometry ``py`` / ``px`` (:class:`AxisProfile`).
    ``n`` / ``ch`` / ``vals``: each unit's image, channel and seed value; sy/sx: (U, end+1) clipped starts.
    ``rule="guided"``: each ReLU's backward also masked by its cached forward output > 0 (``dn.relu_mask``);
    ``lrn``: the LRN rule (default ``dn.lrn``)."""
    lrn = dn.lrn if lrn is None else lrn
    ops = dn.ops
    u = n.shape[0]
    dev = vals.device
    ar = torch.arange(u, device=dev)
    g = vals.new_zeros((u, ops[end - 1].out_shape[0], 1, 1))
    g[ar, ch, 0, 0] = vals
    g = g.contiguous(memory_format=torch.channels_last)
    for i in reversed(range(end)):
        op = ops[i]
        if op.kind == "relu":
            g = g.clamp_(min=0)
            if rule == "guided":
                rows = sy[:, i + 1, None] + torch.arange(py.lengths[i + 1], device=dev)
                cols = sx[:, i + 1, None] + torch.arange(px.lengths[i + 1], device=dev)
                mask = dn.relu_mask[i][n[:, None, None], rows[:, :, None], cols[:, None, :]]  # (U, h, w, C)
                g = g * mask.permute(0, 3, 1, 2)
        elif op.kind == "lrn":
            if lrn == "gradient":
                rows = sy[:, i, None] + torch.arange(py.lengths[i], device=dev)
                cols = sx[:, i, None] + torch.arange(px.lengths[i], device=dev)
                g = lrn_grad(g, dn.lrn_in[i], op.lrn, n, rows, cols)
        elif op.kind == "pool":
            if sparse.runs_on(g):
                g = sparse.unpool(g, dn.pool_idx[i], op.s, n, sy[:, i + 1].contiguous(), sx[:, i + 1].contiguous(),
                                  py.conv_off[i], px.conv_off[i], py.lengths[i], px.lengths[i])
            else:
                rows = sy[:, i + 1, None] + torch.arange(py.lengths[i + 1], device=dev)
                cols = sx[:, i + 1, None] + torch.arange(px.lengths[i + 1], device=dev)
                g = unpool(g, dn.pool_idx[i], op.s, n, rows, cols, py.conv_off[i], px.conv_off[i], py.lengths[i],
                           px.lengths[i])
        elif op.kind == "conv":
            g = conv_transpose(g.contiguous(memory_format=torch.channels_last), op, dn.polyphase, i)
            oy, ox = py.conv_off[i], px.conv_off[i]
            g = g[:, :, oy:oy + py.lengths[i], ox:ox + px.lengths[i]]
    return g


def window_bytes(ops, end, py, px, dtype) -> float:
    """Bytes one unit's projection holds at its peak (the largest window, transposed-conv outputs included)."""
    esz = torch.empty((), dtype=dtype).element_size()
    worst = 0
    for i in range(end + 1):
        c = ops[i].in_shape[0] if i < end else ops[end - 1].out_shape[0]
        worst = max(worst, c * py.lengths[i] * px.lengths[i])
        if i < end and ops[i].kind == "conv":  # transposed conv output before slicing
            op = ops[i]
            hh = input_span(0, py.lengths[i + 1], op.k[0], op.s[0], 0)[1]
            ww = input_span(0, px.lengths[i + 1], op.k[1], op.s[1], 0)[1]
            worst = max(worst, op.in_shape[0] * hh * ww * (4 if op.in_shape[0] <= 8 else 1))
    return worst * (3 * esz + 16)


def conv_transpose(g: torch.Tensor, op: Op, poly: dict, key) -> torch.Tensor:
    """The transposed convolution of ``op`` (no bias) on ``g``; ``poly`` caches polyphase weights by ``key``.

    On a CPU, where few elements of ``g`` are non-zero (after unpooling and rectification: most), only those
    are multiplied (:func:`zfnet.analysis.deconvnet.sparse.conv_transpose`)."""
    w = op.weight.to(g.dtype)
    if sparse.wins(g, op.groups, op.dilation):
        return sparse.conv_transpose(g, w, op.s)
    if op.groups == 1 and op.dilation == (1, 1) and op.s != (1, 1) and op.in_shape[0] <= 8:
        # few output channels (RGB): the polyphase form runs as an ordinary conv with good GEMM shapes
        if key not in poly or poly[key][0].dtype != g.dtype:
            poly[key] = _polyphase_weight(w, op.s)
        wp, (jy, jx) = poly[key]
        h, w_ = g.shape[-2:]
        r = F.conv2d(g, wp, padding=(jy - 1, jx - 1))
        r = F.pixel_shuffle(r, op.s[0]) if op.s[0] == op.s[1] else _interleave(r, op.s)
        return r[..., : (h - 1) * op.s[0] + op.k[0], : (w_ - 1) * op.s[1] + op.k[1]]
    return F.conv_transpose2d(g, w, stride=op.s, dilation=op.dilation, groups=op.groups)


def unpool(g: torch.Tensor, switches: torch.Tensor, stride: tuple[int, int], n, rows, cols, off_y: int,
           off_x: int, h_in: int, w_in: int) -> torch.Tensor:
    """Scatter-add g (U, C, h, w) at the cached switches (N, Ho, Wo, C, 2): (U, C, h_in, w_in), channels-last.

    ``n`` (U,): each unit's image; ``rows`` (U, h) / ``cols`` (U, w): its window's pool-output rows / columns;
    ``off_y`` / ``off_x``: where the window's first pool window starts inside the input window (h_in, w_in).
    """
    u, c, h, w = g.shape
    d = switches[n[:, None, None], rows[:, :, None], cols[:, None, :]]  # (U, h, w, C, 2)
    # switch of window output (r, q): row r*s - off_y + dy, column q*s - off_x + dx of the input window
    dev = g.device
    base = ((torch.arange(h, device=dev) * stride[0] - off_y)[:, None] * w_in
            + (torch.arange(w, device=dev) * stride[1] - off_x)[None, :])
    local = d[..., 0].long() * w_in
    local += d[..., 1]
    local += base[None, :, :, None]
    src = g.permute(0, 2, 3, 1).reshape(u, h * w, c)
    out = g.new_zeros((u, h_in * w_in, c))
    out.scatter_add_(1, local.view(u, h * w, c), src)
    return out.view(u, h_in, w_in, c).permute(0, 3, 1, 2)


def lrn_grad(g: torch.Tensor, fac: torch.Tensor, lrn: tuple[int, float, float, float], n, rows, cols) -> torch.Tensor:
    """Vector-Jacobian product of F.local_response_norm on the window (cross-channel, pointwise in space).

    ``fac`` (3, N, H, W, C): the cached LRN input and factors (:func:`zfnet.analysis.deconvnet.recorder.lrn_factors`);
    ``lrn``: (size, alpha, beta, k).
    """
    size, alpha, beta, k = lrn
    a, p, q = (fac[j][n[:, None, None], rows[:, :, None], cols[:, None, :]].to(g.dtype) for j in range(3))
    gl = g.permute(0, 2, 3, 1)  # (U, h, w, C)
    t = F.pad(gl * q, (size // 2, (size - 1) // 2))
    c = gl.shape[-1]
    box = t[..., 0:c].clone()
    for j in range(1, size):
        box += t[..., j:j + c]
    out = gl * p - (2.0 * alpha * beta / size) * a * box
    return out.permute(0, 3, 1, 2)


def _polyphase_weight(w: torch.Tensor, s: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
    """conv_transpose2d(g, w, stride=s) == pixel_shuffle-style interleave of conv2d(pad(g), wp)."""
    cin_t, cout_t, kh, kw = w.shape  # conv_transpose weight layout: (in of transpose, out of transpose, kh, kw)
    jy, jx = -(-kh // s[0]), -(-kw // s[1])
    wp = w.new_zeros((cout_t, s[0], s[1], cin_t, jy, jx))
    for ry in range(s[0]):
        for rx in range(s[1]):
            for ty in range(jy):
                ky = s[0] * (jy - 1 - ty) + ry
                if ky >= kh:
                    continue
                for tx in range(jx):
                    kx = s[1] * (jx - 1 - tx) + rx
                    if kx >= kw:
                        continue
                    wp[:, ry, rx, :, ty, tx] = w[:, :, ky, kx].t()
    return wp.reshape(cout_t * s[0] * s[1], cin_t, jy, jx), (jy, jx)


def _interleave(r: torch.Tensor, s: tuple[int, int]) -> torch.Tensor:
    u, c, h, w = r.shape
    co = c // (s[0] * s[1])
    return r.view(u, co, s[0], s[1], h, w).permute(0, 1, 4, 2, 5, 3).reshape(u, co, h * s[0], w * s[1])
