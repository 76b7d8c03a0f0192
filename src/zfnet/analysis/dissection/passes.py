"""Network dissection (Bau et al. 2017): which units of a layer detect which concepts of a probe set.

Two passes over a probe set in the Broden layout (:mod:`zfnet.data.broden`), for any ``nn.Module`` and
layers addressed by module path, all layers in the same forward:

1. **Thresholds.** Each unit's activation quantile ``T_k`` with ``P(a_k > T_k) = quantile`` (0.005: the
   top 0.5 %) over every position of every probe image, at the layer's own resolution. Streaming and
   *exact*: a running per-unit top-``K`` buffer with ``K = N*h*w - floor((1 - q)(N*h*w - 1))`` keeps the
   two order statistics that ``numpy.percentile(..., 100 * (1 - q))`` (linear interpolation) interpolates
   between, so the threshold equals numpy's exactly (error 0; NetDissect-Lite estimates the same quantile
   with a streaming sketch); memory ``units * K`` floats per layer (e.g. 256 x 53k for conv5 at 13 x 13
   over Broden's 63k images). The activations are kept for pass 2 when they fit in ``cache_bytes``.
2. **Tallies**, of the (image, unit) pairs whose map exceeds ``T_k`` somewhere only (NetDissect-Lite's
   ``feature_map.max() > threshold`` guard: no other pair can add anything). Each such map is resized to
   the segmentation size as NetDissect-Lite's ``scipy.misc.imresize(mode='F')`` (PIL's bilinear resize of
   a float image: separable weights, horizontal then vertical pass, float64 sums stored as float32; for
   upsampling the weights of ``align_corners=False``) and thresholded, ``M_k = S(a_k) > T_k``, all pairs
   of a batch in one op; the labels under ``M_k`` are counted by one ``bincount`` over (pair, label),
   summed per unit by ``index_add_`` (no dense one-hot, no per-unit loop):

   * ``both[k, c] = |M_k ∩ L_c|`` (a whole-image label ``c``: ``|M_k|``),
   * ``labels[c] = |L_c|`` (a whole-image label: ``sh * sw`` per image), label 0 (unlabelled) never counted,
   * ``units_cat[k, g] += |M_k|`` on the images where ``M_k`` meets a label of category ``g`` (or the image
     has a whole-image label of ``g``) (NetDissect-Lite's ``tally_units_cat``; where an image has no pixel
     category NetDissect-Lite reuses a stale value, here it is 0).

   ``IoU[k, c] = both / (units_cat[k, primary(c)] + labels[c] - both + 1e-10)``; each label counts in its
   primary category only. A unit's concept is its best-IoU label; it is a *detector* when that IoU exceeds
   ``iou_threshold`` (0.04, NetDissect's default). Ties go to the lower label number.

Agreement with the numpy port of NetDissect-Lite (PIL resize; ``tests/test_dissection.py``): thresholds,
IoUs and labels equal on conv1..conv5 of the demo's ZFNet (``benchmarks/bench_dissection.py``). The
upsampling matches PIL's to the last float32 bit except ~1 pixel in 10^4 (one ulp: PIL's sums vs a
matmul's), which matters only where such a pixel lies exactly at a threshold; downsampling (a map larger
than the segmentation) differs by up to 2 ulps in about half the pixels. (With torch's float32 bilinear
``interpolate`` instead, a plateau of max-pooled values equal to a unit's threshold came out one ulp above
it: 5.5 % of conv5's labels differed.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from zfnet.analysis.dissection.tally import (below, iou_from_tallies, label_tally, percentile_from_top, quantile_k,
                                             resize_maps, tally_pairs)
from zfnet.analysis.hooks import calls, dtype_device, eval_mode, path_of, run
from zfnet.data.broden import Broden

__all__ = ["Dissection", "dissect", "probe_loader", "quantile_k", "percentile_from_top", "iou_from_tallies",
           "resize_maps"]


class _Prefetch:
    """``fn(item)`` for each item, computed ``ahead`` items in advance on one background thread (PNG
    decoding releases the GIL: the probe's masks load while the model runs)."""

    def __init__(self, fn: Callable, items: Sequence, ahead: int = 2):
        from concurrent.futures import ThreadPoolExecutor

        self.fn, self.items, self.ahead = fn, list(items), ahead
        self.pool = ThreadPoolExecutor(1)
        self.futures = [self.pool.submit(fn, it) for it in self.items[:ahead]]

    def __iter__(self):
        try:
            for k in range(len(self.items)):
                if k + self.ahead < len(self.items):
                    self.futures.append(self.pool.submit(self.fn, self.items[k + self.ahead]))
                yield self.futures[k].result()
                self.futures[k] = None
        finally:
            self.close()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------------------
# probe input
# ---------------------------------------------------------------------------------------------------------


def probe_loader(probe: Broden, size: int, mean=None, std=None, scale: float = 1.0) -> Callable[[Sequence[int]], torch.Tensor]:
    """``images(indices) -> (B, 3, size, size)``: the probe images resized (whole, no crop) to the model's
    input, ``(pixels * scale - mean) / std``; ``mean`` as :func:`zfnet.analysis.inputs.load_images` (a
    (3, s, s) mean image is averaged per channel, since the probe image is not cropped)."""
    from PIL import Image

    if isinstance(mean, (str, bytes)) or hasattr(mean, "__fspath__"):
        mean = np.load(mean)
    if mean is not None:
        m = np.asarray(mean, np.float32)
        if m.ndim == 3:
            m = m.mean(axis=(1, 2)) if m.shape[0] == 3 else m.mean(axis=(0, 1))
        mean_t = torch.as_tensor(m, dtype=torch.float32).reshape(-1, 1, 1)
    else:
        mean_t = torch.zeros(1, 1, 1)
    std_t = None if std is None else torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)

    def images(idx: Sequence[int]) -> torch.Tensor:
        out = []
        for i in idx:
            with Image.open(probe.image_path(i)) as im:
                im = im.convert("RGB").resize((size, size), Image.BILINEAR)
                out.append(torch.from_numpy(np.asarray(im, np.float32).copy()).permute(2, 0, 1))
        x = torch.stack(out) * float(scale) - mean_t
        return x / std_t if std_t is not None else x

    return images


