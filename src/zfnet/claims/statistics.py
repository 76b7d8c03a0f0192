"""The statistics behind the claims: pure functions of tensors, arrays and DataFrames (no files, no models).

Each one computes a number the paper states a direction or value for; :mod:`zfnet.claims.verdicts` puts it
beside the paper's and decides. Every function is checked on constructed inputs whose answer is known
(tests/test_claims.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

__all__ = [
    "convergence_epochs", "relative_changes", "normalized_auc", "linearity_r2", "sweep_curve", "relative_drop",
    "filter_rms", "dominance_ratio", "dead_fraction", "band_energy", "poisson_binomial_sf", "relative_gap",
    "mean_of", "std_of", "spearman", "within_vs_across", "white_noise_band_share", "band_energy_vs_noise",
    "fit_r2", "shape_r2", "permutation_inside", "error_difference_se", "bootstrap_se", "grouping_gap_se",
    "minimum_centre", "inside",
]


# ------------------------------------------------------------------------------------ claim 1: evolution
def relative_changes(weights: Mapping[int, Mapping[str, torch.Tensor]]) -> pd.DataFrame:
    """Per layer, the relative weight change between consecutive saved epochs, per epoch of the gap:
    ``‖W_e − W_prev‖ / ‖W_prev‖ / (e − prev)``. ``weights``: ``{epoch: {layer: tensor}}``.

    Returns one row per (layer, epoch e) with ``prev``, ``change``. A layer missing at an epoch is skipped."""
    epochs = sorted(weights)
    rows = []
    for prev, e in zip(epochs, epochs[1:]):
        for layer, w in weights[e].items():
            if layer not in weights[prev]:
                continue
            w0 = weights[prev][layer].double()
            norm = float(w0.norm())
            change = float((w.double() - w0).norm()) / max(norm, 1e-12) / (e - prev)
            rows.append({"layer": layer, "prev": prev, "epoch": e, "change": change})
    return pd.DataFrame(rows, columns=["layer", "prev", "epoch", "change"])


def convergence_epochs(changes: pd.DataFrame, fraction: float, relative: bool = True) -> dict[str, int | None]:
    """Per layer, the first saved epoch after which every later change stays below ``fraction`` (``relative``:
    of the layer's own change over the first saved interval, so that layers of different sizes, whose
    relative changes differ in scale, compare); ``None`` when even the last interval changes by more (the
    layer has not settled within the run). Without ``relative`` the first saved epoch counts when all
    changes are below ``fraction``."""
    out: dict[str, int | None] = {}
    for layer, g in changes.groupby("layer", sort=False):
        g = g.sort_values("epoch")
        ch = g["change"].to_numpy(float)
        if relative:
            ch = ch / ch[0] if ch[0] > 0 else np.zeros_like(ch)
        settled = None
        for prev, change in zip(reversed(g["prev"].tolist()), reversed(ch.tolist())):
            if change >= fraction:
                break
            settled = int(prev)  # every interval from `prev` on is below the fraction
        out[str(layer)] = settled
    return out


# ------------------------------------------------------------------------------------ noise of a control's difference
def bootstrap_se(statistic: Callable[[np.ndarray], float], n: int, draws: int, seed: int = 0) -> float:
    """Bootstrap standard error of ``statistic(idx)`` over ``n`` units (images, maps): the standard deviation
    (ddof 1) of the statistic over ``draws`` resamples of the unit indices with replacement. A statistic that
    is NaN on a resample (e.g. too few distinct units) is left out; NaN when fewer than 2 resamples remain.

    The margins by which a finding must beat its untrained control are ``z`` such errors of the trained-minus-
    control difference (paired: the same resampled indices for both, where both see the same units)."""
    if n < 2 or draws < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    vals = [statistic(rng.integers(0, n, n)) for _ in range(int(draws))]
    vals = np.array([v for v in vals if math.isfinite(v)], float)
    return float(vals.std(ddof=1)) if len(vals) >= 2 else float("nan")


# ------------------------------------------------------------------------------------ claim 2: invariance
def sweep_curve(frame: pd.DataFrame, column: str, identity: float) -> tuple[np.ndarray, np.ndarray]:
    """(|amount − identity|, mean of ``column``) sorted by the distance from the identity, the two sides of a
    symmetric sweep (translation) averaged."""
    x = np.round(np.abs(frame["amount"].to_numpy(float) - identity), 9)
    d = frame[column].to_numpy(float)
    keep = ~np.isnan(d)  # a missing value is left out of its amount's mean (as pandas' mean does)
    ux, inv = np.unique(x[keep], return_inverse=True)  # numpy, not a groupby: the bootstraps call it often
    return ux, np.bincount(inv, weights=d[keep], minlength=len(ux)) / np.bincount(inv, minlength=len(ux))


def normalized_auc(x: np.ndarray, d: np.ndarray) -> float:
    """The area under ``d / max(d)`` over ``x / max(x)`` (trapezoids): 0.5 for a straight line through the
    origin, towards 1 for a curve that jumps at the first step and stays (each layer by its own scale); 0 for
    a layer that does not change at all (exactly invariant). NaN with fewer than 2 amounts."""
    x, d = np.asarray(x, float), np.asarray(d, float)
    if len(x) < 2 or x.max() <= 0:
        return float("nan")
    if d.max() <= 0:
        return 0.0
    xn, dn = x / x.max(), d / d.max()
    return float(np.sum((xn[1:] - xn[:-1]) * (dn[1:] + dn[:-1]) / 2))


def linearity_r2(x: np.ndarray, d: np.ndarray) -> float:
    """R² of the least-squares line of ``d`` on ``x`` (1: exactly linear)."""
    x, d = np.asarray(x, float), np.asarray(d, float)
    if len(x) < 3:
        return float("nan")
    ss = float(((d - d.mean()) ** 2).sum())
    if ss == 0:
        return float("nan")
    slope, icept = np.polyfit(x, d, 1)
    return 1.0 - float(((d - (slope * x + icept)) ** 2).sum()) / ss


def fit_r2(x: np.ndarray, d: np.ndarray, f) -> float:
    """R² of the least-squares fit ``d ≈ a·f(x) + b`` (two parameters, like the line)."""
    x = np.asarray(x, float)
    return linearity_r2(f(x), d)


SHAPES = {"linear": lambda x: x, "sqrt": np.sqrt, "square": np.square}


def shape_r2(x: np.ndarray, d: np.ndarray) -> dict[str, float]:
    """R² of ``d ≈ a·f(|x|) + b`` for f = x, √x, x²: a curve is "linear" only when the line fits it better
    than the concave and convex alternatives, which over Fig. 5's amounts reach R² 0.91 and 0.92 against a
    line (so a bare R² threshold of 0.9 cannot tell them apart)."""
    return {k: fit_r2(np.abs(np.asarray(x, float)), d, f) for k, f in SHAPES.items()}


def relative_drop(p: np.ndarray, p0: float) -> float:
    """``(p0 − min p) / p0``: how far the true-class probability falls below its untransformed value."""
    p = np.asarray(p, float)
    return float((p0 - p.min()) / p0) if p0 > 0 else float("nan")


# ------------------------------------------------------------------------------------ claims 3-4: filters
def filter_rms(weight: torch.Tensor) -> torch.Tensor:
    """Per filter (first dim), the root mean square of its weights."""
    w = weight.detach().double().reshape(weight.shape[0], -1)
    return w.pow(2).mean(1).sqrt()


def dominance_ratio(rms: torch.Tensor) -> float:
    """Largest filter RMS over the median: a few dominating filters make it large."""
    return float(rms.max() / rms.median().clamp_min(1e-12))


def dead_fraction(rms: torch.Tensor, fraction: float) -> float:
    """Fraction of filters whose RMS is below ``fraction`` x the layer's mean filter RMS ("near zero")."""
    return float((rms < fraction * rms.mean()).double().mean())


