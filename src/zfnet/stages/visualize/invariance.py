"""Visualize part ``invariance``: Fig. 5 on the first ``visualize.invariance.images`` images, its curves (mean
over the images) also as CSV per transformation under ``visualize.curves_dir`` (DVC's plots)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from zfnet.figures.notes import write_notes

NAME = "invariance"
FOLDERS = ("invariance",)
#: the folder's notes (:mod:`zfnet.figures.notes`): title, what the paper shows there, place in the report
NOTES = {"invariance": ("Fig. 5: invariance to translation, scale and rotation",
                        "Euclidean distance between the feature vectors of the original and the transformed image at "
                        "layer 1 and layer 7, and the probability of the true class, per image.", 80)}


def run(ctx) -> dict[str, list[str]]:
    from zfnet.analysis.invariance import invariance_sweep
    from zfnet.figures.invariance import plot_invariance

    v = ctx.v
    images, labels = ctx.stream.head(int(v.invariance.images))
    layers = ("conv1", "fc7") if ctx.own else (ctx.layers[0], ctx.layers[-1])  # Fig. 5: layers 1 and 7
    df = invariance_sweep(ctx.model, images, labels, layers=layers, image_ids=[f"{i:03d}" for i in range(len(images))])
    figures = {"invariance": plot_invariance(df, ctx.out / "invariance")}
    if v.get("curves_dir"):
        write_invariance_curves(df, v.curves_dir)
    title, text, order = NOTES["invariance"]
    write_notes(ctx.out / "invariance", title, text, order=order)
    return figures


def write_invariance_curves(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Fig. 5's curves (mean over the images) as ``<out_dir>/<transform>.csv``: the DVC plots' data."""
    from zfnet.analysis.invariance import mean_curves
    from zfnet.io import write_text

    out_dir = Path(out_dir)
    curves = mean_curves(df)
    written = [write_text(out_dir / f"{kind}.csv", frame.to_csv(index=False)) for kind, frame in curves.items()]
    for stale in out_dir.glob("*.csv"):
        if stale.stem not in curves:
            stale.unlink()
    return written


