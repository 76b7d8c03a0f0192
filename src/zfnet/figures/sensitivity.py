"""Figure writers for the sensitivity analyses: occlusion (Fig. 7), invariance (Fig. 5), correspondence
(Table 1), and ``export``, the one entry point the visualize stage calls.

Every PNG is written atomically (a temporary file in the same folder, then ``os.replace``), with
matplotlib's object API (no pyplot state, no display needed). Layout under ``out_dir``::

    occlusion/occlusion_<i>.png          one per image: (a) input + occluder grid, (b) feature map,
                                         (c) deconv projection (when available), (d) P(correct class),
                                         (e) most probable class
    invariance/invariance_<kind>.png     one per transformation: (a) distance at layer 1,
                                         (b) distance at layer 7, (c) P(true class), one line per image
    correspondence/correspondence.png    Delta per occlusion and layer, ours beside the paper's
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from zfnet.analysis import correspondence as corr
from zfnet.analysis.invariance import invariance_sweep
from zfnet.analysis.occlusion import occlusion_maps, projection
from zfnet.figures.tables import write_correspondence_table
from zfnet.io import atomic_path

__all__ = ["SensitivityExport", "export", "plot_correspondence", "plot_invariance", "plot_occlusion", "save_figure"]


class SensitivityExport(NamedTuple):
    figures: dict[str, list[str]]  # figure group -> PNG paths written
    tables: dict[str, pd.DataFrame]  # "occlusion" (summary), "invariance", "correspondence"
    maps: list[dict[str, Any]]  # occlusion_maps() result per image


def save_figure(fig: Figure, path) -> str:
    """Save ``fig`` as PNG at ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi, bbox_inches="tight")
    return str(path)


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


