"""Each unit's dissection concept and IoU for the atlas, read from the dissect stage's per-unit output
(``<dissect.figures_dir>/units.csv``: layer, unit, label, category, iou, detector, threshold), only when
that stage dissected the model the atlas describes (the same ``model`` and checkpoint or weights) and
the atlas's layers."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["describes_same_model", "unit_concepts"]


def describes_same_model(visualize: Mapping, dissect: Mapping) -> bool:
    """Whether ``dissect`` (the dissect stage's keys) names the model of ``visualize`` (the atlas's)."""
    model = visualize.get("model")
    if (dissect.get("model") or None) != (model or None):
        return False
    key = "weights" if model else "checkpoint"
    return Path(str(dissect.get(key))).resolve() == Path(str(visualize.get(key))).resolve() \
        if dissect.get(key) and visualize.get(key) else dissect.get(key) == visualize.get(key)


def unit_concepts(units_csv: str | Path, layers: Sequence[str]) -> dict[str, dict[int, tuple[str | None, float]]] | None:
    """``{layer: {unit: (concept, iou)}}`` from ``units_csv``; None when the file is missing or lacks one of
    ``layers`` (another dissection, not this atlas's)."""
    path = Path(units_csv)
    if not path.is_file():
        return None
    found: dict[str, dict[int, tuple[str | None, float]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["layer"] in layers:
                # no label: the unit overlaps no concept (IoU 0 with each); its concept is null, its IoU 0
                found.setdefault(row["layer"], {})[int(row["unit"])] = (row["label"] or None, float(row["iou"]))
    return found if set(layers) <= set(found) else None
