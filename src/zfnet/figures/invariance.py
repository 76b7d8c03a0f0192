"""Fig. 5's writer: ``invariance_<kind>.png`` per transformation: (a) distance at layer 1, (b) distance at
layer 7, (c) P(true class), one line per image; written atomically with matplotlib's object API."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from zfnet.figures.tiles import save_figure

__all__ = ["plot_invariance"]


def plot_invariance(df: pd.DataFrame, out_dir, layers: Sequence[str] | None = None) -> list[str]:
    """One Fig. 5-like PNG per transformation in ``df`` (from ``invariance_sweep``); returns the paths."""
    dist_cols = [c for c in df.columns if c.startswith("distance_")]
    if layers is not None:
        dist_cols = [f"distance_{layer}" for layer in layers]
    xlabel = {"translate": "vertical translation (pixels)", "scale": "scale", "rotate": "rotation (degrees)"}
    paths = []
    for kind, sub in df.groupby("transform", sort=False):
        n = len(dist_cols) + 1
        fig = Figure(figsize=(4.2 * n, 3.6), dpi=100, layout="constrained")
        axes = fig.subplots(1, n)
        letters = "abcdefgh"
        for k, col in enumerate([*dist_cols, "p_true"]):
            ax = axes[k]
            for image, rows in sub.groupby("image", sort=False):
                rows = rows.sort_values("amount")
                ax.plot(rows["amount"], rows[col], marker=".", label=str(image))
            if col == "p_true":
                ax.set_ylabel("P(true class)")
                ax.set_ylim(-0.02, 1.02)
                ax.set_title(f"({letters[k]}) probability of the true label", fontsize=9)
            else:
                layer = col[len("distance_") :]
                ax.set_ylabel("Euclidean distance")
                ax.set_title(f"({letters[k]}) {layer}: distance to the original", fontsize=9)
            ax.set_xlabel(xlabel.get(kind, str(kind)))
            ax.grid(alpha=0.3)
        axes[-1].legend(title="image", fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        fig.suptitle(f"Invariance: {kind}", fontsize=10)
        paths.append(save_figure(fig, Path(out_dir) / f"invariance_{kind}.png"))
    return paths
