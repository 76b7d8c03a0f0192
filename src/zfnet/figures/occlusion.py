"""Fig. 7's writer: for each image and its occlusion maps (:func:`zfnet.analysis.occlusion.images.occlude_images`),
``occlusion_<name>.png``: (a) input + occluder grid, (b) feature map, (c) deconv projection (when computed),
(d) P(correct class), (e) most probable class. matplotlib's object API (no pyplot state, no display needed);
every PNG written atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from zfnet.figures.tiles import save_figure

__all__ = ["plot_occlusion", "write_occlusion"]


def _display(image: torch.Tensor, mean=None) -> np.ndarray:
    """(3, H, W) mean-subtracted tensor -> (H, W, 3) floats in [0, 1] for imshow."""
    x = image.detach().double().cpu()
    if mean is not None:
        m = torch.as_tensor(mean, dtype=torch.float64)
        x = x + (m[:, None, None] if m.dim() == 1 else m)
        if x.max() > 1.5:  # 0-255 pixels
            x = x / 255.0
        x = x.clamp(0, 1)
    else:
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    return x.permute(1, 2, 0).numpy()


def _class_name(c: int, class_names) -> str:
    if class_names is None:
        return str(c)
    try:
        return str(class_names[c])
    except (IndexError, KeyError, TypeError):
        return str(c)


def _extent(maps: Mapping[str, Any]) -> list[float]:
    """imshow extent putting map entry (i, j) at the centre of square (ys[i], xs[j])."""
    size, stride = maps["size"], maps["stride"]
    ys, xs = maps["ys"].tolist(), maps["xs"].tolist()
    half = stride / 2 if len(xs) > 1 or len(ys) > 1 else size / 2
    return [xs[0] + size / 2 - half, xs[-1] + size / 2 + half, ys[-1] + size / 2 + half, ys[0] + size / 2 - half]


def plot_occlusion(image: torch.Tensor, maps: Mapping[str, Any], path, class_names=None, mean=None,
                   title: str | None = None) -> str:
    """Fig. 7-like figure for one image and its ``occlusion_maps`` result; returns the PNG path."""
    h, w = image.shape[-2:]
    size = maps["size"]
    target = maps["target"]
    un = maps["unoccluded"]
    has_proj = maps.get("projection") is not None
    panels = 5 if has_proj else 4
    fig = Figure(figsize=(3.2 * panels, 3.6), dpi=100)
    axes = fig.subplots(1, panels)
    ext = _extent(maps)
    disp = _display(image, mean)

    ax = axes[0]
    ax.imshow(disp)
    cy = [y + size / 2 for y in maps["ys"].tolist()]
    cx = [x + size / 2 for x in maps["xs"].tolist()]
    gx, gy = np.meshgrid(cx, cy)
    ax.scatter(gx.ravel(), gy.ravel(), s=3, c="white", edgecolors="black", linewidths=0.3)
    ys, xs = maps["ys"].tolist(), maps["xs"].tolist()
    y0, x0 = ys[len(ys) // 2], xs[len(xs) // 2]
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), size, size, facecolor="grey", edgecolor="white", alpha=0.85))
    ax.set_title(f"(a) input, true: {_class_name(target, class_names)}", fontsize=9)

    ax = axes[1]
    im = ax.imshow(maps["feature"].numpy(), extent=ext, cmap="viridis")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(f"(b) {maps['layer']} map {maps['channel']}: total activation", fontsize=9)

    k = 2
    if has_proj:
        ax = axes[k]
        proj = maps["projection"][0]
        ax.imshow(_display(proj))
        ax.set_title(f"(c) projection of map {maps['channel']}", fontsize=9)
        k += 1

    ax = axes[k]
    im = ax.imshow(maps["prob"].numpy(), extent=ext, cmap="jet")  # its own range: untrained maps are flat
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(f"(d) p({_class_name(target, class_names)}), unoccluded {un['prob']:.3f}", fontsize=9)

    ax = axes[k + 1]
    top = maps["top_class"].numpy()
    classes = list(np.unique(top))
    lut = {c: i for i, c in enumerate(classes)}
    cmap = "tab20" if len(classes) <= 20 else "nipy_spectral"
    ax.imshow(np.vectorize(lut.get)(top), extent=ext, cmap=cmap, vmin=0, vmax=max(1, len(classes) - 1),
              interpolation="nearest")
    cm = matplotlib.colormaps[cmap]
    handles = [
        Patch(color=cm(lut[c] / max(1, len(classes) - 1)),
              label=_class_name(int(c), class_names) + (" (true)" if int(c) == target else ""))
        for c in classes[:12]
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_title("(e) most probable class", fontsize=9)

    for ax in axes:
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def write_occlusion(images: torch.Tensor, maps: Sequence[Mapping[str, Any]], out_dir, names: Sequence[str],
                    class_names=None, mean=None) -> list[str]:
    """``out_dir/occlusion_<name>.png`` for each image (N, 3, H, W mean-subtracted) with its maps; ``mean``: (3,)
    or (3, H, W) added back for display (else each image is min-max scaled). Returns the PNG paths."""
    out = Path(out_dir)
    return [plot_occlusion(images[i], m, out / f"occlusion_{names[i]}.png", class_names=class_names, mean=mean,
                           title=f"image {names[i]}: square {m['size']}px, stride {m['stride']}px")
            for i, m in enumerate(maps)]
