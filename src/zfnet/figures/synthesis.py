"""Figure writers for network-centric synthesis (issue 16): class models, per-layer synthesized maps (the
same maps as Fig. 2's deconvnet grid, so the report shows dataset-centric and network-centric views side by
side) and inversions layer by layer. Entry point for the visualize stage: :func:`export_synthesis`. Files are
written atomically (temp file + rename).

Display: a synthesized image is shown stretched to its own mean ± 3 standard deviations (its pixels are in
mean-subtracted input space with no natural range); an inversion and its original are shown with the
dataset mean added back when ``mean`` is given (the same display as the original), else stretched.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from zfnet.analysis import _hooks
from zfnet.analysis.synthesis import Synthesis, channel, invert, logit, maximize
from zfnet.figures.tiles import _image_rgb, _tile, compose_table, save_json, save_png

__all__ = ["DEFAULTS", "class_models", "export_synthesis", "inversion_rows", "synthesized_maps"]

#: the visualize stage's ``synthesis:`` block, with these defaults when a key is missing
DEFAULTS = {
    "enabled": True, "steps": 32, "lr": 0.05, "l2": 1e-3, "tv": 1e-3, "jitter": 4, "rotate": 5.0,
    "blur_every": 16, "param": "fft", "classes": "all", "maps_per_layer": 4, "inversion_images": 2,
    "inversion_steps": 48, "layers": None, "seed": 0,
}


def _stretch(x: torch.Tensor) -> np.ndarray:
    x = x.detach().float().cpu()
    m, s = x.mean(), x.std().clamp_min(1e-8)
    y = ((x - m) / (6 * s) + 0.5).clamp(0, 1)
    return (y.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _show(x: torch.Tensor, mean: torch.Tensor | None) -> np.ndarray:
    return _image_rgb(x, mean) if mean is not None else _stretch(x)


def class_models(images: torch.Tensor, names: Sequence[str], path: str | Path, *, ncol: int = 8) -> Path:
    """One PNG of class-model images, each titled by its class (row-major, ``ncol`` per row)."""
    tiles = [_tile(_stretch(x), 96) for x in images]
    rows = [tiles[i:i + ncol] for i in range(0, len(tiles), ncol)]
    labels = [", ".join(str(n) for n in names[i:i + ncol]) for i in range(0, len(names), ncol)]
    img = compose_table(rows, [f"{i * ncol}-{min(len(tiles), (i + 1) * ncol) - 1}" for i in range(len(rows))],
                        title="class models (Simonyan et al.): arg max S_c(I) - l2 |I|^2 from noise; classes "
                              + "; ".join(labels)[:160], cell=96)
    return save_png(img, path)


def synthesized_maps(images: torch.Tensor, layer: str, maps: Sequence[int], path: str | Path) -> Path:
    """One row per map: the image synthesized for that map's mean activation (the Fig. 2 maps)."""
    rows = [[_tile(_stretch(x), 96)] for x in images]
    img = compose_table(rows, [f"{layer} #{c}" for c in maps], ["synthesized (max mean activation)"],
                        title=f"{layer}: network-centric view of the Fig. 2 maps", cell=96)
    return save_png(img, path)


def inversion_rows(originals: torch.Tensor, recon: torch.Tensor, layers: Sequence[str], path: str | Path,
                   mean: torch.Tensor | None = None, errors: torch.Tensor | None = None) -> Path:
    """One row per image: the original, then its reconstruction from each layer (Mahendran & Vedaldi)."""
    rows = [[_tile(_show(originals[i], mean), 96)] + [_tile(_show(recon[i, j], mean), 96) for j in range(len(layers))]
            for i in range(len(originals))]
    cols = ["original"] + [f"from {l}" if errors is None else f"{l} ({float(errors[:, j].mean()):.2f})"
                           for j, l in enumerate(layers)]
    img = compose_table(rows, [f"image {i}" for i in range(len(originals))], cols,
                        title="inversion from each layer's features (normalized feature error in brackets)", cell=96)
    return save_png(img, path)


def _num_classes(model: nn.Module, images: torch.Tensor) -> int:
    dtype, device = _hooks.dtype_device(model)
    with torch.no_grad(), _hooks.eval_mode(model):
        return int(model(images[:1].to(device, dtype)).shape[1])