def band_energy(weight: torch.Tensor, bands: Sequence[float] = (1 / 3, 2 / 3)) -> dict[str, float]:
    """Spectral energy of layer-1 filters in low / mid / high radial-frequency bands, mean over filters.

    Each filter's per-channel mean (DC) is removed; the power spectrum (|FFT|², summed over input channels)
    is binned by radial frequency r = |f| / |f|max ∈ [0, 1] (``bands``: the two cut points). Filters of any
    size compare (11x11 vs 7x7). Filters without energy are left out."""
    w = weight.detach().double()
    w = w - w.mean(dim=(2, 3), keepdim=True)
    power = torch.fft.fft2(w).abs().pow(2).sum(1)  # (F, H, W)
    fy = torch.fft.fftfreq(w.shape[2], dtype=torch.double)[:, None]
    fx = torch.fft.fftfreq(w.shape[3], dtype=torch.double)[None, :]
    r = (fy ** 2 + fx ** 2).sqrt()
    r = r / r.max()
    lo, hi = bands
    masks = {"low": r < lo, "mid": (r >= lo) & (r < hi), "high": r >= hi}
    total = power.sum((1, 2))
    keep = total > 1e-20
    if not bool(keep.any()):
        return {k: float("nan") for k in masks}
    return {k: float((power[keep][:, m].sum(1) / total[keep]).mean()) for k, m in masks.items()}


