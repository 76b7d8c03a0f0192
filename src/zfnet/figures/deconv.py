"""Figure writers for the deconvnet analyses: Fig. 2 (top-k projections beside their patches) and Fig. 6
(layer-1 filters and layer-2 projections of several models, e.g. alexnet vs zfnet, with and without RMS
clipping), from the projections :mod:`zfnet.analysis.deconvnet.top_projections` computes (Fig. 4's writer:
:mod:`zfnet.figures.evolution`). Every file is written atomically (temp file + rename). Patches and
projections are the unit's receptive field (zero outside the image; full frames for models that are not plain
chains).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch

from zfnet.figures.filters import filter_grid
from zfnet.paper import CONV_LAYERS
from zfnet.figures.tiles import _grid, _image_rgb, _proj_rgb, _safe, _tile, compose_table, save_json, save_png

__all__ = ["DEFAULT_LAYERS", "fig2", "fig6"]

DEFAULT_LAYERS = CONV_LAYERS


# ---------------------------------------------------------------------------------------------- Fig. 2
def fig2(projections: Iterable[tuple[str, dict]], out_dir: str | Path, *, lrn: str = "identity",
         mean: torch.Tensor | None = None, rows: dict | None = None) -> tuple[list[str], dict]:
    """Fig. 2 from :func:`zfnet.analysis.deconvnet.top_projections.top_projections` (``(layer, result)`` per layer):
    one row per map, a grid of its top-k projections, then the grid of the matching image patches.

    Writes ``out_dir/<layer>.png`` and ``out_dir/index.json`` (layer, channel, image index, position, value
    and window of every unit shown). Returns (PNG paths, index). ``lrn``: the projection's LRN rule (the
    title); ``mean``: (3,) added back to the patches for display. ``rows``: a dict to fill with ``{layer:
    [[projections grid, patches grid] per map]}`` (uint8 arrays), for figures that put another view of the
    map beside its row.
    """
    out_dir = Path(out_dir)
    paths, index = [], {}
    for layer, r in projections:
        kk, values, patches, units = r["k"], r["projections"], r["patches"], r["units"]
        ncol = int(np.ceil(np.sqrt(kk)))
        table, labels, entries = [], [], []
        for i, c in enumerate(r["maps"]):
            sl = range(i * kk, (i + 1) * kk)
            pgrid = _grid([_tile(_proj_rgb(values[j]), 48) for j in sl], ncol)
            igrid = _grid([_tile(_image_rgb(patches[j], mean), 48) for j in sl], ncol)
            table.append([pgrid, igrid])
            labels.append(f"{layer} #{c}")
            entries.append({"channel": int(c), "units": [units[j] for j in sl]})
        if rows is not None:
            rows[layer] = table
        img = compose_table(table, labels, ["projections", "image patches"],
                            title=f"{layer}: top-{kk} activations, deconvnet projections (lrn={lrn})")
        paths.append(str(save_png(img, out_dir / f"{layer}.png")))
        index[layer] = {"png": f"{layer}.png", "maps": entries}
    save_json(index, out_dir / "index.json")
    return paths, index


# ---------------------------------------------------------------------------------------------- Fig. 6
def fig6(results: Mapping[str, dict], out_dir: str | Path) -> list[str]:
    """Fig. 6 from :func:`zfnet.analysis.deconvnet.top_projections.conv2_projections` per model (``{label: result}``,
    e.g. ``{"alexnet": ..., "zfnet": ..., "zfnet, no RMS clipping": ...}``).

    Per model writes ``out_dir/fig6/filters_<label>.png`` and ``out_dir/fig6/conv2_<label>.png`` (the
    strongest activation of each conv2 map, projected: aliasing shows as grid artefacts), then one panel
    ``out_dir/fig6/fig6.png`` (a row per model) and ``index.json``. Returns the PNG paths.
    """
    out = Path(out_dir) / "fig6"
    paths, panel_rows, labels, index = [], [], [], {}
    for label, r in results.items():
        filt = filter_grid(r["filters"])
        paths.append(str(save_png(filt, out / f"filters_{_safe(label)}.png")))
        grid = _grid([_tile(_proj_rgb(v), 48) for v in r["projections"]], int(np.ceil(np.sqrt(len(r["maps"])))))
        paths.append(str(save_png(grid, out / f"conv2_{_safe(label)}.png")))
        panel_rows.append([filt, grid])
        labels.append(str(label))
        index[str(label)] = {"conv2_maps": list(r["maps"]), "units": list(r["units"])}
    img = compose_table(panel_rows, labels, ["layer-1 filters", "layer-2 projections"],
                        title="Fig. 6: layer 1 filters and layer 2 features", cell=1)
    paths.append(str(save_png(img, out / "fig6.png")))
    save_json(index, out / "index.json")
    return paths
