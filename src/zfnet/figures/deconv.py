"""Figure writers for the deconvnet analyses: Fig. 2 (top-k projections beside their patches), Fig. 4
(feature evolution) and Fig. 6 (layer-1 filters and layer-2 projections of several models, e.g. alexnet vs
zfnet, with and without RMS clipping). Entry point for the pipeline: :func:`export`. Every file is written
atomically (temp file + rename). Patches and projections are the unit's receptive field (zero outside the
image; full frames for models that are not plain chains).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from zfnet.analysis.deconvnet import project_units
from zfnet.analysis.evolution import feature_evolution
from zfnet.analysis.filters import first_conv
from zfnet.analysis.topk import TopK, choose_maps, pick, top_activations
from zfnet.figures.evolution import save_evolution
from zfnet.figures.filters import filter_grid
from zfnet.paper import CONV_LAYERS
from zfnet.figures.tiles import _grid, _image_rgb, _proj_rgb, _safe, _tile, compose_table, save_json, save_png

__all__ = ["DEFAULT_LAYERS", "export", "fig2", "fig6"]

DEFAULT_LAYERS = CONV_LAYERS


# ---------------------------------------------------------------------------------------------- Fig. 2
def fig2(model: nn.Module, images, out_dir: str | Path, *, maps_per_layer: int = 4, k: int = 9,
         layers: Sequence[str] = DEFAULT_LAYERS, seed: int = 0, lrn: str = "identity",
         mean: torch.Tensor | None = None, topk: Mapping[str, TopK] | None = None,
         maps: Mapping[str, Sequence[int]] | None = None, rows: dict | None = None) -> tuple[list[str], dict]:
    """Top-``k`` projections of ``maps_per_layer`` maps per layer, each beside its image patches.

    Writes ``out_dir/<layer>.png`` (one row per map: a 3x3 grid of projections, then the 3x3 grid of the
    matching patches) and ``out_dir/index.json`` (layer, channel, image index, position, value of every
    unit shown). Returns (PNG paths, index). ``images``: a tensor, a stream (see :func:`export`) or the
    :class:`~zfnet.analysis.topk.IndexedImages` picked from one (image indices are stream indices). ``rows``: a dict to fill with ``{layer: [[projections grid,
    patches grid] per map]}`` (uint8 arrays), for figures that put another view of the map beside its row.
    """
    out_dir = Path(out_dir)
    layers = list(layers)
    if topk is None:
        topk = top_activations(model, images, layers, k=k)
    if maps is None:
        maps = {layer: choose_maps(topk[layer], maps_per_layer, seed) for layer in layers}
    picked = pick(images, torch.cat([topk[layer].image_index[list(maps[layer])].reshape(-1) for layer in layers]))
    paths, index = [], {}
    ncol = int(np.ceil(np.sqrt(k)))
    for layer in layers:
        t = topk[layer]
        chans = list(maps[layer])
        kk = t.values.shape[1]
        sel_c = torch.tensor(chans, dtype=torch.long).repeat_interleave(kk)
        sel_n = t.image_index[chans].reshape(-1)
        sel_y, sel_x = t.y[chans].reshape(-1), t.x[chans].reshape(-1)
        rows_n = picked.rows(sel_n)
        p = project_units(model, picked.images, layer, rows_n, sel_c, sel_y, sel_x, lrn=lrn)
        patches = p.crop(picked.images, rows_n)
        table, labels, entries = [], [], []
        for i, c in enumerate(chans):
            sl = range(i * kk, (i + 1) * kk)
            pgrid = _grid([_tile(_proj_rgb(p.values[j]), 48) for j in sl], ncol)
            igrid = _grid([_tile(_image_rgb(patches[j], mean), 48) for j in sl], ncol)
            table.append([pgrid, igrid])
            labels.append(f"{layer} #{c}")
            entries.append({
                "channel": int(c),
                "units": [{"image_index": int(sel_n[j]), "y": int(sel_y[j]), "x": int(sel_x[j]),
                           "value": float(p.units["value"][j]),
                           "window": [int(p.top[j]), int(p.left[j]), int(p.top[j]) + p.values.shape[-2],
                                      int(p.left[j]) + p.values.shape[-1]]}
                          for j in sl],
            })
        if rows is not None:
            rows[layer] = table
        img = compose_table(table, labels, ["projections", "image patches"],
                            title=f"{layer}: top-{kk} activations, deconvnet projections (lrn={lrn})")
        paths.append(str(save_png(img, out_dir / f"{layer}.png")))
        index[layer] = {"png": f"{layer}.png", "maps": entries}
    save_json(index, out_dir / "index.json")
    return paths, index


# ---------------------------------------------------------------------------------------------- Fig. 6
def fig6(models: Mapping[str, nn.Module], images, out_dir: str | Path, *, n_maps: int = 16,
         lrn: str = "identity", seed: int = 0) -> list[str]:
    """Layer-1 filters and layer-2 projections of each model (Fig. 6: alexnet vs zfnet, clipped or not).

    ``models``: ``{label: model}``, e.g. ``{"alexnet": a, "zfnet": z, "zfnet, no RMS clipping": z0}``.
    Per model writes ``out_dir/fig6/filters_<label>.png`` and ``out_dir/fig6/conv2_<label>.png`` (the
    strongest activation of ``n_maps`` conv2 maps, projected: aliasing shows as grid artefacts), and one
    panel ``out_dir/fig6/fig6.png`` (a row per model). Returns the PNG paths. ``images``: a tensor or a stream
    (see :func:`export`): one pass per model, then only the winning images are fetched.
    """
    out = Path(out_dir) / "fig6"
    paths, panel_rows, labels, index = [], [], [], {}
    for label, model in models.items():
        filt = filter_grid(first_conv(model)[1].weight)
        paths.append(str(save_png(filt, out / f"filters_{_safe(label)}.png")))
        t = top_activations(model, images, ["conv2"], k=1)["conv2"]
        chans = choose_maps(t, n_maps, seed)
        n = t.image_index[chans, 0]
        picked = pick(images, n)
        p = project_units(model, picked.images, "conv2", picked.rows(n), chans, t.y[chans, 0], t.x[chans, 0], lrn=lrn)
        p.units["image_index"] = n.clone()
        grid = _grid([_tile(_proj_rgb(v), 48) for v in p.values], int(np.ceil(np.sqrt(len(chans)))))
        paths.append(str(save_png(grid, out / f"conv2_{_safe(label)}.png")))
        panel_rows.append([filt, grid])
        labels.append(str(label))
        index[str(label)] = {"conv2_maps": [int(c) for c in chans],
                             "units": [{"image_index": int(p.units["image_index"][j]), "y": int(p.units["y"][j]),
                                        "x": int(p.units["x"][j]), "value": float(p.units["value"][j])}
                                       for j in range(len(chans))]}
    img = compose_table(panel_rows, labels, ["layer-1 filters", "layer-2 projections"],
                        title="Fig. 6: layer 1 filters and layer 2 features", cell=1)
    paths.append(str(save_png(img, out / "fig6.png")))
    save_json(index, out / "index.json")
    return paths


# ------------------------------------------------------------------------------------------- export
def export(
    model: nn.Module,
    images,
    out_dir: str | Path,
    maps_per_layer: int = 4,
    k: int = 9,
    layers: Sequence[str] = DEFAULT_LAYERS,
    checkpoints: Mapping[str, nn.Module] | None = None,
    *,
    seed: int = 0,
    lrn: str = "identity",
    mean: torch.Tensor | None = None,
) -> dict:
    """Deconvnet figures for the visualize stage: ``{"deconv": [...], "evolution": [...]}`` (PNG paths), and
    what later figures reuse: ``"maps"`` (``{layer: [channel, ...]}``, the maps of the Fig. 2 grid) and
    ``"rows"`` (``{layer: [[projections grid, patches grid] per map]}``, Fig. 2's rows as uint8 arrays).

    * ``out_dir/deconv/<layer>.png`` + ``index.json``: Fig. 2 for ``maps_per_layer`` maps per layer
      (deterministic random subset, ``seed``) over ``images`` (N, 3, H, W float, mean-subtracted).
    * ``out_dir/evolution/<layer>.png`` + ``index.json`` (only with ``checkpoints``, ``{epoch label: model}``
      in training order): Fig. 4 for the same maps, the strongest activation at each checkpoint (one pass over
      ``images`` per checkpoint).

    ``images``: a (N, 3, H, W) float tensor, or a stream: an iterable of batches (re-iterable: one pass per
    search) with ``take(indices)``, the images at ascending stream indices (e.g. ``zfnet.stages.visualize.stream``'s
    validation stream). The searches hold one batch at a time; afterwards only the images the figures show
    are fetched (at most ``layers x maps_per_layer x k``, and one per map and checkpoint for Fig. 4).
    """
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected a (N, 3, H, W) float tensor, got {tuple(images.shape)}")
    elif not (hasattr(images, "__iter__") and hasattr(images, "take")):
        raise ValueError(f"images: expected a (N, 3, H, W) float tensor or a stream with take(indices), "
                         f"got {type(images).__name__}")
    out_dir = Path(out_dir)
    layers = list(layers)
    topk = top_activations(model, images, layers, k=k)
    maps = {layer: choose_maps(topk[layer], maps_per_layer, seed) for layer in layers}
    rows: dict = {}
    paths, _ = fig2(model, images, out_dir / "deconv", k=k, layers=layers, lrn=lrn, mean=mean, topk=topk, maps=maps,
                    rows=rows)
    result = {"deconv": paths, "maps": maps, "rows": rows}
    if checkpoints:
        evo = feature_evolution(checkpoints, images, maps, lrn=lrn)
        result["evolution"] = save_evolution(evo, out_dir / "evolution")
    return result