def white_noise_band_share(shape: Sequence[int], bands: Sequence[float] = (1 / 3, 2 / 3)) -> dict[str, float]:
    """Each band's share of the expected spectral energy of white-noise filters on an ``shape`` (H, W) grid,
    as :func:`band_energy` bins it: i.i.d. weights have equal expected power at every frequency, and removing
    the DC leaves the others unchanged, so the share is the band's count of non-DC frequencies over all of them
    (exact in expectation for odd grids, where no frequency is its own conjugate besides DC). It depends on
    the grid: the mid band (0.333-0.667) holds 0.417 of a 7x7 grid's frequencies and 0.400 of an 11x11's."""
    h, w = int(shape[0]), int(shape[1])
    fy = torch.fft.fftfreq(h, dtype=torch.double)[:, None]
    fx = torch.fft.fftfreq(w, dtype=torch.double)[None, :]
    r = (fy ** 2 + fx ** 2).sqrt()
    r = r / r.max()
    lo, hi = bands
    nonzero = r > 0
    masks = {"low": (r < lo) & nonzero, "mid": (r >= lo) & (r < hi), "high": r >= hi}
    n = float(nonzero.sum())
    return {k: float(m.sum()) / n for k, m in masks.items()}


def band_energy_vs_noise(weight: torch.Tensor, bands: Sequence[float] = (1 / 3, 2 / 3)) -> dict[str, float]:
    """:func:`band_energy` over :func:`white_noise_band_share` of the filters' grid: 1 for white-noise filters
    of any size, above 1 where the filters put more energy in the band than noise does. Filters of different
    sizes (7x7, 11x11) compare on this, not on the raw share."""
    raw, noise = band_energy(weight, bands), white_noise_band_share(weight.shape[-2:], bands)
    return {k: raw[k] / noise[k] if noise[k] > 0 else float("nan") for k in raw}


# ------------------------------------------------------------------------------------ claim 5: occlusion
def poisson_binomial_sf(chances: Sequence[float], observed: int) -> float:
    """P(count >= observed) for independent trials with success chances ``chances`` (exact, by convolution)."""
    dist = np.ones(1)
    for c in chances:
        dist = np.convolve(dist, [1 - float(c), float(c)])
    return float(min(1.0, dist[observed:].sum())) if observed <= len(chances) else 0.0


def inside(point: Sequence[float], boxes) -> bool:
    """Whether ``point`` (x, y) lies in any of ``boxes`` ((x0, y0, x1, y1), edges included)."""
    x, y = float(point[0]), float(point[1])
    return any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in boxes)


def permutation_inside(points: Sequence[Sequence[float]], boxes: Sequence[Sequence[Sequence[float]]],
                       draws: int = 10000, seed: int = 0) -> tuple[int, float, float]:
    """How many images' probability minimum (``points``: (x, y) per image) lies in their own ``boxes``
    ((x0, y0, x1, y1) lists per image), against a null that keeps where minima and boxes fall (both centre
    biased) and breaks only their pairing: the boxes are shuffled across the images ``draws`` times.

    Returns (observed count, expected count under the null, one-sided p = (1 + #{null >= observed}) / (1 + draws))."""
    n = len(points)
    hit = np.array([[inside(points[i], boxes[j]) for j in range(n)] for i in range(n)], bool)  # point i in box j
    observed = int(hit.diagonal().sum())
    rng = np.random.default_rng(seed)
    null = np.array([hit[np.arange(n), rng.permutation(n)].sum() for _ in range(int(draws))])
    return observed, float(hit.mean() * n), float((1 + (null >= observed).sum()) / (1 + len(null)))


def minimum_centre(prob: torch.Tensor, ys: Sequence[float], xs: Sequence[float], size: float) -> tuple[float, float]:
    """(x, y) centre of the occluding square where the probability map ``prob`` (n_y, n_x; squares with top /
    left corners ``ys`` / ``xs``, side ``size``) is lowest (the first such position in row-major order)."""
    iy, ix = np.unravel_index(int(torch.as_tensor(prob).argmin()), tuple(prob.shape))
    return float(xs[ix]) + size / 2, float(ys[iy]) + size / 2