def _segs(probe: Broden, idx: Sequence[int], n_labels: int):
    """Group ``idx`` by segmentation size: [(positions in idx, seg (B, D, sh, sw), scalars (B, L))]."""
    groups: dict[tuple[int, int], list] = {}
    for j, i in enumerate(idx):
        planes, scal = probe.concept_planes(i)
        groups.setdefault(planes.shape[1:], []).append((j, planes, scal))
    out = []
    for (sh, sw), items in groups.items():
        d = max(1, max(pl.shape[0] for _, pl, _ in items))
        seg = np.zeros((len(items), d, sh, sw), np.int64)
        sc = np.zeros((len(items), n_labels), np.float32)
        for r, (_, pl, s) in enumerate(items):
            seg[r, : pl.shape[0]] = pl
            for v in s:
                sc[r, v] += 1
        out.append(([j for j, _, _ in items], torch.from_numpy(seg), torch.from_numpy(sc)))
    return out


# ---------------------------------------------------------------------------------------------------------
# dissection
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Dissection:
    """Result of :func:`dissect`.

    ``units``: one row per (layer, unit): threshold, best ``label`` / ``category`` / ``iou``, ``detector``,
    and per category its best label and IoU (``<category>_label``, ``<category>_iou``).
    ``iou[layer]``: (units, labels) IoU; ``image_max[layer]``: (images, units) per-image maximum activation
    (top images of a unit); ``thresholds[layer]``: (units,).
    """

    units: pd.DataFrame
    iou: dict[str, np.ndarray]
    image_max: dict[str, np.ndarray]
    thresholds: dict[str, np.ndarray]
    label_names: list[str]
    categories: list[str]
    primary: np.ndarray
    iou_threshold: float

    def summary(self) -> pd.DataFrame:
        """Per layer: units, detectors, unique detected concepts in total and per category."""
        rows = []
        for layer, g in self.units.groupby("layer", sort=False):
            det = g[g["detector"]]
            row = {"layer": layer, "units": len(g), "detectors": len(det),
                   "unique_concepts": det["label"].nunique()}
            for cat in self.categories:
                row[f"unique_{cat}"] = det.loc[det["category"] == cat, "label"].nunique()
            rows.append(row)
        return pd.DataFrame(rows)

    def top_images(self, layer: str, unit: int, k: int = 4) -> np.ndarray:
        m = self.image_max[layer][:, unit]
        return np.argsort(-m, kind="stable")[:k]


