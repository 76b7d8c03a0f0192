"""Figure writers of the finetune stage's curves (matplotlib only: the table stage imports no analysis).

The before / after analyses (top-9 projections, occlusion) are :mod:`zfnet.finetune.analyses`.

* :func:`plot_training`: per-epoch loss and validation accuracy of each training-set size;
* :func:`plot_learning_curves`: validation accuracy against training images per class, one line per
  strategy (the demo's version of the paper's Fig. 9).

Every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from zfnet.figures.tiles import save_figure

__all__ = ["plot_learning_curves", "plot_training", "save_figure"]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def plot_training(history: pd.DataFrame, path: str | Path, title: str = "") -> str:
    """Loss (train, validation) and validation accuracy per epoch, one colour per training-set size."""
    fig = _figure(10, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    for i, (n, rows) in enumerate(history.groupby("n_train")):
        colour = f"C{i}"
        ax1.plot(rows.epoch, rows.train_loss, marker="o", color=colour, label=f"train, {n}/class")
        if "val_loss" in rows:
            ax1.plot(rows.epoch, rows.val_loss, marker="s", ls="--", color=colour, label=f"val, {n}/class")
        ax2.plot(rows.epoch, 100 * rows.train_accuracy, marker="o", color=colour, label=f"train, {n}/class")
        if "val_accuracy" in rows:
            ax2.plot(rows.epoch, 100 * rows.val_accuracy, marker="s", ls="--", color=colour, label=f"val, {n}/class")
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy", ylim=(0, 101))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_learning_curves(table: pd.DataFrame, path: str | Path) -> str:
    """Validation accuracy (%) against training images per class: columns strategy, n_train, accuracy."""
    fig = _figure(6, 4)
    ax = fig.subplots()
    for strategy, rows in table.groupby("strategy", sort=False):
        rows = rows.sort_values("n_train")
        ax.plot(rows.n_train, rows.accuracy, marker="o", label=str(strategy))
    ax.set(xlabel="training images per class", ylabel="validation accuracy (%)",
           title="Fine-tuning: accuracy vs training-set size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
