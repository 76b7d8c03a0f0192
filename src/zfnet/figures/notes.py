"""What a figure group is, written beside its figures: ``<folder>/notes.json``.

Each figure group's writer calls :func:`write_notes` where it writes the group's folder, so the report
(:mod:`zfnet.report`) shows any group, of any stage, without code of its own for it:

* ``title`` and ``description``: the page's heading and what the paper shows there;
* ``order``: where the group stands among the report's groups (ascending; groups without notes come last,
  by name);
* ``sections``: more on the group's page, each ``{"title", "text", "table"}`` (text and table optional);
  a table is ``{"columns": [...], "rows": [[...]]}``, shown like the report's tables, or with ``"plain":
  true`` cell by cell, where a cell ``{"ref": "<group>/<anchor>", "else": "<text>"}`` links to another
  group's anchor (its text when that group has no such anchor);
* ``anchors``: ``{name: {"file": <figure in this folder>, "label": <link text>}}``, what other groups'
  cells may link to (e.g. Fig. 2's row of a map).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from zfnet.io import write_json

FILE = "notes.json"


def write_notes(folder: str | Path, title: str, text: str = "", order: int | None = None, *,
                sections: Sequence[Mapping] = (), anchors: Mapping[str, Mapping] | None = None) -> Path:
    """Write ``<folder>/notes.json`` (atomically; the folder is created)."""
    notes: dict = {"title": title, "description": text}
    if order is not None:
        notes["order"] = int(order)
    if sections:
        notes["sections"] = [dict(s) for s in sections]
    if anchors:
        notes["anchors"] = {str(k): dict(v) for k, v in anchors.items()}
    return write_json(Path(folder) / FILE, notes)


def read_notes(folder: str | Path) -> dict:
    """A group's notes, ``{}`` when its folder has none; a file that is not a notes object fails naming it."""
    path = Path(folder) / FILE
    if not path.is_file():
        return {}
    try:
        notes = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a figure group's notes (JSON: {{title, description, ...}}): {err}") from err
    if not isinstance(notes, dict) or not isinstance(notes.get("title", ""), str):
        raise ValueError(f"{path}: not a figure group's notes: expected a JSON object with a string 'title'")
    return notes
