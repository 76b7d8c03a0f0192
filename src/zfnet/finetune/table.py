"""The fine-tuning table: accuracy per strategy and training-set size, beside the paper's Fig. 9 gap.

One row per (strategy, training images per class) from ``<metrics_dir>/<strategy>.json``: validation
accuracy, its gain over training from scratch at the same size, parameters (total / trainable), the
overlap of a few maps' top-9 images before and after fine-tuning, and the accuracy on ``test1/`` (largest
size only). The paper's gap is Table 5 / Fig. 9 (Caltech-256): ImageNet-pretrained minus non-pretrained
at the paper's training size nearest ours; the datasets differ, so it is the size of the effect to expect,
not a number to match.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from zfnet.paper import TABLE5

__all__ = ["PAPER_GAP", "collect", "finetune_table"]

# Fig. 9 / Table 5, Caltech-256: pretrained minus non-pretrained accuracy (points) per training images per class
PAPER_GAP = {n: round(float(TABLE5["ImageNet-pretrained convnet"][n].split()[0])
                      - float(TABLE5["Non-pretrained convnet"][n].split()[0]), 1)
             for n in TABLE5["ImageNet-pretrained convnet"]}
SCRATCH = "scratch"


def collect(metrics_dir: str | Path, strategies) -> dict[str, dict]:
    """The metrics of every strategy that has them, in config order."""
    found = {}
    for name in strategies:
        path = Path(metrics_dir) / f"{name}.json"
        if path.is_file():
            found[str(name)] = json.loads(path.read_text())
    return found


def _baseline(metrics: dict[str, dict]) -> dict | None:
    """The strategy trained from scratch (``pretrained: false``), preferring the one named scratch."""
    own = [m for m in metrics.values() if not m.get("pretrained", True)]
    if SCRATCH in metrics and not metrics[SCRATCH].get("pretrained", True):
        return metrics[SCRATCH]
    return own[0] if own else None


def finetune_table(metrics: dict[str, dict]) -> pd.DataFrame:
    base = _baseline(metrics)
    rows = []
    for name, m in metrics.items():
        sizes = sorted(m["val_accuracy"], key=int)
        for n in sizes:
            acc = 100 * m["val_accuracy"][n]
            gain = None
            if base is not None and base is not m and n in base["val_accuracy"]:
                gain = round(acc - 100 * base["val_accuracy"][n], 1)
            paper_n = min(PAPER_GAP, key=lambda p: (abs(p - int(n)), p))
            largest = n == sizes[-1]
            overlap = m.get("top9_overlap")
            test1 = m.get("test1_accuracy") if largest else None
            rows.append({
                "strategy": name, "trained layers": m["trainable"], "pretrained": m["pretrained"],
                "train images / class": int(n), "val accuracy (%)": round(acc, 1),
                "vs scratch (points)": gain, "params total": m["params_total"],
                "params trainable": m["params_trainable"],
                f"top-9 kept, {m.get('analysis_layer', 'conv5')} (%)":
                    None if overlap is None else round(100 * overlap, 1),
                "test1 accuracy (%)": None if test1 is None else round(100 * test1, 1),
                "paper: pretrained − scratch (Caltech-256, points)": f"{PAPER_GAP[paper_n]} at {paper_n}/class",
            })
    return pd.DataFrame(rows)
