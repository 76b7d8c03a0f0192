"""Which figures each visualize part wrote: ``<out_dir>/index/<part>.json``, ``{figure group: [PNG paths]}``
in the order the part wrote them; :func:`read` merges every part's (the report's list of figure groups)."""

from __future__ import annotations

import json
from pathlib import Path

from zfnet.io import write_json

FOLDER = "index"


def write(out_dir: str | Path, part: str, figures: dict[str, list[str]]) -> Path:
    return write_json(Path(out_dir) / FOLDER / f"{part}.json", figures)


def read(out_dir: str | Path) -> dict[str, list[str]]:
    """Every part's groups (no part writes another's); ``{}`` when no part ran. A part's file that is not
    JSON fails naming it."""
    merged: dict[str, list[str]] = {}
    for path in sorted((Path(out_dir) / FOLDER).glob("*.json")):
        try:
            merged.update(json.loads(path.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not a visualize part's figure index (JSON: {{group: [paths]}}): {err}") from err
    return merged