def export_synthesis(model: nn.Module, images: torch.Tensor, out_dir: str | Path, cfg_section: Mapping | None = None,
                     maps_by_layer: Mapping[str, Sequence[int]] | None = None, *, class_names: Sequence[str] | None = None,
                     mean: torch.Tensor | None = None, progress: bool = False) -> dict[str, list[str]]:
    """Network-centric figures under ``out_dir/synthesis/``: ``{"synthesis": [PNG paths]}``.

    * ``classes.png``: a class model per class (``classes``: ``"all"``, a count, or a list of class indices);
    * ``<layer>.png``: per layer, an image synthesized for each of the maps of ``maps_by_layer`` (pass the
      Fig. 2 maps, ``zfnet.analysis.topk.choose_maps`` of each layer; without it, the first
      ``maps_per_layer`` maps of each of ``layers``);
    * ``inversion.png``: the first ``inversion_images`` of ``images`` reconstructed from every layer;
    * ``index.json``: objectives reached, maps, classes, seconds.
    Class models and maps run as one batch, inversions as another. ``cfg_section``: :data:`DEFAULTS` keys.
    """
    c = {**DEFAULTS, **{k: v for k, v in dict(cfg_section or {}).items() if v is not None}}
    out = Path(out_dir) / "synthesis"
    if not c["enabled"]:
        return {}
    start = time.perf_counter()
    size = tuple(images.shape[-2:])
    if maps_by_layer is None:
        layers = list(c["layers"] or [n for n in ("conv1", "conv2", "conv3", "conv4", "conv5") if _has(model, n)])
        maps_by_layer = {l: list(range(int(c["maps_per_layer"]))) for l in layers}
    elif c["layers"]:
        maps_by_layer = {l: maps_by_layer[l] for l in c["layers"] if l in maps_by_layer}
    n_cls = _num_classes(model, images)
    classes = c["classes"]
    classes = list(range(n_cls)) if classes == "all" else list(range(min(int(classes), n_cls))) if isinstance(classes, int) else [int(k) for k in classes]
    names = [class_names[k] if class_names is not None and k < len(class_names) else str(k) for k in classes]
    objs = [logit(k) for k in classes] + [channel(l, m) for l, ms in maps_by_layer.items() for m in ms]
    opts = dict(steps=int(c["steps"]), lr=float(c["lr"]), l2=float(c["l2"]), tv=float(c["tv"]), jitter=float(c["jitter"]),
                rotate=float(c["rotate"]), blur_every=int(c["blur_every"]), param=str(c["param"]), seed=int(c["seed"]))
    res: Synthesis = maximize(model, objs, size=size, progress=progress, **opts)
    paths, index = [], {"classes": [], "maps": {}, "inversion": {}}
    nc = len(classes)
    if nc:
        paths.append(str(class_models(res.images[:nc], names, out / "classes.png")))
        index["classes"] = [{"class": k, "name": n, "objective": float(v)} for k, n, v in zip(classes, names, res.objective[:nc])]
    i = nc
    for layer, ms in maps_by_layer.items():
        ms = list(ms)
        paths.append(str(synthesized_maps(res.images[i:i + len(ms)], layer, ms, out / f"{layer}.png")))
        index["maps"][layer] = {"png": f"{layer}.png", "maps": [{"channel": int(m), "objective": float(v)}
                                                                for m, v in zip(ms, res.objective[i:i + len(ms)])]}
        i += len(ms)
    k = min(int(c["inversion_images"]), len(images))
    inv_layers = list(maps_by_layer)
    if k and inv_layers:
        inv = invert(model, images[:k], inv_layers, steps=int(c["inversion_steps"]), seed=int(c["seed"]), progress=progress)
        err = -inv.objective
        paths.append(str(inversion_rows(images[:k], inv.images, inv_layers, out / "inversion.png", mean=mean, errors=err)))
        index["inversion"] = {"png": "inversion.png", "layers": inv_layers,
                              "feature_error": {l: [float(e) for e in err[:, j]] for j, l in enumerate(inv_layers)}}
    index["seconds"] = round(time.perf_counter() - start, 2)
    index["options"] = {**opts, "inversion_steps": int(c["inversion_steps"])}
    save_json(index, out / "index.json")
    return {"synthesis": paths}


def _has(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False
