"""Figure writers for network-centric synthesis (issue 16): class models, per-layer synthesized maps (the
same maps as Fig. 2's deconvnet grid, so the report shows dataset-centric and network-centric views side by
side) and inversions layer by layer, from the images :mod:`zfnet.analysis.synthesis` optimizes (run by the
visualize part :mod:`zfnet.stages.visualize.synthesis`). Files are written atomically (temp file + rename).

Display: a synthesized image is shown stretched to its own mean ± 3 standard deviations (its pixels are in
mean-subtracted input space with no natural range); an inversion and its original are shown with the
dataset mean added back when ``mean`` is given (the same display as the original), else stretched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from zfnet.figures.tiles import _image_rgb, _tile, compose_table, save_png

__all__ = ["class_models", "inversion_rows", "synthesized_maps"]

def _stretch(x: torch.Tensor) -> np.ndarray:
    x = x.detach().float().cpu()
    m, s = x.mean(), x.std().clamp_min(1e-8)
    y = ((x - m) / (6 * s) + 0.5).clamp(0, 1)
    return (y.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _show(x: torch.Tensor, mean: torch.Tensor | None) -> np.ndarray:
    return _image_rgb(x, mean) if mean is not None else _stretch(x)


def _short(name: str, n: int = 15) -> str:
    first = str(name).split(",")[0].strip()
    return first if len(first) <= n else first[: n - 1] + "."


def _vstack(images: Sequence[Image.Image]) -> Image.Image:
    out = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), (255, 255, 255))
    y = 0
    for i in images:
        out.paste(i, (0, y))
        y += i.height
    return out


def class_models(images: torch.Tensor, names: Sequence[str], path: str | Path, *, ncol: int = 6,
                 classes: Sequence[int] | None = None) -> Path:
    """One PNG of class-model images, ``ncol`` per row, each under its class's (short) name."""
    classes = list(classes) if classes is not None else list(range(len(images)))
    parts = []
    for s in range(0, len(images), ncol):
        tiles = [_tile(_stretch(x), 96) for x in images[s:s + ncol]]
        labels = [f"{k}: {_short(n)}" for k, n in zip(classes[s:s + ncol], names[s:s + ncol])]
        title = ("class models (Simonyan et al.): arg max S_c(I) - l2 |I|^2 from noise, the pre-softmax score"
                 if s == 0 else "")
        parts.append(compose_table([tiles], [f"{s}-{s + len(tiles) - 1}"], labels, title=title, cell=112))
    return save_png(_vstack(parts), path)


def synthesized_maps(images: torch.Tensor, layer: str, maps: Sequence[int], path: str | Path,
                     fig2_rows: Sequence[Sequence[np.ndarray]] | None = None) -> Path:
    """One row per map: its Fig. 2 row (top-k deconvnet projections and image patches: dataset-centric) when
    ``fig2_rows`` is given, then the image synthesized for the map's mean activation (network-centric)."""
    synth = [_tile(_stretch(x), 96) for x in images]
    if fig2_rows is not None:
        rows = [list(r) + [s] for r, s in zip(fig2_rows, synth)]
        cols = ["projections (Fig. 2)", "image patches (Fig. 2)", "synthesized"]
        title = f"{layer}: each map's top activations (dataset-centric) beside the image synthesized for it (network-centric)"
    else:
        rows, cols = [[s] for s in synth], ["synthesized (max mean activation)"]
        title = f"{layer}: images synthesized for each map's mean activation"
    img = compose_table(rows, [f"{layer} #{c}" for c in maps], cols, title=title, cell=96)
    return save_png(img, path)


def inversion_rows(originals: torch.Tensor, recon: torch.Tensor, layers: Sequence[str], path: str | Path,
                   mean: torch.Tensor | None = None, errors: torch.Tensor | None = None) -> Path:
    """One row per image: the original, then its reconstruction from each layer (Mahendran & Vedaldi)."""
    rows = [[_tile(_show(originals[i], mean), 96)] + [_tile(_show(recon[i, j], mean), 96) for j in range(len(layers))]
            for i in range(len(originals))]
    cols = ["original"] + [f"from {l}" if errors is None else f"{l} ({float(errors[:, j].mean()):.2f})"
                           for j, l in enumerate(layers)]
    img = compose_table(rows, [f"image {i}" for i in range(len(originals))], cols,
                        title="inversion from each layer's features (normalized feature error in brackets)", cell=96)
    return save_png(img, path)