@torch.no_grad()
def dissect(model: nn.Module, layers: Sequence[str], probe: Broden,
            images: Callable[[Sequence[int]], torch.Tensor], *, quantile: float = 0.005,
            iou_threshold: float = 0.04, batch_size: int = 16, device: str | torch.device | None = None,
            progress: bool = False, cache_bytes: int = 2**30, pair_chunk: int = 512) -> Dissection:
    """Dissect ``layers`` of ``model`` over ``probe``; ``images(indices)`` gives the model's input.

    Pass 1 keeps the activations (on ``device``) when all layers' maps of all images fit in ``cache_bytes``;
    otherwise pass 2 runs the model again, on the batches where some unit exceeds its threshold only.
    ``pair_chunk`` (image, unit) pairs are upsampled at a time.
    """
    if len(probe) == 0:
        raise ValueError("dissect: the probe set has no images")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"dissect: quantile must lie in (0, 1), got {quantile!r}")
    if batch_size < 1 or pair_chunk < 1:
        raise ValueError(f"dissect: batch_size and pair_chunk must be >= 1, got {batch_size}, {pair_chunk}")
    layers = list(layers)
    paths = [path_of(model, l) for l in layers]
    _, dev = dtype_device(model)
    dev = torch.device(device) if device is not None else dev
    n = len(probe)
    n_labels = probe.n_labels
    labelcat = torch.as_tensor(probe.label_category_matrix(), dtype=torch.float64, device=dev)
    batches = [list(range(s, min(n, s + batch_size))) for s in range(0, n, batch_size)]
    from zfnet.progress import bar

    def forward(idx):
        x = images(idx).to(dev)
        call = calls(model, x, paths)
        outs, _ = run(model, x, paths, call=call, reduce=lambda _p, o: o.detach())
        return {p: (o[:, :, None, None] if o.dim() == 2 else o).float() for p, o in outs.items()}  # fc: 1x1

    def load_segs(idx):
        return [(pos, seg.to(dev), sc.to(dev)) for pos, seg, sc in _segs(probe, idx, n_labels)]

    orig_device = next(iter(model.parameters()), torch.empty(0)).device
    model.to(dev)
    segs = _Prefetch(load_segs, batches)  # the masks load during pass 1
    try:
        with eval_mode(model):
            # pass 1: exact top-K per unit, per-image maxima, the activations kept when they fit
            top: dict[str, torch.Tensor] = {}
            kk: dict[str, int] = {}
            mm: dict[str, int] = {}
            image_max: dict[str, torch.Tensor] = {}
            cache: dict[str, list[torch.Tensor]] | None = {p: [] for p in paths}
            for idx in bar(batches, desc="dissect: quantiles", unit="batch", disable=not progress):
                outs = forward(idx)
                for p in paths:
                    a = outs[p]
                    b, u, h, w = a.shape
                    if p not in kk:
                        mm[p] = n * h * w
                        kk[p] = quantile_k(mm[p], quantile)
                        top[p] = torch.empty(u, 0, device=dev)
                        image_max[p] = torch.empty(n, u, device=dev)
                    flat = a.permute(1, 0, 2, 3).reshape(u, -1)
                    both = torch.cat([top[p], flat], 1)
                    top[p] = torch.topk(both, min(kk[p], both.shape[1]), dim=1, sorted=False).values
                    image_max[p][idx[0] : idx[-1] + 1] = a.amax((2, 3))
                if cache is not None and sum(o[0].numel() for o in outs.values()) * 4 * n > cache_bytes:
                    cache = None
                if cache is not None:
                    for p in paths:
                        cache[p].append(outs[p])
            thr = {p: percentile_from_top(torch.sort(top[p], dim=1, descending=True).values, mm[p], quantile)
                   for p in paths}
            thr32 = {p: below(thr[p]) for p in paths}
            del top
            # pass 2: tallies, only of the (image, unit) pairs whose map exceeds the threshold somewhere
            g = labelcat.shape[1]
            z = dict(device=dev, dtype=torch.float64)
            tallies = {p: (torch.zeros(image_max[p].shape[1], n_labels, **z),
                           torch.zeros(image_max[p].shape[1], g, **z)) for p in paths}
            label_px = torch.zeros(n_labels, **z)
            for bi, (idx, groups) in enumerate(bar(zip(batches, segs), total=len(batches), unit="batch",
                                                   desc="dissect: tallies", disable=not progress)):
                for _, seg, sc in groups:
                    label_px += label_tally(seg, sc, n_labels)
                active = {p: image_max[p][idx[0] : idx[-1] + 1] > thr32[p][None, :] for p in paths}
                if not any(bool(a.any()) for a in active.values()):
                    continue
                outs = {p: cache[p][bi] for p in paths} if cache is not None else forward(idx)
                for p in paths:
                    for pos, seg, sc in groups:
                        pos_t = torch.as_tensor(pos, device=dev)
                        img, unit = active[p][pos_t].nonzero(as_tuple=True)
                        for s in range(0, len(img), pair_chunk):
                            i_c, u_c = img[s : s + pair_chunk], unit[s : s + pair_chunk]
                            tally_pairs(*tallies[p], outs[p][pos_t[i_c], u_c], i_c, u_c, thr32[p], seg, sc,
                                         labelcat, n_labels)
                del outs
    finally:
        segs.close()
        model.to(orig_device)
    labels = label_px.cpu().numpy()
    iou = {str(l): iou_from_tallies(tallies[p][0].cpu().numpy(), tallies[p][1].cpu().numpy(), labels,
                                    probe.label_category_matrix()) for l, p in zip(layers, paths)}
    return _result(probe, iou, {str(l): image_max[p].cpu().numpy() for l, p in zip(layers, paths)},
                   {str(l): thr[p].cpu().numpy() for l, p in zip(layers, paths)}, iou_threshold)


