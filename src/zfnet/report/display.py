"""A table as a reader sees it: machine-readable CSV columns as words, ``mean ± std`` pairs, ours beside
the paper's; and its HTML (pandas', which escapes every cell)."""

from __future__ import annotations

import re

import pandas as pd
from markupsafe import Markup

# readable headers for columns a table's CSV keeps machine-readable
COLUMN_LABELS = {"table1_correspondence": {"occlusion": "occluded part", "size": "square (px)", "repeats": "random draws"}}


def _label(column: str, ours_and_paper: bool) -> str:
    """A snake_case column as a header: ``paper_delta_layer5`` -> "Δ layer 5 (paper)"."""
    paper = column.startswith("paper_")
    text = re.sub(r"layer(\d+)", r"layer \1", column[len("paper_"):] if paper else column)
    text = re.sub(r"\bdelta\b", "Δ", text.replace("_", " "))
    return f"{text} ({'paper' if paper else 'ours'})" if ours_and_paper else text


def display_frame(frame: pd.DataFrame, stem: str = "") -> pd.DataFrame:
    """A table as a reader sees it: ``<x>_mean`` / ``<x>_std`` pairs as one "mean ± std" column, snake_case
    columns as words ("Δ layer 5 (ours)" beside "Δ layer 5 (paper)"), a table's own labels (COLUMN_LABELS).
    The CSV keeps its machine-readable columns (W&B logs those)."""
    pairs = [c[: -len("_mean")] for c in frame.columns if c.endswith("_mean") and f"{c[: -len('_mean')]}_std" in frame]
    out = pd.DataFrame(index=frame.index)
    labels = COLUMN_LABELS.get(stem, {})
    for col in frame.columns:
        base = col[: -len("_mean")] if col.endswith("_mean") else col[: -len("_std")] if col.endswith("_std") else None
        if base in pairs and col.endswith("_std"):
            continue
        key = base if base in pairs else col
        both = f"paper_{key}" in frame or f"paper_{key}_mean" in frame or key.startswith("paper_")
        name = labels.get(key) or (_label(key, both) if "_" in key or both else key)
        if base in pairs:
            out[name] = [f"{m:.3f} ± {d:.3f}" if pd.notna(m) else "–" for m, d in zip(frame[col], frame[f"{base}_std"])]
        else:
            out[name] = frame[col]
    order = []  # ours beside the paper's
    for name in out.columns:
        if name not in order:
            order.append(name)
            if name.endswith(" (ours)") and (paper := name[: -len("(ours)")] + "(paper)") in out:
                order.append(paper)
    return out[order]


def frame_html(frame: pd.DataFrame, stem: str = "") -> Markup:
    """The table as HTML: pandas' ``to_html`` (it escapes every header and cell), many columns in a smaller font."""
    frame = display_frame(frame, stem)
    classes = ["many"] if len(frame.columns) > 6 else []
    return Markup(frame.to_html(index=False, na_rep="–", border=0, classes=classes, escape=True))
