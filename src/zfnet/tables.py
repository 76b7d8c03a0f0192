"""Paper-style tables: one DataFrame written as ``<stem>.csv`` and ``<stem>.md`` (atomic writes)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from zfnet.io import write_json, write_text


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def to_markdown(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows]) + "\n"


def write_table(frame: pd.DataFrame, stem: str | Path, note: str | None = None) -> tuple[Path, Path]:
    """``<stem>.csv`` and ``<stem>.md``; with ``note`` (what a reader must know to compare the table with the
    paper's), ``<stem>.notes.json`` too, which the report shows above the table."""
    stem = Path(stem)
    if note:
        write_json(stem.with_suffix(".notes.json"), {"description": note})
    return write_text(stem.with_suffix(".csv"), frame.to_csv(index=False)), write_text(stem.with_suffix(".md"), to_markdown(frame))
