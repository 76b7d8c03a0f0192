"""Feature evolution during training (Fig. 4).

For a set of feature maps, the strongest activation over a dataset at every saved checkpoint, projected to
pixel space with the deconvnet (:func:`feature_evolution`; the figure: ``zfnet.figures.evolution``).

Checkpoints are given as ``{label: model}`` (ordered, e.g. ``{"epoch 1": m1, "epoch 5": m5}``), a list of
``(label, model)`` pairs, or with paths instead of models (``model.pt`` / Lightning ``.ckpt``, loaded with
``zfnet.models.weights.load_model``, i.e. ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from zfnet.analysis.deconvnet import project_units
from zfnet.analysis.topk import pick, top_activations

__all__ = ["feature_evolution"]


def _checkpoint_items(checkpoints) -> list[tuple[str, nn.Module]]:
    items = list(checkpoints.items()) if isinstance(checkpoints, Mapping) else list(checkpoints)
    out = []
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError("checkpoints: expected {label: model} or [(label, model), ...]")
        label, model = item
        if isinstance(model, (str, Path)):
            from zfnet.models.weights import load_model

            model = load_model(model)
        if not isinstance(model, nn.Module):
            raise TypeError(f"checkpoints[{label!r}]: expected a model or a checkpoint path, got {type(model).__name__}")
        out.append((str(label), model))
    if not out:
        raise ValueError("checkpoints: give at least one checkpoint")
    return out


def feature_evolution(
    checkpoints,
    images,
    maps: Mapping[str, Sequence[int]],
    *,
    lrn: str = "identity",
    batch_size: int = 64,
) -> dict[str, dict]:
    """Per layer: ``{"maps": [c, ...], "labels": [...], "projections": (M, E, 3, h, w), "patches": same,
    "units": [[{"image_index", "y", "x", "value"} per checkpoint] per map]}``.

    ``maps``: ``{layer: [channel, ...]}``. For each checkpoint and map the strongest unit over ``images``
    (its top-1 activation) is projected (receptive-field frame; ``patches`` are the matching image windows).

    ``images``: a (N, 3, H, W) tensor or a stream (re-iterable batches with ``take(indices)``, see
    :func:`zfnet.analysis.topk.pick`): one search per checkpoint over the same images, holding one batch at a
    time, then only the winning images (at most one per map and checkpoint) are fetched, in one more pass.
    """
    items = _checkpoint_items(checkpoints)
    layers = list(maps)
    res: dict[str, dict] = {
        layer: {"maps": [int(c) for c in maps[layer]], "labels": [l for l, _ in items], "per_ckpt": []}
        for layer in layers
    }
    tops = []  # per checkpoint: the searches first, so that the winners are fetched together
    for label, model in items:
        tk = top_activations(model, images, layers, k=1, batch_size=batch_size)
        for layer in layers:
            chans = torch.tensor(res[layer]["maps"], dtype=torch.long)
            n_maps = tk[layer].values.shape[0]
            if len(chans) and int(chans.max()) >= n_maps:
                raise ValueError(f"maps[{layer!r}]: channel {int(chans.max())} >= {n_maps} maps in {label!r}")
        tops.append(tk)
    picked = pick(images, torch.cat([tk[layer].image_index[res[layer]["maps"], 0] for tk in tops for layer in layers]))
    for (label, model), tk in zip(items, tops):
        for layer in layers:
            chans = torch.tensor(res[layer]["maps"], dtype=torch.long)
            t = tk[layer]
            n, y, x = t.image_index[chans, 0], t.y[chans, 0], t.x[chans, 0]
            rows = picked.rows(n)
            proj = project_units(model, picked.images, layer, rows, chans, y, x, lrn=lrn)
            proj.units["image_index"] = n.clone()
            res[layer]["per_ckpt"].append((proj, proj.crop(picked.images, rows)))
    for layer in layers:
        per = res[layer].pop("per_ckpt")
        res[layer]["projections"] = torch.stack([p.values for p, _ in per], dim=1)
        res[layer]["patches"] = torch.stack([c for _, c in per], dim=1)
        res[layer]["units"] = [
            [
                {
                    "image_index": int(p.units["image_index"][m]),
                    "y": int(p.units["y"][m]),
                    "x": int(p.units["x"][m]),
                    "value": float(p.units["value"][m]),
                }
                for p, _ in per
            ]
            for m in range(len(res[layer]["maps"]))
        ]
    return res