def _result(probe: Broden, ious: dict[str, np.ndarray], image_max: dict, thresholds: dict,
            iou_threshold: float) -> Dissection:
    """The per-unit table (vectorised over units) and the :class:`Dissection`."""
    valid = probe.primary >= 0
    names = np.array(probe.label_names, dtype=object)
    frames = []
    for layer, iou in ious.items():
        iou[:, ~valid] = 0.0  # label 0 and unused numbers
        best = iou.argmax(1)  # ties: the lower label number
        val = iou[np.arange(len(best)), best]
        hit = val > 0
        cols = {"layer": layer, "unit": np.arange(len(best)), "threshold": thresholds[layer].astype(float),
                "label": np.where(hit, names[best], ""),
                "category": np.where(hit, np.array(probe.categories + [""], dtype=object)[probe.primary[best]], ""),
                "iou": val.astype(float), "detector": val > iou_threshold}
        for ci, cat in enumerate(probe.categories):
            sel = np.where((probe.primary == ci)[None, :], iou, -1.0)
            bl = sel.argmax(1)
            bv = sel[np.arange(len(bl)), bl]
            cols[f"{cat}_label"] = np.where(bv > 0, names[bl], "")
            cols[f"{cat}_iou"] = np.maximum(bv, 0.0).astype(float)
        frames.append(pd.DataFrame(cols))
    return Dissection(units=pd.concat(frames, ignore_index=True), iou=ious, image_max=image_max,
                      thresholds=thresholds, label_names=list(probe.label_names),
                      categories=list(probe.categories), primary=probe.primary.copy(),
                      iou_threshold=float(iou_threshold))
