"""The statistics of the untrained controls (and of the trained model where the pipeline's files hold only a
summary) that need the network run: the Fig. 5 sweep per image and its bootstrap, the top-9 grouping, the
occlusion minima, Table 1 and Table 3's validation errors. ``collect.evaluate`` calls them; each reads only
the images the trained run used (named in its outputs or the first ``n`` validation images), so its cost is
bounded by the same config as the trained run's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from zfnet.claims import statistics as st
from zfnet.claims import verdicts as vd
from zfnet.data.mean_image import read_mean_image

__all__ = ["control_curves", "control_sweep", "correspondence_control", "INVARIANCE_SE", "invariance_se", "occlusion_control",
           "top9_similarity", "untrained_errors", "val_by_name", "val_images"]


def val_images(prepared: str | Path, crop: int, n: int, labels: bool = False):
    """The first ``n`` validation images as the network sees them (centre crop, minus the mean image); with
    ``labels``, (images, labels). None without a mean image or validation images."""
    if not (Path(prepared) / "mean.npy").is_file():
        return None
    first = next(_val_batches(prepared, crop, n), None)  # the first batch of n is the first n images
    if first is None:
        return None
    return first if labels else first[0]


def val_by_name(prepared: str | Path, crop: int, names: set[str]) -> dict[str, torch.Tensor]:
    """The validation images whose source file name is in ``names``, as the network sees them (centre crop,
    minus the mean image), by name: one pass over the shards, holding only the wanted images."""
    from zfnet.data import shards
    from zfnet.data.crops import crop_offsets

    prepared = Path(prepared)
    if not (prepared / "mean.npy").is_file() or not names:
        return {}
    mean = read_mean_image(prepared / "mean.npy", "claims.prepared_dir")
    found: dict[str, torch.Tensor] = {}
    for shard in shards.shards(prepared, "val"):
        for _key, image, _label, meta in shards.iter_shard(shard, meta=True):
            name = Path(str(meta.get("path", ""))).name
            if name in names and name not in found:
                x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() - mean
                top, left = crop_offsets(x.shape[-1], crop)[4]
                found[name] = x[..., top:top + crop, left:left + crop]
        if len(found) == len(names):
            break
    return found


def occlusion_control(model: torch.nn.Module, rows: list[dict], images: Mapping[str, torch.Tensor]
                      ) -> dict[str, tuple[float, float]] | str:
    """Per image of ``rows`` (boxes.json's), the (x, y) centre of ``model``'s (the untrained control's) true-
    class probability minimum, the square and stride the trained run used; or why there is none."""
    from zfnet.analysis.occlusion import occlusion_maps

    if any("size" not in r or "stride" not in r for r in rows):
        return "boxes.json has no square size / stride per image (rerun the visualize stage)"
    missing = [r["image"] for r in rows if r["image"] not in images]
    if missing:
        return f"{len(missing)} occluded image(s) not among the prepared validation images (e.g. {missing[0]})"
    out = {}
    for r in rows:
        m = occlusion_maps(model, images[r["image"]], int(r["label"]), int(r["size"]), int(r["stride"]))
        out[r["image"]] = st.minimum_centre(m["prob"], m["ys"].tolist(), m["xs"].tolist(), int(r["size"]))
    return out


def correspondence_control(model: torch.nn.Module, table: pd.DataFrame, images: torch.Tensor,
                           landmarks: Mapping[str, np.ndarray], options: Mapping | None = None) -> pd.DataFrame:
    """Table 1 of ``model`` (the untrained control) on the trained table's images and landmarks, with its
    square size and repeats (``table``'s ``size`` / ``repeats`` columns) and the visualize stage's other
    options (``visualize.correspondence``: ``seed``, ``jitter``, ``layers``, ``boxes``)."""
    from zfnet.analysis.correspondence import correspondence_table

    o = {k: v for k, v in dict(options or {}).items() if k in ("seed", "jitter", "layers", "boxes") and v is not None}
    if "layers" in o:
        o["layers"] = tuple(o["layers"])
    return correspondence_table(model, images, landmarks, size=int(table["size"].iloc[0]),
                                repeats=int(table["repeats"].iloc[0]), **o)


def control_sweep(model: torch.nn.Module, curves: Mapping[str, pd.DataFrame | None], images: torch.Tensor,
                  labels: torch.Tensor) -> pd.DataFrame | None:
    """The Fig. 5 measurements of ``model`` per image (``invariance_sweep``'s long table) at the same amounts
    and layers as ``curves`` (the trained model's ``metrics/invariance/<transform>.csv``), on ``images``."""
    from zfnet.analysis.invariance import invariance_sweep

    have = {k: f for k, f in curves.items() if f is not None and not f.empty}
    if not have:
        return None
    first = next(iter(have.values()))
    layers = [c.removeprefix("distance_") for c in first.columns if c.startswith("distance_")]
    amounts = {k: sorted(set(f["amount"].astype(float))) for k, f in have.items()}
    return invariance_sweep(model, images, labels, amounts, layers=layers)


def control_curves(model: torch.nn.Module, curves: Mapping[str, pd.DataFrame | None], images: torch.Tensor,
                   labels: torch.Tensor) -> dict[str, pd.DataFrame]:
    """The Fig. 5 mean curves of ``model`` (the untrained control) at the same amounts and layers as
    ``curves``, on ``images``."""
    from zfnet.analysis.invariance import mean_curves

    sweep = control_sweep(model, curves, images, labels)
    return {} if sweep is None else mean_curves(sweep)


def _per_image(frame: pd.DataFrame, ids: list) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Per transformation: (amounts, {column: (images, amounts) array}) of a long invariance table, the
    images in ``ids``' order (each image's value per amount: its mean over repeated rows)."""
    cols = [c for c in frame.columns if c.startswith("distance_")] + ["p_true"]
    out = {}
    for kind in dict.fromkeys(frame["transform"]):
        part = frame[frame["transform"] == kind].groupby(["image", "amount"], sort=True)[cols].mean()
        amounts = np.array(sorted(set(part.index.get_level_values("amount"))), float)
        out[str(kind)] = (amounts, {c: part[c].unstack("amount").reindex(index=ids, columns=amounts).to_numpy(float)
                                    for c in cols})
    return out


# the Fig. 5 statistics whose trained-minus-untrained difference has a bootstrap standard error over images
INVARIANCE_SE = ("diff", "linear_edge", "drop")


def _invariance_values(cube, idx) -> dict[str, float]:
    """The Fig. 5 statistics (``INVARIANCE_SE``) of the mean curves of the images ``idx`` of a per-image cube."""
    curves = {k: pd.DataFrame({"amount": a, **{c: v[idx].mean(0) for c, v in cols.items()}})
              for k, (a, cols) in cube.items()}
    s = vd.invariance_stats(curves) or {}
    rot = vd.rotation(curves)
    return {"diff": s.get("diff", float("nan")), "linear_edge": s.get("linear_edge", float("nan")),
            "drop": float("nan") if isinstance(rot, str) else rot[2]}


def invariance_se(trained: pd.DataFrame, control: pd.DataFrame, draws: int, seed: int = 0) -> dict[str, float]:
    """Bootstrap standard errors over images of the Fig. 5 statistics, trained minus untrained: ``diff``
    (layer 1's minus layer 7's normalized area), ``linear_edge`` (the line's edge in R² over the better curve)
    and ``drop`` (the rotation's relative drop of p(true)). Both sweeps (``control_sweep``'s tables on the
    same images) are resampled with the same image indices (paired) and their mean curves (``mean_curves``'
    columns) recomputed; one set of resamples serves the three statistics."""
    ids = list(dict.fromkeys(trained["image"]))
    cubes = _per_image(trained, ids), _per_image(control, ids)
    seen: dict[bytes, dict[str, float]] = {}

    def delta(idx) -> dict[str, float]:
        key = np.asarray(idx).tobytes()
        if key not in seen:  # the same seed draws the same resamples for each statistic: computed once
            t, c = _invariance_values(cubes[0], idx), _invariance_values(cubes[1], idx)  # (``draws`` kept)
            seen[key] = {k: t[k] - c[k] for k in INVARIANCE_SE}
        return seen[key]

    return {k: st.bootstrap_se(lambda idx, k=k: delta(idx)[k], len(ids), draws, seed) for k in INVARIANCE_SE}


def top9_similarity(model: torch.nn.Module, images: torch.Tensor, layers, *, maps_per_layer: int = 6, k: int = 9,
                    pool: int = 64, draws: int = 50, seed: int = 0, bootstrap: int = 0
                    ) -> dict[str, tuple[float, float, float]]:
    """Per layer: (mean pairwise cosine of the top-``k`` deconvnet projections of ``maps_per_layer`` active
    maps, the same for ``k`` random maps' strongest projections, the bootstrap standard error over maps of
    their difference with ``bootstrap`` draws; NaN with 0). Projections are receptive-field frames."""
    from zfnet.analysis.deconvnet import project_units
    from zfnet.analysis.topk import top_activations

    layers = list(layers)
    topk = top_activations(model, images, layers, k=k)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for layer in layers:
        t = topk[layer]
        kk = t.values.shape[1]
        full = (t.values > 0).all(1) & (t.image_index >= 0).all(1)  # maps with k responding images
        alive = full.nonzero().flatten()
        if len(alive) == 0 or kk < 2:
            continue
        chans = alive[torch.randperm(len(alive), generator=g)[:maps_per_layer]].sort().values
        sel = chans.repeat_interleave(kk)
        proj = project_units(model, images, layer, t.image_index[chans].reshape(-1), sel,
                             t.y[chans].reshape(-1), t.x[chans].reshape(-1)).values
        groups = proj.reshape(len(chans), kk, *proj.shape[1:])
        others = alive[torch.randperm(len(alive), generator=g)[:pool]]
        tops = project_units(model, images, layer, t.image_index[others, 0], others, t.y[others, 0], t.x[others, 0]).values
        se = st.grouping_gap_se(groups, tops, draws=bootstrap, seed=seed) if bootstrap else float("nan")
        out[layer] = (*st.within_vs_across(groups, tops, draws=draws, seed=seed), se)
    return out


def _val_batches(prepared: str | Path, crop: int, batch: int):
    """(images, labels) of the whole validation split as the network sees them, ``batch`` at a time."""
    from zfnet.data import shards
    from zfnet.data.crops import crop_offsets

    prepared = Path(prepared)
    mean = read_mean_image(prepared / "mean.npy", "claims.prepared_dir")
    xs, ys = [], []
    for shard in shards.shards(prepared, "val"):
        for _key, image, label in shards.iter_shard(shard):
            xs.append(torch.from_numpy(np.array(image)).permute(2, 0, 1).float())
            ys.append(int(label))
            if len(xs) == batch:
                yield _centred(torch.stack(xs) - mean, crop, crop_offsets), torch.tensor(ys)
                xs, ys = [], []
    if xs:
        yield _centred(torch.stack(xs) - mean, crop, crop_offsets), torch.tensor(ys)


def _centred(x: torch.Tensor, crop: int, crop_offsets) -> torch.Tensor:
    top, left = crop_offsets(x.shape[-1], crop)[4]
    return x[..., top:top + crop, left:left + crop]


@torch.no_grad()
def untrained_errors(models: Mapping[str, str | Path], prepared: str | Path, crop: int | None, seed: int,
                     fingerprints: dict, batch: int = 64) -> dict[str, float]:
    """Per Table 3 row (``{variant: model.pt}``), the validation top-1 error (%) of its untrained control
    (its architecture with the weights the train stage starts from, ``seed``), the centre crop as the
    table's; ``batch`` images at a time (memory bounded by it). Rows whose model is missing are left out."""
    from zfnet.untrained import untrained_like
    from zfnet.models.weights import load_model

    out = {}
    for variant, path in models.items():
        if not Path(path).is_file():
            continue
        trained = load_model(path)
        model, fingerprints[str(path)] = untrained_like(trained, seed)
        size = crop or int(getattr(trained, "config", {}).get("input_size", 224))
        wrong = total = 0
        for x, y in _val_batches(prepared, size, batch):
            wrong += int((model(x).argmax(1) != y).sum())
            total += len(y)
        if total:
            out[variant] = 100.0 * wrong / total
    return out
