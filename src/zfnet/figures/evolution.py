"""Fig. 4's writer: one grid per layer (rows: feature maps, columns: checkpoints) and a JSON index."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from zfnet.figures.tiles import compose_table, save_json, save_png

__all__ = ["save_evolution"]


def save_evolution(result: Mapping[str, dict], out_dir: str | Path) -> list[str]:
    """One PNG per layer (rows: maps, columns: checkpoints) and ``index.json``; returns the PNG paths."""
    out_dir = Path(out_dir)
    paths, index = [], {}
    for layer, r in result.items():
        rows = [[r["projections"][m, e] for e in range(len(r["labels"]))] for m in range(len(r["maps"]))]
        img = compose_table(rows, row_labels=[f"{layer} #{c}" for c in r["maps"]], col_labels=r["labels"],
                            title=f"Feature evolution, {layer}: strongest activation per checkpoint")
        paths.append(str(save_png(img, out_dir / f"{layer}.png")))
        index[layer] = {"maps": r["maps"], "labels": r["labels"], "units": r["units"], "png": f"{layer}.png"}
    save_json(index, out_dir / "index.json")
    return paths
