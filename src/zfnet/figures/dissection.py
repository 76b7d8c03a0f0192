"""Figures of network dissection (:mod:`zfnet.analysis.dissection`): the per-layer table, NetDissect's bar
plot of unique detectors per category by layer, and each layer's top units with their best concept over
their top images (the unit's activation above its threshold outlined, the concept's pixels tinted)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from zfnet.analysis.dissection.tally import resize_maps
from zfnet.io import atomic_path

__all__ = ["layer_table", "top_units", "plot_detectors", "plot_units", "NOTES", "top_units_sections"]

#: the figures folder's notes (:mod:`zfnet.figures.notes`): title, what it shows, place in the report
NOTES = ("Network dissection (Bau et al. 2017)",
         "Each unit's best concept on the Broden-layout probe set: its top-0.5% activation region "
         "against the concept masks (IoU); a detector when IoU > 0.04. Bars: unique concepts detected per "
         "category and layer; then each layer's top units on their top images.", 100)

CATEGORY_COLOURS = {"object": "#4c72b0", "scene": "#55a868", "part": "#c44e52", "material": "#8172b2",
                    "texture": "#ccb974", "color": "#64b5cd"}


def layer_table(d) -> pd.DataFrame:
    """Per layer: units, detectors (best IoU > threshold), unique detected concepts, in total and per
    category (NetDissect's counts)."""
    return d.summary()


def top_units(d, n: int) -> pd.DataFrame:
    """The ``n`` units of each layer with the highest best-concept IoU (ties: the lower unit)."""
    u = d.units.assign(_neg=-d.units["iou"])
    u = u.sort_values(["_neg", "unit"], kind="stable").groupby("layer", sort=False).head(n)
    order = {layer: i for i, layer in enumerate(d.units["layer"].unique())}
    u = u.assign(_layer=u["layer"].map(order)).sort_values(["_layer", "_neg", "unit"], kind="stable")
    return u.drop(columns=["_neg", "_layer"]).reset_index(drop=True)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, dpi: int = 100) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format=out.suffix.lstrip(".") or "png")
    _pyplot().close(fig)
    return out


def plot_detectors(table: pd.DataFrame, categories: Sequence[str], out: str | Path) -> Path:
    """NetDissect's summary: unique detectors (concepts with at least one detector unit) per category, by
    layer, as grouped bars."""
    plt = _pyplot()
    layers = list(table["layer"])
    x = np.arange(len(layers))
    width = 0.8 / max(1, len(categories))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(layers) + 2), 3.6))
    for k, cat in enumerate(categories):
        vals = table.get(f"unique_{cat}", pd.Series(0, index=table.index)).to_numpy()
        bars = ax.bar(x + (k - (len(categories) - 1) / 2) * width, vals, width, label=cat,
                      color=CATEGORY_COLOURS.get(cat))
        ax.bar_label(bars, labels=[str(int(v)) if v else "" for v in vals], fontsize=7)
    ax.set_xticks(x, [f"{l}\n{int(d)}/{int(u)} units" for l, d, u in zip(layers, table["detectors"], table["units"])])
    ax.set(ylabel="unique detectors", title="Unique detectors per category (detector units / units)")
    ax.legend(fontsize=8, ncol=min(3, len(categories)))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, Path(out))


def _outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` with a 4-neighbour outside it (its boundary, 1 px)."""
    p = np.pad(mask, 1)
    inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


def plot_units(d, probe, layer: str, units: pd.DataFrame, maps: dict[int, torch.Tensor], k: int,
               out: str | Path) -> Path:
    """One row per unit of ``units`` (rows of ``d.units``): its ``k`` top images (highest maximum
    activation), each with the unit's map resized to the segmentation (as the tally resizes it) and
    thresholded, outlined in yellow, and the pixels of the unit's best concept tinted magenta. ``maps[unit]``:
    (k, h, w) the unit's activations on those images."""
    from PIL import Image

    plt = _pyplot()
    rows = len(units)
    fig, axes = plt.subplots(max(1, rows), k, figsize=(1.6 * k, 1.8 * max(1, rows)), squeeze=False)
    for r, (_, u) in enumerate(units.iterrows()):
        unit = int(u["unit"])
        thr = float(d.thresholds[layer][unit])
        label_num = probe.label_names.index(u["label"]) if u["label"] else -1
        for c, i in enumerate(d.top_images(layer, unit, k)):
            ax = axes[r, c]
            ax.axis("off")
            sh, sw = probe.seg_shape(int(i))
            with Image.open(probe.image_path(int(i))) as im:
                img = np.asarray(im.convert("RGB").resize((sw, sh), Image.BILINEAR))
            ax.imshow(img)
            if label_num > 0:
                planes, scalars = probe.concept_planes(int(i))
                concept = (planes == label_num).any(0) if len(planes) else np.zeros((sh, sw), bool)
                if label_num in scalars:
                    concept[:] = True
                tint = np.zeros((sh, sw, 4), np.float32)
                tint[concept] = (1.0, 0.0, 1.0, 0.5)  # magenta, translucent
                ax.imshow(tint)
            up = resize_maps(maps[unit][c][None].float(), sh, sw)[0].numpy()  # as the tally resized it
            edge = _outline(up > thr)
            if edge.any():  # an RGBA layer: much cheaper to draw than a contour
                ax.imshow(np.dstack([edge, edge, np.zeros_like(edge), edge]).astype(np.float32))
            if c == 0:
                concept_txt = f"{u['label']} ({u['category']}) IoU {u['iou']:.3f}" if u["label"] else "no concept"
                ax.set_title(f"{layer} unit {unit}: {concept_txt}", fontsize=8, loc="left")
    fig.suptitle(f"{layer}: top units on their top images\nmagenta: the unit's best concept; yellow outline: "
                 "activation above the unit's threshold", fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(out))


def top_units_sections(units: Sequence[dict]) -> list[dict]:
    """The report's section on the top units (``top_units.json``'s ``units``), each linked to its row of
    Fig. 2 where the visualize stage shows that map (the anchor ``<layer>/<channel>`` of the ``deconv``
    group's notes)."""
    rows = [[u["layer"], u["unit"], u["label"] or "–", u["category"] or "", f"{u['iou']:.3f}",
             {"ref": f"deconv/{u['layer']}/{u['unit']}", "else": "not among Fig. 2's maps"}] for u in units]
    if not rows:
        return []
    return [{"title": "Top units and their Fig. 2 rows",
             "table": {"plain": True, "columns": ["layer", "unit", "concept", "category", "IoU", "Fig. 2"], "rows": rows}}]