def plot_invariance(df: pd.DataFrame, out_dir, layers: Sequence[str] | None = None) -> list[str]:
    """One Fig. 5-like PNG per transformation in ``df`` (from ``invariance_sweep``); returns the paths."""
    dist_cols = [c for c in df.columns if c.startswith("distance_")]
    if layers is not None:
        dist_cols = [f"distance_{layer}" for layer in layers]
    xlabel = {"translate": "vertical translation (pixels)", "scale": "scale", "rotate": "rotation (degrees)"}
    paths = []
    for kind, sub in df.groupby("transform", sort=False):
        n = len(dist_cols) + 1
        fig = Figure(figsize=(4.2 * n, 3.6), dpi=100, layout="constrained")
        axes = fig.subplots(1, n)
        letters = "abcdefgh"
        for k, col in enumerate([*dist_cols, "p_true"]):
            ax = axes[k]
            for image, rows in sub.groupby("image", sort=False):
                rows = rows.sort_values("amount")
                ax.plot(rows["amount"], rows[col], marker=".", label=str(image))
            if col == "p_true":
                ax.set_ylabel("P(true class)")
                ax.set_ylim(-0.02, 1.02)
                ax.set_title(f"({letters[k]}) probability of the true label", fontsize=9)
            else:
                layer = col[len("distance_") :]
                ax.set_ylabel("Euclidean distance")
                ax.set_title(f"({letters[k]}) {layer}: distance to the original", fontsize=9)
            ax.set_xlabel(xlabel.get(kind, str(kind)))
            ax.grid(alpha=0.3)
        axes[-1].legend(title="image", fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        fig.suptitle(f"Invariance: {kind}", fontsize=10)
        paths.append(save_figure(fig, Path(out_dir) / f"invariance_{kind}.png"))
    return paths


def plot_correspondence(df: pd.DataFrame, path) -> str:
    """Bars of Delta per occlusion and layer (ours with std error bars, the paper's hatched)."""
    keys = [c[len("delta_") : -len("_mean")] for c in df.columns if c.startswith("delta_") and c.endswith("_mean")]
    fig = Figure(figsize=(3.2 + 1.6 * len(df), 3.4), dpi=100, layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(df))
    width = 0.8 / (2 * max(1, len(keys)))
    for k, key in enumerate(keys):
        off = (2 * k - len(keys)) * width + width / 2
        ax.bar(x + off, df[f"delta_{key}_mean"], width, yerr=df[f"delta_{key}_std"], capsize=2,
               label=f"{key} (ours)")
        if f"paper_delta_{key}_mean" in df:
            ax.bar(x + off + width, df[f"paper_delta_{key}_mean"], width, yerr=df[f"paper_delta_{key}_std"],
                   capsize=2, hatch="//", alpha=0.6, label=f"{key} (paper)")
    ax.set_xticks(x)
    ax.set_xticklabels(df["occlusion"])
    ax.set_ylabel("Δ (mean normalized Hamming distance)")
    ax.set_title("Correspondence (Table 1): lower = more consistent", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return save_figure(fig, path)


def _pick(d: Mapping[str, Any] | None, key: str, default):
    return default if d is None or d.get(key) is None else d[key]


def export(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels,
    out_dir,
    class_names=None,
    occlusion: Mapping[str, Any] | None = None,
    invariance: Mapping[str, Any] | None = None,
    correspondence_images: torch.Tensor | None = None,
    landmarks: Mapping[str, Any] | None = None,
    *,
    correspondence: Mapping[str, Any] | None = None,
    tables_dir=None,
    mean=None,
    image_names: Sequence[str] | None = None,
) -> SensitivityExport:
    """Run the sensitivity analyses and write their figures; the visualize stage's entry point.

    ``images`` (N, 3, H, W) mean-subtracted, ``labels`` (N,) true classes; ``class_names``: sequence or
    mapping class -> name (legends); ``mean``: (3,) or (3, H, W) mean to add back for display (else each
    image is min-max scaled).

    ``occlusion``: ``size`` (H // 7: 32 at 224), ``stride`` (size // 2), ``layer`` ("conv5"), ``fill`` (0),
    ``chunk`` (None), ``project`` (True: uses the deconvnet when it exists), ``max_images`` (all).
    ``invariance``: ``transforms`` (None: Fig. 5's ranges), ``layers`` (conv1, fc7), ``chunk`` (32),
    ``max_images`` (5, as the paper). ``correspondence_images`` (M, 3, H, W) with ``landmarks`` (part ->
    (M, 2) x, y): Table 1 with options ``correspondence`` (``size``, ``repeats`` 5, ``seed`` 0, ``jitter``,
    ``layers`` (conv5, fc7), ``boxes``); written to ``tables_dir`` as ``table1_correspondence.csv/.md``
    when given. Either analysis is skipped when its dict is ``False``.

    Returns ``SensitivityExport(figures, tables, maps)``: figure group ("occlusion", "invariance",
    "correspondence") -> PNG paths, DataFrames by analysis, and the occlusion maps per image.
    """
    out = Path(out_dir)
    if images.dim() != 4:
        raise ValueError(f"images: expected (N, 3, H, W), got {tuple(images.shape)}")
    labels = torch.as_tensor(labels).long().flatten()
    if labels.numel() != images.shape[0]:
        raise ValueError(f"labels: expected {images.shape[0]} labels, got {labels.numel()}")
    names = list(image_names) if image_names is not None else [f"{i:03d}" for i in range(images.shape[0])]
    h = images.shape[-2]
    figures: dict[str, list[str]] = {}
    tables: dict[str, pd.DataFrame] = {}
    maps_out: list[dict[str, Any]] = []

    if occlusion is not False:
        size = int(_pick(occlusion, "size", max(1, h // 7)))
        stride = int(_pick(occlusion, "stride", max(1, size // 2)))
        n_img = int(_pick(occlusion, "max_images", images.shape[0]))
        project = bool(_pick(occlusion, "project", True))
        paths, rows = [], []
        for i in range(min(n_img, images.shape[0])):
            kwargs = dict(layer=_pick(occlusion, "layer", "conv5"), fill=_pick(occlusion, "fill", 0.0),
                          chunk=_pick(occlusion, "chunk", None))
            maps = occlusion_maps(model, images[i], int(labels[i]), size, stride, **kwargs)
            if project:
                try:
                    maps["projection"] = projection(model, images[i], maps["layer"], maps["channel"])
                except Exception as exc:  # a deconvnet that rejects this model: the figure without (c)
                    warnings.warn(f"occlusion figure {names[i]}: no deconv projection ({exc})", RuntimeWarning,
                                  stacklevel=2)
            maps_out.append(maps)
            title = f"image {names[i]}: square {size}px, stride {stride}px"
            paths.append(plot_occlusion(images[i], maps, out / "occlusion" / f"occlusion_{names[i]}.png",
                                        class_names=class_names, mean=mean, title=title))
            un = maps["unoccluded"]
            rows.append({
                "image": names[i], "label": int(labels[i]), "channel": maps["channel"],
                "feature_unoccluded": un["feature"], "feature_min": float(maps["feature"].min()),
                "p_true_unoccluded": un["prob"], "p_true_min": float(maps["prob"].min()),
                "top_class_unoccluded": un["top_class"],
                "fraction_top_is_true": float((maps["top_class"] == int(labels[i])).double().mean()),
                "size": size, "stride": stride,
            })
        figures["occlusion"] = paths
        tables["occlusion"] = pd.DataFrame(rows)

    if invariance is not False:
        n_img = int(_pick(invariance, "max_images", 5))
        sel = slice(0, min(n_img, images.shape[0]))
        df = invariance_sweep(
            model, images[sel], labels[sel], transforms=_pick(invariance, "transforms", None),
            layers=tuple(_pick(invariance, "layers", ("conv1", "fc7"))), chunk=int(_pick(invariance, "chunk", 32)),
            image_ids=names[sel],
        )
        tables["invariance"] = df
        figures["invariance"] = plot_invariance(df, out / "invariance")

    if correspondence_images is not None and landmarks and correspondence is not False:
        df = corr.correspondence_table(
            model, correspondence_images, landmarks,
            layers=tuple(_pick(correspondence, "layers", ("conv5", "fc7"))),
            size=_pick(correspondence, "size", None), repeats=int(_pick(correspondence, "repeats", 5)),
            seed=int(_pick(correspondence, "seed", 0)), jitter=_pick(correspondence, "jitter", None),
            boxes=_pick(correspondence, "boxes", None),
        )
        tables["correspondence"] = df
        figures["correspondence"] = [plot_correspondence(df, out / "correspondence" / "correspondence.png")]
        if tables_dir is not None:
            write_correspondence_table(df, tables_dir)
    return SensitivityExport(figures, tables, maps_out)

