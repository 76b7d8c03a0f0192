"""Visualize part ``deconv``: the layer-1 filters, our training's curves, Fig. 2 (top-k activations projected
by the deconvnet, one pass over the stream) and Fig. 4 (the same maps at each saved checkpoint, a pass per
checkpoint); Fig. 2's maps and rows are left for the synthesis part (:mod:`zfnet.stages.visualize.fig2_rows`)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from zfnet.models.weights import load_model
from zfnet.stages.visualize import fig2_rows

NAME = "deconv"
FOLDERS = ("filters", "training", "deconv", "evolution")


def checkpoints_by_epoch(folder: Path) -> dict[str, torch.nn.Module]:
    found = sorted((int(m.group(1)), p) for p in folder.glob("epoch=*.ckpt") if (m := re.match(r"epoch=(\d+)", p.stem)))
    return {f"epoch {e}": load_model(p) for e, p in found}


def run(ctx) -> dict[str, list[str]]:
    from zfnet.figures import deconv as figures_deconv
    from zfnet.figures.filters import save_filters
    from zfnet.figures.training import plot_history

    cfg, v, out = ctx.cfg, ctx.v, ctx.out
    figures = {"filters": [str(save_filters(ctx.model, out / "filters" / f"conv1_{ctx.arch}.png"))]}
    history = cfg.train.get("history_path") or "metrics/train_history.csv"  # null: the pipeline's, as the checkpoint
    if not v.get("model") and Path(history).is_file():  # our training's curves, not a user's model's
        figures["training"] = [str(plot_history(history, out / "training" / "curves.png"))]

    # the top-k search streams the images, one batch at a time; only the winners are read again
    stream = ctx.stream
    stream.desc = "visualize: top-k search (Fig. 2, then Fig. 4 per checkpoint)"
    checkpoints = (checkpoints_by_epoch(Path(v.checkpoints_dir)) or None) if not v.get("model") else None
    deconv = figures_deconv.export(ctx.model, stream, out, maps_per_layer=int(v.deconv.maps_per_layer), k=int(v.deconv.k),
                                   layers=ctx.layers or list(figures_deconv.DEFAULT_LAYERS), checkpoints=checkpoints,
                                   seed=int(cfg.seed),
                                   mean=ctx.mean.mean(dim=(1, 2)))  # patches are crops: a per-channel mean to display them
    del deconv["maps"]  # in deconv/index.json, in row order
    fig2_rows.write(out, deconv.pop("rows"))
    figures.update(deconv)
    return figures
