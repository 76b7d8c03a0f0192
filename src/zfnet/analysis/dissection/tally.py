"""Network dissection's arithmetic (:mod:`zfnet.analysis.dissection.passes` runs it): the exact streaming quantile,
PIL's bilinear resize of a float map, and the batched IoU tallies of (image, unit) pairs, each equal to
NetDissect-Lite's formulas (``tests/test_dissection.py`` holds the numpy port they are checked against)."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

__all__ = ["below", "iou_from_tallies", "label_tally", "percentile_from_top", "quantile_k", "resize_maps", "tally_pairs"]


# ---------------------------------------------------------------------------------------------------------
# quantiles
# ---------------------------------------------------------------------------------------------------------


def quantile_k(m: int, quantile: float) -> int:
    """How many of the ``m`` largest values ``numpy.percentile(x, 100 * (1 - quantile))`` depends on."""
    if not 0.0 <= quantile < 1.0:
        raise ValueError(f"quantile must lie in [0, 1), got {quantile!r}")
    pos = (1.0 - quantile) * (m - 1)
    return max(1, min(m, m - int(math.floor(pos))))


def percentile_from_top(top: torch.Tensor, m: int, quantile: float) -> torch.Tensor:
    """(units, K) values sorted descending (the ``K = quantile_k(m, q)`` largest of ``m``) -> (units,)
    ``numpy.percentile(x, 100 * (1 - q))`` with linear interpolation, in float64."""
    pos = (1.0 - quantile) * (m - 1)
    lo = int(math.floor(pos))
    frac = pos - lo
    k = m - lo
    top = top.double()
    v_lo = top[:, k - 1]
    if k >= 2 and frac > 0:
        return v_lo + frac * (top[:, k - 2] - v_lo)
    return v_lo


# ---------------------------------------------------------------------------------------------------------
# tallies
# ---------------------------------------------------------------------------------------------------------


def iou_from_tallies(both: np.ndarray, units_cat: np.ndarray, labels: np.ndarray, labelcat: np.ndarray) -> np.ndarray:
    """NetDissect-Lite's IoU: (units, labels)."""
    denom = units_cat @ labelcat.T + labels[None, :] - both + 1e-10
    return both / denom


def below(t: torch.Tensor) -> torch.Tensor:
    """float64 -> the largest float32 <= t. For a float32 ``x``: ``x > t  <=>  x > below(t)``, so float32
    maps are compared with a float64 threshold exactly as numpy compares them, without a float64 copy."""
    t32 = t.float()
    over = t32.double() > t
    return torch.where(over, torch.nextafter(t32, torch.full_like(t32, -math.inf)), t32)


@functools.lru_cache(maxsize=64)
def _resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float64: PIL's bilinear resize along one axis (``precompute_coeffs``: a triangle filter
    of support ``max(n_in / n_out, 1)``, each row normalised), which NetDissect-Lite's
    ``scipy.misc.imresize(mode='F')`` runs. Upsampling: torch's ``align_corners=False`` bilinear weights;
    downsampling: PIL's antialiasing filter."""
    scale = n_in / n_out
    fscale = max(scale, 1.0)
    w = np.zeros((n_out, n_in))
    for xx in range(n_out):
        center = (xx + 0.5) * scale
        lo, hi = max(int(center - fscale + 0.5), 0), min(int(center + fscale + 0.5), n_in)
        k = [max(0.0, 1.0 - abs((x - center + 0.5) / fscale)) for x in range(lo, hi)]
        total = sum(k)
        w[xx, lo:hi] = [v / total for v in k] if total else 0.0
    return w


def resize_maps(maps: torch.Tensor, sh: int, sw: int) -> torch.Tensor:
    """(m, h, w) -> (m, sh, sw) float32, as PIL resizes a float image: horizontal pass then vertical, each
    accumulated in float64 and stored as float32."""
    h, w = maps.shape[-2:]
    wy = torch.as_tensor(_resize_weights(h, sh), device=maps.device)
    wx = torch.as_tensor(_resize_weights(w, sw), device=maps.device)
    rows = torch.matmul(maps.double(), wx.T).float()
    return torch.matmul(wy, rows.double()).float()


def label_tally(seg: torch.Tensor, scalars: torch.Tensor, n_labels: int) -> torch.Tensor:
    """(L,) pixels of each label in a group of images (seg (B, D, sh, sw), scalars (B, L)), label 0 excluded."""
    px = torch.bincount(seg.reshape(-1), minlength=n_labels).double()
    px[0] = 0
    return px + scalars.sum(0).double() * (seg.shape[-2] * seg.shape[-1])


