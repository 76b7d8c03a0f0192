"""Figure writers for the deconvnet analyses: Fig. 2 (top-9 projections beside their patches), Fig. 4
(feature evolution, via :mod:`zfnet.analysis.evolution`) and Fig. 6 (layer-1 filters and layer-2
projections of several models, e.g. alexnet vs zfnet, with and without RMS clipping).

Entry point for the pipeline: :func:`export`. Every file is written atomically (temp file + rename).

Display conventions: a projection is shown with zero at mid-grey and its largest absolute value at the
ends of the range (each projection scaled on its own, so the sign structure is visible); an image patch
is shown with the dataset mean added back when ``mean`` is given, else stretched to its own min..max.
Patches and projections are the unit's receptive field (zero outside the image).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from zfnet.analysis.deconvnet import Deconvnet, NotAChainError, Projections, project
from zfnet.analysis.filters import filter_grid
from zfnet.analysis.topk import TopK, top_activations
from zfnet.io import atomic_path, write_text

__all__ = ["DEFAULT_LAYERS", "choose_maps", "compose_table", "export", "fig2", "fig6", "project_selected"]

DEFAULT_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
_BG = (255, 255, 255)
_INK = (0, 0, 0)


# ------------------------------------------------------------------------------------------- writing
def _save_png(img: np.ndarray | Image.Image, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(tmp, format="PNG")
    return Path(path)


def _atomic_json(obj, path: str | Path) -> Path:
    return write_text(path, json.dumps(obj, indent=1))


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(label)).strip("_") or "model"


# ---------------------------------------------------------------------------------------- rendering
def _proj_rgb(p: torch.Tensor) -> np.ndarray:
    """(3, h, w) projection -> uint8 (h, w, 3): 0 at grey, +-max|p| at the ends."""
    p = p.detach().float().cpu()
    m = p.abs().max()
    x = 0.5 + 0.5 * p / m if m > 0 else torch.full_like(p, 0.5)
    return (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _image_rgb(x: torch.Tensor, mean: torch.Tensor | None = None) -> np.ndarray:
    x = x.detach().float().cpu()
    if mean is not None:
        y = x + mean.float().cpu().reshape(3, 1, 1) if mean.ndim <= 1 else x + mean.float().cpu()
        y = y / 255.0 if y.max() > 1.5 else y
    else:
        lo, hi = x.min(), x.max()
        y = (x - lo) / (hi - lo) if hi > lo else torch.full_like(x, 0.5)
    return (y.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _tile(arr: np.ndarray, cell: int) -> np.ndarray:
    """Nearest-neighbour upscale so that the tile is at least ``cell`` px on its long side."""
    f = max(1, int(np.ceil(cell / max(arr.shape[:2]))))
    return arr.repeat(f, 0).repeat(f, 1) if f > 1 else arr


def _grid(tiles: Sequence[np.ndarray], ncol: int, pad: int = 2) -> np.ndarray:
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    nrow = -(-len(tiles) // ncol)
    out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, ncol)
        out[pad + r * (h + pad): pad + r * (h + pad) + t.shape[0], pad + c * (w + pad): pad + c * (w + pad) + t.shape[1]] = t
    return out


def _to_rgb(t) -> np.ndarray:
    if isinstance(t, np.ndarray):
        return t
    return _proj_rgb(t)


def compose_table(rows: Sequence[Sequence], row_labels: Sequence[str] = (), col_labels: Sequence[str] = (),
                  title: str = "", cell: int = 64, pad: int = 6) -> Image.Image:
    """Rows of tiles (tensors = projections, or uint8 arrays) with row/column labels -> one image."""
    tiles = [[_tile(_to_rgb(t), cell) for t in row] for row in rows]
    h = max(t.shape[0] for row in tiles for t in row)
    w = max(t.shape[1] for row in tiles for t in row)
    label_w = 8 + 7 * max([len(s) for s in row_labels] + [0])
    head = 16 + (14 if col_labels else 0) + (14 if title else 0)
    ncol = max(len(r) for r in tiles)
    img = Image.new("RGB", (label_w + ncol * (w + pad) + pad, head + len(tiles) * (h + pad) + pad), _BG)
    draw = ImageDraw.Draw(img)
    y0 = 4
    if title:
        draw.text((4, y0), title, fill=_INK)
        y0 += 14
    for j, lab in enumerate(col_labels):
        draw.text((label_w + pad + j * (w + pad), y0), str(lab), fill=_INK)
    top = head
    for i, row in enumerate(tiles):
        y = top + i * (h + pad)
        if i < len(row_labels):
            draw.text((4, y + h // 2 - 6), row_labels[i], fill=_INK)
        for j, t in enumerate(row):
            img.paste(Image.fromarray(t), (label_w + pad + j * (w + pad), y))
    return img


# ----------------------------------------------------------------------------------------- projecting
def project_selected(model: nn.Module, images: torch.Tensor, layer: str, image_index, channels, ys, xs, *,
                     lrn: str = "identity") -> Projections:
    """Projections of the given units: the fast :class:`Deconvnet` when the model is a plain chain, else
    :func:`project` (autograd; full-image frames)."""
    image_index = torch.as_tensor(image_index, dtype=torch.long).reshape(-1)
    channels = torch.as_tensor(channels, dtype=torch.long).reshape(-1)
    ys = torch.as_tensor(ys, dtype=torch.long).reshape(-1)
    xs = torch.as_tensor(xs, dtype=torch.long).reshape(-1)
    uniq, inv = torch.unique(image_index, return_inverse=True)
    try:
        dn = Deconvnet(model, [layer], lrn=lrn).cache(images[uniq])
        p = dn.project_units(layer, inv, channels, ys, xs)
        p.units["image_index"] = image_index.clone()
        return p
    except NotAChainError:
        pass
    vals, outs = [], []
    for s in range(0, len(channels), 32):
        sl = slice(s, s + 32)
        out, (_c, _y, _x, v) = project(model, images[image_index[sl]], layer, channels[sl],
                                       torch.stack([ys[sl], xs[sl]], 1), lrn=lrn, return_units=True)
        outs.append(out)
        vals.append(v.cpu())
    u = len(channels)
    zeros = torch.zeros(u, dtype=torch.long)
    return Projections(torch.cat(outs), zeros, zeros.clone(), tuple(images.shape[-2:]),
                       {"image_index": image_index, "channel": channels, "y": ys, "x": xs,
                        "value": torch.cat(vals)})


def choose_maps(topk: TopK, n: int, seed: int = 0) -> list[int]:
    """A deterministic random subset of ``n`` feature maps, preferring maps that respond (top value > 0)."""
    c = topk.values.shape[0]
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(c, generator=g).tolist()
    alive = [m for m in order if float(topk.values[m, 0]) > 0]
    dead = [m for m in order if float(topk.values[m, 0]) <= 0]
    return sorted((alive + dead)[: min(n, c)])


# ---------------------------------------------------------------------------------------------- Fig. 2
def fig2(model: nn.Module, images: torch.Tensor, out_dir: str | Path, *, maps_per_layer: int = 4, k: int = 9,
         layers: Sequence[str] = DEFAULT_LAYERS, seed: int = 0, lrn: str = "identity",
         mean: torch.Tensor | None = None, topk: Mapping[str, TopK] | None = None,
         maps: Mapping[str, Sequence[int]] | None = None) -> tuple[list[str], dict]:
    """Top-``k`` projections of ``maps_per_layer`` maps per layer, each beside its image patches.

    Writes ``out_dir/<layer>.png`` (one row per map: a 3x3 grid of projections, then the 3x3 grid of the
    matching patches) and ``out_dir/index.json`` (layer, channel, image index, position, value of every
    unit shown). Returns (PNG paths, index).
    """
    out_dir = Path(out_dir)
    layers = list(layers)
    if topk is None:
        topk = top_activations(model, images, layers, k=k)
    paths, index = [], {}
    ncol = int(np.ceil(np.sqrt(k)))
    for layer in layers:
        t = topk[layer]
        chans = list(maps[layer]) if maps is not None else choose_maps(t, maps_per_layer, seed)
        kk = t.values.shape[1]
        sel_c = torch.tensor(chans, dtype=torch.long).repeat_interleave(kk)
        sel_n = t.image_index[chans].reshape(-1)
        sel_y, sel_x = t.y[chans].reshape(-1), t.x[chans].reshape(-1)
        p = project_selected(model, images, layer, sel_n, sel_c, sel_y, sel_x, lrn=lrn)
        patches = p.crop(images, sel_n)
        rows, labels, entries = [], [], []
        for i, c in enumerate(chans):
            sl = range(i * kk, (i + 1) * kk)
            pgrid = _grid([_tile(_proj_rgb(p.values[j]), 48) for j in sl], ncol)
            igrid = _grid([_tile(_image_rgb(patches[j], mean), 48) for j in sl], ncol)
            rows.append([pgrid, igrid])
            labels.append(f"{layer} #{c}")
            entries.append({
                "channel": int(c),
                "units": [{"image_index": int(sel_n[j]), "y": int(sel_y[j]), "x": int(sel_x[j]),
                           "value": float(p.units["value"][j]),
                           "window": [int(p.top[j]), int(p.left[j]), int(p.top[j]) + p.values.shape[-2],
                                      int(p.left[j]) + p.values.shape[-1]]}
                          for j in sl],
            })
        img = compose_table(rows, labels, ["projections", "image patches"],
                            title=f"{layer}: top-{kk} activations, deconvnet projections (lrn={lrn})")
        paths.append(str(_save_png(img, out_dir / f"{layer}.png")))
        index[layer] = {"png": f"{layer}.png", "maps": entries}
    _atomic_json(index, out_dir / "index.json")
    return paths, index


# ---------------------------------------------------------------------------------------------- Fig. 6
def fig6(models: Mapping[str, nn.Module], images: torch.Tensor, out_dir: str | Path, *, n_maps: int = 16,
         lrn: str = "identity", seed: int = 0) -> list[str]:
    """Layer-1 filters and layer-2 projections of each model (Fig. 6: alexnet vs zfnet, clipped or not).

    ``models``: ``{label: model}``, e.g. ``{"alexnet": a, "zfnet": z, "zfnet, no RMS clipping": z0}``.
    Per model writes ``out_dir/fig6/filters_<label>.png`` and ``out_dir/fig6/conv2_<label>.png`` (the
    strongest activation of ``n_maps`` conv2 maps, projected: aliasing shows as grid artefacts), and one
    panel ``out_dir/fig6/fig6.png`` (a row per model). Returns the PNG paths.
    """
    out = Path(out_dir) / "fig6"
    paths, panel_rows, labels, index = [], [], [], {}
    for label, model in models.items():
        w = model.weight_layer("conv1").weight if hasattr(model, "weight_layer") else model.get_submodule("conv1.conv").weight
        filt = filter_grid(w)
        paths.append(str(_save_png(filt, out / f"filters_{_safe(label)}.png")))
        t = top_activations(model, images, ["conv2"], k=1)["conv2"]
        chans = choose_maps(t, n_maps, seed)
        p = project_selected(model, images, "conv2", t.image_index[chans, 0], chans, t.y[chans, 0],
                             t.x[chans, 0], lrn=lrn)
        grid = _grid([_tile(_proj_rgb(v), 48) for v in p.values], int(np.ceil(np.sqrt(len(chans)))))
        paths.append(str(_save_png(grid, out / f"conv2_{_safe(label)}.png")))
        panel_rows.append([filt, grid])
        labels.append(str(label))
        index[str(label)] = {"conv2_maps": [int(c) for c in chans],
                             "units": [{"image_index": int(p.units["image_index"][j]), "y": int(p.units["y"][j]),
                                        "x": int(p.units["x"][j]), "value": float(p.units["value"][j])}
                                       for j in range(len(chans))]}
    img = compose_table(panel_rows, labels, ["layer-1 filters", "layer-2 projections"],
                        title="Fig. 6: layer 1 filters and layer 2 features", cell=1)
    paths.append(str(_save_png(img, out / "fig6.png")))
    _atomic_json(index, out / "index.json")
    return paths


# ------------------------------------------------------------------------------------------- export
def export(
    model: nn.Module,
    images: torch.Tensor,
    out_dir: str | Path,
    maps_per_layer: int = 4,
    k: int = 9,
    layers: Sequence[str] = DEFAULT_LAYERS,
    checkpoints: Mapping[str, nn.Module] | None = None,
    *,
    seed: int = 0,
    lrn: str = "identity",
    mean: torch.Tensor | None = None,
) -> dict[str, list[str]]:
    """Deconvnet figures for the visualize stage: ``{"deconv": [...], "evolution": [...]}`` (PNG paths).

    * ``out_dir/deconv/<layer>.png`` + ``index.json``: Fig. 2 for ``maps_per_layer`` maps per layer
      (deterministic random subset, ``seed``) over ``images`` (N, 3, H, W float, mean-subtracted).
    * ``out_dir/evolution/<layer>.png`` + ``index.json`` (only with ``checkpoints``, ``{epoch label: model}``
      in training order): Fig. 4 for the same maps, the strongest activation at each checkpoint.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected a (N, 3, H, W) float tensor, got {getattr(images, 'shape', type(images))}")
    out_dir = Path(out_dir)
    layers = list(layers)
    topk = top_activations(model, images, layers, k=k)
    maps = {layer: choose_maps(topk[layer], maps_per_layer, seed) for layer in layers}
    paths, _ = fig2(model, images, out_dir / "deconv", k=k, layers=layers, lrn=lrn, mean=mean, topk=topk, maps=maps)
    result = {"deconv": paths}
    if checkpoints:
        from zfnet.analysis.evolution import feature_evolution, save_evolution

        evo = feature_evolution(checkpoints, images, maps, lrn=lrn)
        result["evolution"] = save_evolution(evo, out_dir / "evolution")
    return result
