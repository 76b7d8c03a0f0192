"""Visualize part ``deconv``: the layer-1 filters, our training's curves, Fig. 2 (top-k activations projected
by the deconvnet, one pass over the stream) and Fig. 4 (the same maps at each saved checkpoint, a pass per
checkpoint); Fig. 2's maps and rows are left for the synthesis part (:mod:`zfnet.stages.visualize.fig2_rows`)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from zfnet.figures.notes import write_notes
from zfnet.models.weights import load_model
from zfnet.stages.visualize import fig2_rows

NAME = "deconv"
FOLDERS = ("filters", "training", "deconv", "evolution")
#: each folder's notes (:mod:`zfnet.figures.notes`): title, what the paper shows there, place in the report
NOTES = {
    "training": ("Training curves", "Loss and top-1 error per epoch: train, validation centre crop and 10-crop.", 10),
    "filters": ("Layer-1 filters", "The first layer's filters of the trained network (Fig. 6 (c) in the paper).", 20),
    "deconv": ("Fig. 2: top-9 activations, projected by the deconvnet",
               "Per layer, a few feature maps: the 9 strongest activations over the validation images projected "
               "back to pixel space, beside the image patches that caused them.", 40),
    "evolution": ("Fig. 4: feature evolution during training",
                  "The strongest activation of a few maps per layer, projected, at each saved epoch.", 50),
}


def checkpoints_by_epoch(folder: Path) -> dict[str, torch.nn.Module]:
    found = sorted((int(m.group(1)), p) for p in folder.glob("epoch=*.ckpt") if (m := re.match(r"epoch=(\d+)", p.stem)))
    return {f"epoch {e}": load_model(p) for e, p in found}


def run(ctx) -> dict[str, list[str]]:
    from zfnet.analysis.filters import first_conv
    from zfnet.figures.deconv import DEFAULT_LAYERS
    from zfnet.figures.filters import save_filters
    from zfnet.figures.training import plot_history

    cfg, v, out = ctx.cfg, ctx.v, ctx.out
    figures = {"filters": [str(save_filters(first_conv(ctx.model)[1].weight, out / "filters" / f"conv1_{ctx.arch}.png"))]}
    history = cfg.train.get("history_path") or "metrics/train_history.csv"  # null: the pipeline's, as the checkpoint
    if not v.get("model") and Path(history).is_file():  # our training's curves, not a user's model's
        figures["training"] = [str(plot_history(history, out / "training" / "curves.png"))]

    # the top-k search streams the images, one batch at a time; only the winners are read again
    stream = ctx.stream
    stream.desc = "visualize: top-k search (Fig. 2, then Fig. 4 per checkpoint)"
    checkpoints = (checkpoints_by_epoch(Path(v.checkpoints_dir)) or None) if not v.get("model") else None
    deconv = fig2_and_fig4(ctx.model, stream, out, maps_per_layer=int(v.deconv.maps_per_layer), k=int(v.deconv.k),
                           layers=ctx.layers or list(DEFAULT_LAYERS), checkpoints=checkpoints, seed=int(cfg.seed),
                           mean=ctx.mean.mean(dim=(1, 2)))  # patches are crops: a per-channel mean to display them
    rows = fig2_anchors(deconv.pop("maps"))  # the maps are in deconv/index.json too
    for folder, (title, text, order) in NOTES.items():
        write_notes(out / folder, title, text, order=order, anchors=rows if folder == "deconv" else None)
    fig2_rows.write(out, deconv.pop("rows"))
    figures.update(deconv)
    return figures


def fig2_and_fig4(model: nn.Module, images, out_dir: str | Path, *, maps_per_layer: int = 4, k: int = 9,
                  layers: Sequence[str], checkpoints: Mapping[str, nn.Module] | None = None, seed: int = 0,
                  lrn: str = "identity", mean: torch.Tensor | None = None) -> dict:
    """Fig. 2 and Fig. 4: ``{"deconv": [...], "evolution": [...]}`` (PNG paths), and what later figures reuse:
    ``"maps"`` (``{layer: [channel, ...]}``, the maps of the Fig. 2 grid) and ``"rows"`` (``{layer:
    [[projections grid, patches grid] per map]}``, Fig. 2's rows as uint8 arrays).

    * ``out_dir/deconv/<layer>.png`` + ``index.json``: Fig. 2 for ``maps_per_layer`` maps per layer
      (deterministic random subset, ``seed``) over ``images`` (N, 3, H, W float, mean-subtracted).
    * ``out_dir/evolution/<layer>.png`` + ``index.json`` (only with ``checkpoints``, ``{epoch label: model}``
      in training order): Fig. 4 for the same maps, the strongest activation at each checkpoint (one pass over
      ``images`` per checkpoint).

    ``images``: a (N, 3, H, W) float tensor, or a stream: an iterable of batches (re-iterable: one pass per
    search) with ``take(indices)``, the images at ascending stream indices (:mod:`zfnet.stages.visualize.stream`).
    The searches hold one batch at a time; afterwards only the images the figures show are fetched (at most
    ``layers x maps_per_layer x k``, and one per map and checkpoint for Fig. 4).
    """
    from zfnet.analysis.evolution import feature_evolution
    from zfnet.analysis.deconvnet.top_projections import top_projections
    from zfnet.analysis.topk import choose_maps, top_activations
    from zfnet.figures.deconv import fig2
    from zfnet.figures.evolution import save_evolution

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
    paths, _ = fig2(top_projections(model, images, topk, maps, lrn=lrn), out_dir / "deconv", lrn=lrn, mean=mean,
                    rows=rows)
    result = {"deconv": paths, "maps": maps, "rows": rows}
    if checkpoints:
        evo = feature_evolution(checkpoints, images, maps, lrn=lrn)
        result["evolution"] = save_evolution(evo, out_dir / "evolution")
    return result


def fig2_anchors(maps: dict[str, list[int]]) -> dict[str, dict]:
    """Fig. 2's rows as anchors other groups' notes link to (:mod:`zfnet.figures.notes`): ``<layer>/<channel>``
    -> the layer's figure and "Fig. 2, <layer> row <n>" (``maps``: each layer's channels in row order)."""
    return {f"{layer}/{int(c)}": {"file": f"{layer}.png", "label": f"Fig. 2, {layer} row {i + 1}"}
            for layer, channels in maps.items() for i, c in enumerate(channels)}
