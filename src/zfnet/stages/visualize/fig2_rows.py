"""Fig. 2's maps and rows, as the deconv part leaves them for the synthesis part (which shows each synthesized
map beside its Fig. 2 row).

The maps are those of ``<out_dir>/deconv/index.json`` (per layer, in row order); the rows are saved as
``<out_dir>/deconv/rows/<layer>.npy.gz``: (maps, 2, H, W, 3) uint8, each map's projections grid and image
patches grid (``np.save``, gzip without a timestamp or name: the same rows, the same bytes; a fifth of the
raw size).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from zfnet.io import atomic_path


def _folder(out_dir: str | Path) -> Path:
    return Path(out_dir) / "deconv" / "rows"


def write(out_dir: str | Path, rows: dict[str, list]) -> list[Path]:
    """``rows``: ``{layer: [[projections grid, patches grid] per map]}`` (``zfnet.figures.deconv.export``)."""
    written = []
    for layer, table in rows.items():
        path = _folder(out_dir) / f"{layer}.npy.gz"
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as f:
                np.save(f, np.stack([np.stack(row) for row in table]).astype(np.uint8))
        written.append(path)
    return written


def read(out_dir: str | Path) -> tuple[dict[str, list[int]], dict[str, np.ndarray]]:
    """``({layer: [channel per row]}, {layer: rows array})`` of the deconv part's Fig. 2; the error names
    the file and the stage to run when it is missing."""
    index_file = Path(out_dir) / "deconv" / "index.json"
    if not index_file.is_file():
        raise FileNotFoundError(f"{index_file} does not exist: the synthesis shows Fig. 2's maps; run the deconv "
                                "part first (dvc repro visualize_deconv, or pipelines/visualize.py)")
    fig2 = json.loads(index_file.read_text())
    maps = {layer: [int(m["channel"]) for m in entry["maps"]] for layer, entry in fig2.items()}
    rows = {}
    for layer in maps:
        path = _folder(out_dir) / f"{layer}.npy.gz"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist (Fig. 2's rows of {layer}, written with {index_file}): "
                                    "rerun the deconv part")
        with gzip.open(path, "rb") as f:
            rows[layer] = np.load(f)
    return maps, rows