# ------------------------------------------------------------------------------------ claim 6: Table 1
def relative_gap(random: float, parts: Sequence[float]) -> float:
    """``(Δ_random − mean Δ_parts) / Δ_random``: how much more consistent the parts are than random regions,
    relative to the layer's own scale."""
    return float((random - float(np.mean(parts))) / random) if random else float("nan")


# ------------------------------------------------------------------------------------ claims 7-8: tables
def error_difference_se(e1: float, e2: float, n: int) -> float:
    """Standard error (points) of the difference of two error rates (%) each measured on ``n`` images
    (binomial, independent): the noise of one run's comparison of two models."""
    p1, p2 = e1 / 100, e2 / 100
    return 100 * math.sqrt(max(p1 * (1 - p1), 0) / n + max(p2 * (1 - p2), 0) / n)


_NUMBER = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)")


def mean_of(cell) -> float:
    """The leading number of a table cell (``"62.5 ± 12.5"`` -> 62.5); NaN for ``–``, empty or missing."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return float("nan")
    if isinstance(cell, (int, float)):
        return float(cell)
    m = _NUMBER.match(str(cell))
    return float(m.group(1)) if m else float("nan")


def std_of(cell) -> float:
    """The spread after ``±`` in a table cell (``"62.5 ± 12.5"`` -> 12.5); 0 for a plain number, NaN for ``–``."""
    mean = mean_of(cell)
    if math.isnan(mean):
        return float("nan")
    m = re.search(r"±\s*([-+]?\d+(?:\.\d+)?)", str(cell))
    return float(m.group(1)) if m else 0.0


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN with fewer than 3 pairs or a constant side."""
    s = pd.DataFrame({"x": x, "y": y}).dropna()
    if len(s) < 3 or s.x.nunique() < 2 or s.y.nunique() < 2:
        return float("nan")
    return float(s.x.rank().corr(s.y.rank()))


# ------------------------------------------------------------------------------------ claim 9: top-9
def _mean_pairwise_cos(v: torch.Tensor) -> float:
    v = torch.nn.functional.normalize(v.reshape(v.shape[0], -1).double(), dim=1)
    s = v @ v.t()
    n = v.shape[0]
    return float((s.sum() - s.diagonal().sum()) / (n * (n - 1)))


def within_vs_across(groups: torch.Tensor, pool: torch.Tensor, draws: int = 50, seed: int = 0) -> tuple[float, float]:
    """Mean pairwise cosine similarity within each group (``groups``: (M, k, ...), e.g. the top-9 projections
    of M maps) and, as chance, within ``draws`` random sets of k items of ``pool`` (P, ...) (e.g. the top
    projection of every map of the layer, each set from distinct maps). Returns (within, chance)."""
    m, k = groups.shape[:2]
    within = float(np.mean([_mean_pairwise_cos(groups[i]) for i in range(m)]))
    g = torch.Generator().manual_seed(seed)
    kk = min(k, pool.shape[0])
    if kk < 2:
        return within, float("nan")
    chance = float(np.mean([_mean_pairwise_cos(pool[torch.randperm(pool.shape[0], generator=g)[:kk]])
                            for _ in range(draws)]))
    return within, chance


def grouping_gap_se(groups: torch.Tensor, pool: torch.Tensor, draws: int = 1000, seed: int = 0) -> float:
    """Bootstrap standard error over maps of ``within − chance`` (``within_vs_across``'s two numbers): a draw
    resamples the M maps of ``groups`` (each map's mean pairwise cosine) and, independently, the P maps of
    ``pool`` (chance: the mean cosine over the drawn pairs of distinct maps, what random sets of distinct
    maps average to). NaN with fewer than 2 maps on either side."""
    m, p = groups.shape[0], pool.shape[0]
    if m < 2 or p < 2:
        return float("nan")
    per_map = np.array([_mean_pairwise_cos(groups[i]) for i in range(m)])
    v = torch.nn.functional.normalize(pool.reshape(p, -1).double(), dim=1)
    s = (v @ v.t()).numpy()
    rng = np.random.default_rng(seed)

    def one() -> float:
        a, b = rng.integers(0, m, m), rng.integers(0, p, p)
        distinct = b[:, None] != b[None, :]
        return float(per_map[a].mean() - s[np.ix_(b, b)][distinct].mean()) if distinct.any() else float("nan")

    vals = np.array([one() for _ in range(int(draws))])
    vals = vals[np.isfinite(vals)]
    return float(vals.std(ddof=1)) if len(vals) >= 2 else float("nan")
