"""Table 1's writers: ``correspondence.png`` (Delta per occlusion and layer, ours beside the paper's) and the
table (``table1_correspondence.csv/.md``), from :func:`zfnet.analysis.correspondence.correspondence_table`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from zfnet.figures.tables import write_correspondence_table
from zfnet.figures.tiles import save_figure

__all__ = ["plot_correspondence", "write_correspondence"]


def plot_correspondence(df: pd.DataFrame, path) -> str:
    """Bars of Delta per occlusion and layer (ours with std error bars, the paper's hatched)."""
    keys = [c[len("delta_") : -len("_mean")] for c in df.columns if c.startswith("delta_") and c.endswith("_mean")]
    fig = Figure(figsize=(3.2 + 1.6 * len(df), 3.4), dpi=100, layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(df))
    width = 0.8 / (2 * max(1, len(keys)))
    for k, key in enumerate(keys):
        off = (2 * k - len(keys)) * width + width / 2
        ax.bar(x + off, df[f"delta_{key}_mean"], width, yerr=df[f"delta_{key}_std"], capsize=2,
               label=f"{key} (ours)")
        if f"paper_delta_{key}_mean" in df:
            ax.bar(x + off + width, df[f"paper_delta_{key}_mean"], width, yerr=df[f"paper_delta_{key}_std"],
                   capsize=2, hatch="//", alpha=0.6, label=f"{key} (paper)")
    ax.set_xticks(x)
    ax.set_xticklabels(df["occlusion"])
    ax.set_ylabel("Δ (mean normalized Hamming distance)")
    ax.set_title("Correspondence (Table 1): lower = more consistent", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return save_figure(fig, path)


def write_correspondence(df: pd.DataFrame, out_dir, tables_dir=None) -> list[str]:
    """``out_dir/correspondence.png`` and, with ``tables_dir``, Table 1's files there; returns the PNG path."""
    paths = [plot_correspondence(df, Path(out_dir) / "correspondence.png")]
    if tables_dir is not None:
        write_correspondence_table(df, tables_dir)
    return paths
