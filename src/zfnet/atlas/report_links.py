"""Links from a unit's atlas page to the report's figures where the unit appears: its Fig. 2 row
(``<visualize.out_dir>/deconv/index.json``), its synthesized row (``synthesis/index.json``) and its
dissection figure (``<dissect.figures_dir>/top_units.json``), each only when the unit is shown there.
Hrefs are relative to the atlas folder."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

__all__ = ["report_links"]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _href(target: Path, atlas_dir: Path) -> str:
    return Path(os.path.relpath(target.resolve(), atlas_dir.resolve())).as_posix()


def report_links(atlas_dir: str | Path, figures_dir: str | Path, dissection_dir: str | Path | None = None
                 ) -> dict[tuple[str, int], list[dict]]:
    """``{(layer, unit): [{"label", "href"}, ...]}`` for every unit the report's figures show."""
    atlas_dir, figures_dir = Path(atlas_dir), Path(figures_dir)
    links: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for layer, entry in _read(figures_dir / "deconv" / "index.json").items():
        png = figures_dir / "deconv" / str(entry.get("png", f"{layer}.png"))
        for row, m in enumerate(entry.get("maps", [])):
            if png.is_file():
                links[(layer, int(m["channel"]))].append(
                    {"label": f"Fig. 2, {layer} row {row + 1}", "href": _href(png, atlas_dir)})
    for layer, entry in (_read(figures_dir / "synthesis" / "index.json").get("maps") or {}).items():
        png = figures_dir / "synthesis" / str(entry.get("png", f"{layer}.png"))
        for row, m in enumerate(entry.get("maps", [])):
            if png.is_file():
                links[(layer, int(m["channel"]))].append(
                    {"label": f"Synthesis, {layer} row {row + 1}", "href": _href(png, atlas_dir)})
    if dissection_dir is not None:
        for u in _read(Path(dissection_dir) / "top_units.json").get("units", []):
            png = Path(dissection_dir) / str(u.get("figure", ""))
            if png.is_file():
                links[(str(u["layer"]), int(u["unit"]))].append(
                    {"label": f"Dissection: {u['label']} (IoU {float(u['iou']):.3f})", "href": _href(png, atlas_dir)})
    return dict(links)
