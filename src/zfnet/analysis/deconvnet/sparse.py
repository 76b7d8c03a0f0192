"""Element-sparse transposed convolution on the CPU (private to the fast engine's backward).

A deconvnet's signal on its way down is mostly zeros: after an unpooling only the switches hold values, and
each rectification zeroes about half of those. On the demo model 6% of the elements that reach conv2^T and
conv1^T are non-zero (``benchmarks/bench_atlas_projections.py``, ``arithmetic``), yet a dense transposed
convolution multiplies them all. :func:`conv_transpose` multiplies only the non-zero ones, with the same
products as ``F.conv_transpose2d`` (summed in another order, so equal to float rounding):

for every position of every unit, the non-zero channels are gathered (branch-free), their filters summed
into one patch ``sum_c g[c] * W[c]`` (a contiguous multiply-add over ``k_h * k_w * C_out`` values, which
vectorizes), and the patch added into the output window once. Output and input are channels-last, so a patch
row is one contiguous run. Units run in parallel (numba ``prange``), each writing its own output only, so
the result does not depend on the thread count.

:func:`unpool` (the scatter at the cached switches before those convolutions) runs in the same way: each unit's
non-zero values added at their switches, in parallel over units, into an output each unit zeroes itself.

Measured on the demo model's conv5 units (1 thread): conv2^T about 5x and conv1^T about 3x faster than oneDNN's dense
form at their 6% density; it wins up to about 30% density (:data:`MAX_DENSITY`).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

__all__ = ["MAX_DENSITY", "conv_transpose", "runs_on", "unpool", "wins"]

# the element density below which the sparse form beats oneDNN's dense transposed convolution on a CPU
# (measured: about 30% for the demo model's 192-channel conv3^T / conv4^T, far above for conv2^T / conv1^T)
MAX_DENSITY = 0.3


def runs_on(g: torch.Tensor) -> bool:
    """Whether these kernels take ``g``: a float32 / float64 tensor on the CPU."""
    return g.device.type == "cpu" and g.dtype in (torch.float32, torch.float64)


def wins(g: torch.Tensor, groups: int, dilation: tuple[int, int]) -> bool:
    """Whether :func:`conv_transpose` should run on ``g`` (CPU, float, plain convolution, sparse enough: the
    density counted on at most 8 of its units, evenly spaced, which costs a pass over those only)."""
    if not runs_on(g) or groups != 1 or tuple(dilation) != (1, 1) or g.numel() == 0:
        return False
    sample = g[:: max(1, g.shape[0] // 8)]
    return int(torch.count_nonzero(sample)) < MAX_DENSITY * sample.numel()


@functools.cache
def _launch() -> None:
    """Start numba's thread pool once, keeping torch's thread count: numba's OpenMP layer shares torch's
    OpenMP runtime, and starting its pool sets that runtime's thread count to every core (so torch, set to 1
    thread, silently ran on 2)."""
    import numba

    n = torch.get_num_threads()
    numba.get_num_threads()  # launches the pool
    torch.set_num_threads(n)


def _threads() -> None:
    """numba's threads as many as torch's."""
    import numba

    _launch()
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


@functools.cache
def _kernel():
    import numba
    from numba import prange

    @numba.njit(parallel=True, fastmath=True, cache=True, boundscheck=False)
    def kernel(g, wt, s0, s1, kh, row, cout, out):  # pragma: no cover - compiled
        # g (U, H, W, C); wt (C, kh * row) as [ky][kx][c_out]; out (U, H2, W2 * c_out)
        u_n, h_n, w_n, c_n = g.shape
        size = wt.shape[1]
        for u in prange(u_n):
            ou = out[u]
            ou[:] = 0
            gu = g[u]
            patch = np.empty_like(wt[0])
            idx = np.empty(c_n, np.int64)
            val = np.empty_like(gu[0, 0])
            for y in range(h_n):
                for x in range(w_n):
                    gp = gu[y, x]
                    m = 0
                    for c in range(c_n):  # the non-zero channels, branch-free
                        v = gp[c]
                        idx[m] = c
                        val[m] = v
                        m += v != 0
                    if m == 0:
                        continue
                    v = val[0]
                    w = wt[idx[0]]
                    for j in range(size):
                        patch[j] = v * w[j]
                    for t in range(1, m):
                        v = val[t]
                        w = wt[idx[t]]
                        for j in range(size):
                            patch[j] += v * w[j]
                    b0 = x * s1 * cout
                    for ky in range(kh):
                        o = ou[y * s0 + ky, b0:b0 + row]
                        p = patch[ky * row:(ky + 1) * row]
                        for j in range(row):
                            o[j] += p[j]
        return out

    return kernel


def conv_transpose(g: torch.Tensor, w: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """``F.conv_transpose2d(g, w, stride=stride)`` (no padding, groups 1, dilation 1) on the CPU, multiplying only
    the non-zero elements of ``g`` (U, C, h, w); ``w`` (C, C_out, k_h, k_w). Returns (U, C_out, H, W),
    channels-last."""
    u, c, h, w_ = g.shape
    cout, kh, kw = w.shape[1:]
    s0, s1 = int(stride[0]), int(stride[1])
    hh, ww = (h - 1) * s0 + kh, (w_ - 1) * s1 + kw
    gl = g.permute(0, 2, 3, 1).contiguous()  # no copy when g is channels-last
    wt = w.to(g.dtype).permute(0, 2, 3, 1).reshape(c, kh * kw * cout).contiguous()
    out = torch.empty((u, hh, ww * cout), dtype=g.dtype)
    _threads()
    _kernel()(gl.numpy(), wt.numpy(), s0, s1, kh, kw * cout, cout, out.numpy())
    return out.view(u, hh, ww, cout).permute(0, 3, 1, 2)


@functools.cache
def _unpool_kernel():
    import numba
    from numba import prange

    @numba.njit(parallel=True, cache=True, boundscheck=False)
    def kernel(g, sw, n, row0, col0, s0, s1, off_y, off_x, out):  # pragma: no cover - compiled
        # g (U, h, w, C); sw (N, Ho, Wo, C, 2) uint8 (dy, dx); out (U, h_in, w_in, C); returns the count of
        # switches that fell outside the output window (0 for the engine's windows)
        u_n, h_n, w_n, c_n = g.shape
        h_in, w_in = out.shape[1], out.shape[2]
        bad = np.zeros(u_n, np.int64)
        for u in prange(u_n):
            ou = out[u]
            ou[:] = 0
            su = sw[n[u]]
            for r in range(h_n):
                yb = r * s0 - off_y
                for q in range(w_n):
                    xb = q * s1 - off_x
                    gp = g[u, r, q]
                    sp = su[row0[u] + r, col0[u] + q]
                    for c in range(c_n):
                        v = gp[c]
                        if v != 0:
                            y = yb + np.int64(sp[c, 0])
                            x = xb + np.int64(sp[c, 1])
                            if 0 <= y < h_in and 0 <= x < w_in:
                                ou[y, x, c] += v
                            else:
                                bad[u] += 1
        return bad.sum()

    return kernel


def unpool(g: torch.Tensor, switches: torch.Tensor, stride: tuple[int, int], n: torch.Tensor, row0: torch.Tensor,
           col0: torch.Tensor, off_y: int, off_x: int, h_in: int, w_in: int) -> torch.Tensor:
    """:func:`zfnet.analysis.deconvnet.backward.unpool` on the CPU, skipping zeros: ``g`` (U, C, h, w) added at
    the switches (N, Ho, Wo, C, 2) of each unit's image ``n`` (U,), its window starting at pool-output row
    ``row0`` (U,) and column ``col0`` (U,); returns (U, C, h_in, w_in), channels-last."""
    u, c, h, w = g.shape
    gl = g.permute(0, 2, 3, 1).contiguous()
    out = torch.empty((u, h_in, w_in, c), dtype=g.dtype)
    _threads()
    bad = _unpool_kernel()(gl.numpy(), switches.numpy(), n.numpy(), row0.numpy(), col0.numpy(), int(stride[0]),
                           int(stride[1]), int(off_y), int(off_x), out.numpy())
    if bad:
        raise RuntimeError(f"unpool: {bad} switches fell outside their {h_in} x {w_in} window (a window geometry bug)")
    return out.permute(0, 3, 1, 2)
