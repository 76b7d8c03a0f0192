"""Network dissection (Bau et al. 2017): which units of a layer detect which concepts of a probe set.

Two passes over a probe set in the Broden layout (:mod:`zfnet.data.broden`), for any ``nn.Module`` and
layers addressed by module path, all layers in the same forward:

1. **Thresholds.** Each unit's activation quantile ``T_k`` with ``P(a_k > T_k) = quantile`` (0.005: the
   top 0.5 %) over every position of every probe image, at the layer's own resolution. Streaming and
   *exact*: a running per-unit top-``K`` buffer with ``K = N*h*w - floor((1 - q)(N*h*w - 1))`` keeps the
   two order statistics that ``numpy.percentile(..., 100 * (1 - q))`` (linear interpolation, what
   NetDissect-Lite uses) interpolates between, so the threshold equals NetDissect's exactly (error 0);
   memory ``units * K`` floats per layer (e.g. 256 x 53k for conv5 at 13 x 13 over Broden's 63k images).
2. **Tallies.** Each activation map upsampled bilinearly to the segmentation size (``align_corners=False``,
   as PIL's / ``scipy.misc.imresize(mode='F')``'s bilinear resize in NetDissect-Lite), thresholded,
   ``M_k = S(a_k) > T_k``; per unit ``k`` and label ``c``, summed over images (NetDissect-Lite's
   ``tally_job``, batched: one ``bmm`` of the (units x pixels) masks with the (pixels x labels) one-hot
   label counts, no per-unit loop):

   * ``both[k, c] = |M_k ∩ L_c|`` (a whole-image label ``c``: ``|M_k|``),
   * ``labels[c] = |L_c|`` (a whole-image label: ``sh * sw`` per image), label 0 (unlabelled) never counted,
   * ``units_cat[k, g] += |M_k|`` on the images where ``M_k`` meets a label of category ``g`` (or the image
     has a whole-image label of ``g``) (NetDissect-Lite's ``tally_units_cat``; where an image has no pixel
     category NetDissect-Lite reuses a stale value, here it is 0).

   ``IoU[k, c] = both / (units_cat[k, primary(c)] + labels[c] - both + 1e-10)``; each label counts in its
   primary category only. A unit's concept is its best-IoU label; it is a *detector* when that IoU exceeds
   ``iou_threshold`` (0.04, NetDissect's default). Ties go to the lower label number.

Runs on ``device`` (the model's by default; a GPU when one is given). Returns DataFrames; writes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from zfnet.analysis._hooks import calls, dtype_device, eval_mode, path_of, run
from zfnet.data.broden import Broden

__all__ = ["Dissection", "dissect", "probe_loader", "quantile_k", "percentile_from_top", "iou_from_tallies"]


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


@dataclass
class _Tally:
    both: torch.Tensor  # (U, L) float64
    units: torch.Tensor  # (U,)
    units_cat: torch.Tensor  # (U, G)
    labels: torch.Tensor  # (L,)


def _tally_batch(t: _Tally, acts: torch.Tensor, thr: torch.Tensor, seg: torch.Tensor, scalars: torch.Tensor,
                 labelcat: torch.Tensor, n_labels: int) -> None:
    """One batch of images with the same segmentation size.

    acts (B, U, h, w); thr (U,); seg (B, D, sh, sw) int64 label ids (0 = none, D >= 1, padded with 0);
    scalars (B, L) counts of whole-image labels; labelcat (L, G) float32.
    """
    b, u = acts.shape[:2]
    sh, sw = seg.shape[-2:]
    p = sh * sw
    up = F.interpolate(acts.float(), size=(sh, sw), mode="bilinear", align_corners=False)
    mask = (up > thr.float()[None, :, None, None]).reshape(b, u, p).float()  # (B, U, P)
    counts = torch.zeros(b, p, n_labels, device=acts.device)
    ids = seg.reshape(b, seg.shape[1], p).transpose(1, 2)  # (B, P, D)
    counts.scatter_add_(2, ids, torch.ones_like(ids, dtype=counts.dtype))
    counts[:, :, 0] = 0  # unlabelled
    n_act = mask.sum(2)  # (B, U)
    both_px = torch.bmm(mask, counts)  # (B, U, L): exact integers in float32 (< 2^24 per image)
    both = both_px + n_act[:, :, None] * scalars[:, None, :]
    cat_hit = both_px @ labelcat + (scalars @ labelcat)[:, None, :]  # (B, U, G)
    t.both += both.sum(0).double()
    t.units += n_act.sum(0).double()
    t.units_cat += (n_act[:, :, None] * (cat_hit > 0)).sum(0).double()
    t.labels += counts.sum((0, 1)).double() + scalars.sum(0).double() * p


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
            progress: bool = False) -> Dissection:
    """Dissect ``layers`` of ``model`` over ``probe``; ``images(indices)`` gives the model's input."""
    if len(probe) == 0:
        raise ValueError("dissect: the probe set has no images")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"dissect: quantile must lie in (0, 1), got {quantile!r}")
    layers = list(layers)
    paths = [path_of(model, l) for l in layers]
    _, dev = dtype_device(model)
    dev = torch.device(device) if device is not None else dev
    n = len(probe)
    n_labels = probe.n_labels
    labelcat = torch.as_tensor(probe.label_category_matrix(), dtype=torch.float32, device=dev)
    batches = [list(range(s, min(n, s + batch_size))) for s in range(0, n, batch_size)]
    from tqdm.auto import tqdm

    def forward(idx):
        x = images(idx).to(dev)
        call = calls(model, x, paths)
        outs, _ = run(model, x, paths, call=call, reduce=lambda _p, o: o.detach())
        for p in paths:
            if outs[p].dim() == 2:  # fc layer: a 1x1 map
                outs[p] = outs[p][:, :, None, None]
        return outs

    orig_device = next(iter(model.parameters()), torch.empty(0)).device
    model.to(dev)
    try:
        with eval_mode(model):
            # pass 1: exact top-K per unit, per-image maxima
            top: dict[str, torch.Tensor] = {}
            kk: dict[str, int] = {}
            mm: dict[str, int] = {}
            image_max = {}
            for idx in tqdm(batches, desc="dissect: quantiles", disable=not progress):
                outs = forward(idx)
                for p in paths:
                    a = outs[p].float()
                    b, u, h, w = a.shape
                    if p not in kk:
                        mm[p] = n * h * w
                        kk[p] = quantile_k(mm[p], quantile)
                        top[p] = torch.empty(u, 0, device=dev)
                        image_max[p] = torch.empty(n, u)
                    flat = a.permute(1, 0, 2, 3).reshape(u, -1)
                    both = torch.cat([top[p], flat], 1)
                    top[p] = torch.topk(both, min(kk[p], both.shape[1]), dim=1, sorted=False).values
                    image_max[p][idx[0] : idx[-1] + 1] = a.amax((2, 3)).cpu()
            thr = {}
            for p in paths:
                srt = torch.sort(top[p], dim=1, descending=True).values
                thr[p] = percentile_from_top(srt, mm[p], quantile)
            del top
            # pass 2: tallies
            tallies = {}
            for idx in tqdm(batches, desc="dissect: tallies", disable=not progress):
                outs = forward(idx)
                groups = _segs(probe, idx, n_labels)
                for p in paths:
                    a = outs[p]
                    u = a.shape[1]
                    if p not in tallies:
                        g = labelcat.shape[1]
                        z = dict(device=dev, dtype=torch.float64)
                        tallies[p] = _Tally(torch.zeros(u, n_labels, **z), torch.zeros(u, **z),
                                            torch.zeros(u, g, **z), torch.zeros(n_labels, **z))
                    for pos, seg, sc in groups:
                        _tally_batch(tallies[p], a[pos], thr[p], seg.to(dev), sc.to(dev), labelcat, n_labels)
    finally:
        model.to(orig_device)

    lc = probe.label_category_matrix()
    valid = probe.primary >= 0
    rows, ious = [], {}
    for layer, p in zip(layers, paths):
        t = tallies[p]
        iou = iou_from_tallies(t.both.cpu().numpy(), t.units_cat.cpu().numpy(), t.labels.cpu().numpy(), lc)
        iou[:, ~valid] = 0.0
        ious[str(layer)] = iou
        best = iou.argmax(1)
        th = thr[p].cpu().numpy()
        for k in range(iou.shape[0]):  # table rows only; the numbers above are batched
            lab = int(best[k])
            row = {"layer": str(layer), "unit": k, "threshold": float(th[k]), "label": probe.label_names[lab],
                   "category": probe.categories[probe.primary[lab]] if iou[k, lab] > 0 else "",
                   "iou": float(iou[k, lab]), "detector": bool(iou[k, lab] > iou_threshold)}
            if iou[k, lab] <= 0:
                row["label"] = ""
            rows.append(row)
        for ci, cat in enumerate(probe.categories):
            sel = np.where(probe.primary == ci, iou, -1.0)
            bl = sel.argmax(1)
            for k in range(iou.shape[0]):
                rows[-iou.shape[0] + k][f"{cat}_label"] = probe.label_names[bl[k]] if sel[k, bl[k]] > 0 else ""
                rows[-iou.shape[0] + k][f"{cat}_iou"] = float(max(sel[k, bl[k]], 0.0))
    units = pd.DataFrame(rows)
    return Dissection(units=units, iou=ious,
                      image_max={str(l): image_max[p].numpy() for l, p in zip(layers, paths)},
                      thresholds={str(l): thr[p].cpu().numpy() for l, p in zip(layers, paths)},
                      label_names=list(probe.label_names), categories=list(probe.categories),
                      primary=probe.primary.copy(), iou_threshold=float(iou_threshold))
