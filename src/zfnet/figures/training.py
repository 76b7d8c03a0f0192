"""Training curves (loss; top-1 error train / val / val 10-crop) from the per-epoch history CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from zfnet.io import atomic_path

__all__ = ["plot_history"]


def plot_history(history_csv: str | Path, out: str | Path) -> Path:
    """Training curves (loss; top-1 error train / val / val 10-crop) from the per-epoch history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.read_csv(history_csv)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    # the history's column per curve: ``train_loss`` (older histories: ``train_loss_epoch``)
    for cols, label in ((("train_loss", "train_loss_epoch"), "train"), (("val_loss",), "val (centre crop)")):
        col = next((c for c in cols if c in df and df[c].notna().any()), None)
        if col is not None:
            ax1.plot(df.epoch, df[col], marker="o", label=label)
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    for col, label in (("train_top1_error", "train"), ("val_top1_error", "val centre crop"), ("val_10crop_top1_error", "val 10-crop")):
        if col in df:
            ax2.plot(df.epoch, 100 * df[col], marker="o", label=label)
    ax2.set(xlabel="epoch", ylabel="top-1 error (%)", title="top-1 error")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return out