def _support(weights: torch.Tensor, hit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``weights`` (n_out, n_in) of a resize along one axis, ``hit`` (m, n_in) the source rows (or columns)
    holding a value above the pair's threshold -> (first, count) per pair: the smallest interval of output
    rows holding every output row that a hit source row has a weight in."""
    touched = (hit.double() @ (weights > 0).double().T) > 0  # (m, n_out)
    n_out = weights.shape[0]
    ar = torch.arange(n_out, device=weights.device)
    first = torch.where(touched, ar, n_out).amin(1)
    last = torch.where(touched, ar, -1).amax(1)
    return first, (last - first + 1).clamp_min(0)


def tally_pairs(both: torch.Tensor, units_cat: torch.Tensor, maps: torch.Tensor, images: torch.Tensor,
                 units: torch.Tensor, thr: torch.Tensor, seg: torch.Tensor, scalars: torch.Tensor,
                 labelcat: torch.Tensor, n_labels: int, group: int = 32) -> None:
    """Tally ``m`` (image, unit) pairs whose map exceeds the unit's threshold somewhere (the rest add 0).

    maps (m, h, w) the pairs' activation maps; images (m,) and units (m,) their image (a row of ``seg``)
    and unit; seg (B, D, sh, sw) int64 label planes; scalars (B, L) whole-image label counts; thr (U,)
    float32 from :func:`below`; ``both`` (U, L) and ``units_cat`` (U, G) float64 accumulate by
    ``index_add_``. Upsampling and thresholding are one batched op; the intersections one ``bincount`` over
    (pair, label) of the masked pixels' labels: no dense one-hot, no per-unit loop.

    Only each pair's *window* is upsampled: the output rows and columns that a source value above the
    threshold has a weight in. Elsewhere every upsampled value is a convex combination (non-negative weights
    summing to 1) of values at or below the threshold, so it cannot exceed it: the mask is the same, at a
    fraction of the pixels (a 13 x 13 map resized to 112 x 112 with one value above: a 17 x 17 window).
    """
    m = maps.shape[0]
    sh, sw = seg.shape[-2:]
    h, w = maps.shape[-2:]
    dev = maps.device
    t = thr[units]  # thr: float32_below(thresholds), see below
    hit = maps > t[:, None, None]
    wy = torch.as_tensor(_resize_weights(h, sh), device=dev)
    wx = torch.as_tensor(_resize_weights(w, sw), device=dev)
    y0, ny = _support(wy, hit.any(2))
    x0, nx = _support(wx, hit.any(1))
    if int(ny.max()) * int(nx.max()) > 0.6 * sh * sw and float((ny * nx).double().mean()) > 0.4 * sh * sw:
        up = resize_maps(maps, sh, sw)  # windows about as large as the image: the plain batched resize
        pair, yy, xx = (up > t[:, None, None]).nonzero(as_tuple=True)
    else:
        rows_all = torch.matmul(maps.double(), wx.T).float()  # (m, h, sw): the horizontal pass (h rows: cheap)
        order = torch.argsort(ny * nx)  # windows of like size together: less padding
        parts = []
        for g in order.split(group):
            hy, wx_ = int(ny[g].max()), int(nx[g].max())
            ry = y0[g, None] + torch.arange(hy, device=dev)  # (k, Hy) output rows of each window
            rx = x0[g, None] + torch.arange(wx_, device=dev)
            inside = (ry < (y0 + ny)[g, None])[:, :, None] & (rx < (x0 + nx)[g, None])[:, None, :]
            ry, rx = ry.clamp_max(sh - 1), rx.clamp_max(sw - 1)
            rows = torch.gather(rows_all[g], 2, rx[:, None, :].expand(len(g), h, wx_))  # (k, h, Wx)
            up = torch.matmul(wy[ry], rows.double()).float()  # (k, Hy, Wx): PIL's vertical pass, in the window
            p_, r, c = ((up > t[g, None, None]) & inside).nonzero(as_tuple=True)
            parts.append((g[p_], ry[p_, r], rx[p_, c]))
        pair, yy, xx = (torch.cat(z) for z in zip(*parts))
    n_act = torch.bincount(pair, minlength=m).double()  # (m,) pixels above the threshold
    ids = seg[images[pair], :, yy, xx] + (pair * n_labels)[:, None]  # (nnz, D): (pair, label) as one index
    bt = torch.bincount(ids.reshape(-1), minlength=m * n_labels).reshape(m, n_labels).double()
    bt[:, 0] = 0  # unlabelled
    sc = scalars[images].double()
    cat_hit = (bt + sc) @ labelcat  # (m, G): the mask meets a label of the category, or one labels the image
    both.index_add_(0, units, bt + n_act[:, None] * sc)
    units_cat.index_add_(0, units, n_act[:, None] * (cat_hit > 0))
