"""Table writers: a DataFrame as ``<name>.csv`` and ``<name>.md`` (Markdown in the paper's layout)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from zfnet.analysis.correspondence import table_markdown
from zfnet.io import write_text

__all__ = ["write_correspondence_table", "write_unmeasured_table"]


def write_correspondence_table(df: pd.DataFrame, out_dir, name: str = "table1_correspondence") -> list[str]:
    """Write ``<name>.csv`` and ``<name>.md`` (Table 1, ours beside the paper's) atomically; returns the paths."""
    out = Path(out_dir)
    csv_path, md_path = out / f"{name}.csv", out / f"{name}.md"
    write_text(csv_path, df.to_csv(index=False))
    write_text(md_path, table_markdown(df))
    return [str(csv_path), str(md_path)]


def write_unmeasured_table(reason: str, out_dir, name: str) -> list[str]:
    """A table that could not be measured on this data: ``<name>.csv`` with one ``not_measurable`` cell (the
    reason, which the claims stage reports) and ``<name>.md`` saying so; returns the paths."""
    out = Path(out_dir)
    csv_path, md_path = out / f"{name}.csv", out / f"{name}.md"
    write_text(csv_path, pd.DataFrame({"not_measurable": [reason]}).to_csv(index=False))
    write_text(md_path, f"Not measurable on this data: {reason}\n")
    return [str(csv_path), str(md_path)]
