"""The atlas's data (the files its pages read; the on-disk contract of issue 28): ``data/atlas.json`` (the
model, the images, the layers and what each method covers) and ``data/<layer>.json`` (one record per map, in
channel order). Paths inside are relative to the atlas folder; a value not computed is null (NaN too); floats
are rounded to 6 significant digits so the files stay small and a rerun writes the same bytes.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from zfnet.io import write_text

__all__ = ["IMAGE_KINDS", "atlas_json", "image_path", "layer_json", "top_classes", "unit_record"]

#: the pictures of a unit, as its record names them
IMAGE_KINDS = ("patches", "deconv", "guided", "synthesis", "evolution")


def image_path(layer: str, unit: int, kind: str) -> str:
    """Where a unit's picture lies, relative to the atlas folder."""
    if kind not in IMAGE_KINDS:
        raise ValueError(f"kind: expected one of {IMAGE_KINDS}, got {kind!r}")
    return f"img/{layer}/{int(unit):04d}_{kind}.jpg"


def _num(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if not math.isfinite(v) else float(f"{v:.6g}")


def _class_name(label: int, names: Sequence[str]) -> str:
    """A label's class name (its number where the names do not reach)."""
    return names[label] if 0 <= label < len(names) else str(label)


def top_classes(labels: Sequence[int], names: Sequence[str]) -> list[list]:
    """``[[class name, count], ...]`` of the top images' labels, most frequent first (ties: first seen)."""
    counts = Counter(int(l) for l in labels if int(l) >= 0)
    order = sorted(counts, key=lambda l: (-counts[l], list(labels).index(l)))
    return [[_class_name(l, names), counts[l]] for l in order]


def unit_record(unit: int, *, mean, max, fire_rate, selectivity, top: Sequence[Mapping], names: Sequence[str],
                images: Mapping[str, str | None], concept: str | None = None, iou=None, ablation=None,
                report_links: Sequence[Mapping] = ()) -> dict:
    """One map's record. ``top``: its top-k units, strongest first (``image_index``, ``label``, ``value``,
    ``y``, ``x``, ``window``: [top, left, bottom, right], the image pixels its tiles show); ``images``: kind ->
    path (None: not computed)."""
    labels = [int(t["label"]) for t in top]
    classes = top_classes(labels, names)
    return {
        "unit": int(unit), "mean": _num(mean), "max": _num(max), "fire_rate": _num(fire_rate),
        "selectivity": _num(selectivity), "top_class": classes[0][0] if classes else None, "top_classes": classes,
        "concept": concept, "iou": _num(iou), "ablation": _num(ablation),
        "images": {kind: images.get(kind) for kind in IMAGE_KINDS},
        "top": [{"image_index": int(t["image_index"]),
                 "class": _class_name(int(t["label"]), names),
                 "value": _num(t["value"]), "y": int(t["y"]), "x": int(t["x"]),
                 "window": [int(w) for w in t["window"]]} for t in top],
        "report_links": [dict(link) for link in report_links],
    }


def _dump(obj) -> str:
    return json.dumps(obj, indent=1) + "\n"


def layer_json(atlas_dir: str | Path, layer: str, records: Sequence[dict]) -> str:
    """Write ``data/<layer>.json``; returns its path relative to the atlas folder."""
    rel = f"data/{layer}.json"
    write_text(Path(atlas_dir) / rel, _dump({"layer": layer, "units": list(records)}))
    return rel


def atlas_json(atlas_dir: str | Path, *, arch: str, source: str, images: int, k: int,
               layers: Sequence[tuple[str, int, str]], coverage: Mapping[str, str], report: str) -> Path:
    """Write ``data/atlas.json``: ``layers`` as (name, units, data file)."""
    return write_text(Path(atlas_dir) / "data" / "atlas.json", _dump({
        "model": {"arch": arch, "source": source}, "images": int(images), "k": int(k),
        "layers": [{"name": n, "units": int(u), "file": f} for n, u, f in layers],
        "coverage": dict(coverage), "report": report}))
