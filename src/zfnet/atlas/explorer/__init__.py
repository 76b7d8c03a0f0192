"""The atlas's static explorer (issue 28, part C).

STAND-IN: a bare ``index.html`` listing the layers; the explorer's pages replace this file.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from zfnet.io import write_text

__all__ = ["write_explorer"]


def write_explorer(atlas_dir: Path) -> list[Path]:
    atlas_dir = Path(atlas_dir)
    atlas = json.loads((atlas_dir / "data" / "atlas.json").read_text())
    items = "".join(f'<li><a href="{html.escape(l["file"])}">{html.escape(l["name"])}</a>: {l["units"]} units</li>'
                    for l in atlas["layers"])
    page = (f"<!doctype html><meta charset=utf-8><title>Unit atlas</title><h1>Unit atlas</h1><ul>{items}</ul>"
            f'<p><a href="{html.escape(atlas["report"])}">the report</a></p>\n')
    return [write_text(atlas_dir / "index.html", page)]
