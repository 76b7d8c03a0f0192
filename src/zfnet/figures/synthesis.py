"""Figure writers for network-centric synthesis (issue 16): class models, per-layer synthesized maps (the
same maps as Fig. 2's deconvnet grid, so the report shows dataset-centric and network-centric views side by
side) and inversions layer by layer. Entry point for the visualize stage: :func:`export_synthesis`. Files are
written atomically (temp file + rename).

Display: a synthesized image is shown stretched to its own mean ± 3 standard deviations (its pixels are in
mean-subtracted input space with no natural range); an inversion and its original are shown with the
dataset mean added back when ``mean`` is given (the same display as the original), else stretched.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from zfnet.analysis import hooks
from zfnet.analysis.synthesis import Synthesis, channel, invert, logit, maximize
from zfnet.paper import CONV_LAYERS
from zfnet.figures.tiles import _image_rgb, _tile, compose_table, save_json, save_png

log = logging.getLogger(__name__)

__all__ = ["DEFAULTS", "class_models", "export_synthesis", "inversion_rows", "synthesized_maps"]

#: the visualize stage's ``synthesis:`` block (conf/visualize/default.yaml), with these defaults when a key is
#: missing
DEFAULTS = {
    "enabled": True, "steps": 24, "lr": 0.08, "l2": 1e-3, "tv": 1e-3, "jitter": 4, "rotate": 5.0,
    "blur_every": 16, "param": "fft", "classes": "all", "max_classes": 32, "maps_per_layer": 4,
    "inversion_images": 2, "inversion_steps": 32, "inversion_tv": 0.3, "layers": None, "seed": 0, "threads": 1,
}


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


@contextlib.contextmanager
def _threads(n: int | None):
    """torch's intra-op threads set to ``n`` for the block (None: unchanged), restored after."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _num_classes(model: nn.Module, images: torch.Tensor) -> int:
    dtype, device = hooks.dtype_device(model)
    with torch.no_grad(), hooks.eval_mode(model):
        return int(model(images[:1].to(device, dtype)).shape[1])


def _classes(spec, n_out: int, cap: int) -> list[int]:
    """``classes``: ``"all"`` (the model's outputs, at most ``max_classes``), a count, or a list of indices."""
    if spec == "all":
        return list(range(min(n_out, cap)))
    if isinstance(spec, int) and not isinstance(spec, bool):
        return list(range(min(spec, n_out)))
    wanted = [int(k) for k in spec]
    bad = [k for k in wanted if not 0 <= k < n_out]
    if bad:
        raise ValueError(f"visualize.synthesis.classes: {bad} out of range: the model has {n_out} outputs")
    return wanted


def export_synthesis(model: nn.Module, images: torch.Tensor, out_dir: str | Path, cfg_section: Mapping | None = None,
                     maps_by_layer: Mapping[str, Sequence[int]] | None = None, *, class_names: Sequence[str] | None = None,
                     mean: torch.Tensor | None = None, fig2_rows: Mapping[str, Sequence] | None = None,
                     progress: bool = False) -> dict[str, list[str]]:
    """Network-centric figures under ``out_dir/synthesis/``: ``{"synthesis": [PNG paths]}`` (``{}`` when
    ``enabled`` is false).

    * ``classes.png``: a class model per class (``classes``: ``"all"``, i.e. the model's outputs up to
      ``max_classes``; a count; or a list of class indices);
    * ``<layer>.png``: per layer, an image synthesized for each of the maps of ``maps_by_layer`` (pass the
      Fig. 2 maps, ``export(...)["maps"]`` of :mod:`zfnet.figures.deconv`; the first ``maps_per_layer`` of
      each are used; without it, the first ``maps_per_layer`` maps of each of ``layers`` or conv1..conv5),
      each beside its Fig. 2 row when ``fig2_rows`` (``export(...)["rows"]``) is given; ``layers``: a subset;
    * ``inversion.png``: the first ``inversion_images`` of ``images`` reconstructed from every layer;
    * ``index.json``: objectives reached, maps, classes, threads (the time taken goes to the log).
    Class models and maps run as one batch (each objective's forward stops at its layer), inversions as
    another, on ``threads`` CPU threads (None: torch's setting; measured on the demo model on a busy 2-core
    machine: 13 s of CPU on 1 thread, 81 s on 2, where OpenMP's hand-offs between threads cost more than
    these small batches gain). ``cfg_section``: :data:`DEFAULTS` keys.
    """
    c = {**DEFAULTS, **{k: v for k, v in dict(cfg_section or {}).items() if v is not None or k == "threads"}}
    if not c["enabled"]:
        return {}
    with _threads(c["threads"]):
        return _export(model, images, Path(out_dir) / "synthesis", c, maps_by_layer, class_names, mean, fig2_rows,
                       progress)


def _export(model, images, out, c, maps_by_layer, class_names, mean, fig2_rows, progress) -> dict[str, list[str]]:
    start = time.perf_counter()
    size = tuple(images.shape[-2:])
    per_layer = int(c["maps_per_layer"])
    if maps_by_layer is None:
        layers = list(c["layers"] or [n for n in CONV_LAYERS if _has(model, n)])
        maps_by_layer = {l: list(range(per_layer)) for l in layers}
    elif c["layers"]:
        missing = [l for l in c["layers"] if l not in maps_by_layer]
        if missing:
            raise ValueError(f"visualize.synthesis.layers: {missing} are not among the Fig. 2 layers {list(maps_by_layer)}")
        maps_by_layer = {l: maps_by_layer[l] for l in c["layers"]}
    maps_by_layer = {l: [int(m) for m in ms][:per_layer] for l, ms in maps_by_layer.items()}
    n_out = _num_classes(model, images)
    classes = _classes(c["classes"], n_out, int(c["max_classes"]))
    named = class_names is not None and len(class_names) == n_out  # names of other classes than the outputs: indices
    names = [str(class_names[k]) if named else str(k) for k in classes]
    objs = [logit(k) for k in classes] + [channel(l, m) for l, ms in maps_by_layer.items() for m in ms]
    opts = dict(steps=int(c["steps"]), lr=float(c["lr"]), l2=float(c["l2"]), tv=float(c["tv"]), jitter=float(c["jitter"]),
                rotate=float(c["rotate"]), blur_every=int(c["blur_every"]), param=str(c["param"]), seed=int(c["seed"]))
    paths, index = [], {"classes": [], "maps": {}, "inversion": {}}
    if objs:
        res: Synthesis = maximize(model, objs, size=size, progress=progress, **opts)
        nc = len(classes)
        if nc:
            paths.append(str(class_models(res.images[:nc], names, out / "classes.png", classes=classes)))
            index["classes"] = [{"class": k, "name": n, "objective": float(v)}
                                for k, n, v in zip(classes, names, res.objective[:nc])]
        i = nc
        for layer, ms in maps_by_layer.items():
            rows = list(fig2_rows[layer])[: len(ms)] if fig2_rows is not None and layer in fig2_rows else None
            paths.append(str(synthesized_maps(res.images[i:i + len(ms)], layer, ms, out / f"{layer}.png", rows)))
            index["maps"][layer] = {"png": f"{layer}.png", "maps": [{"channel": m, "objective": float(v)}
                                                                    for m, v in zip(ms, res.objective[i:i + len(ms)])]}
            i += len(ms)
    k = min(int(c["inversion_images"]), len(images))
    inv_layers = list(maps_by_layer)
    inv_opts = dict(steps=int(c["inversion_steps"]), tv=float(c["inversion_tv"]), param=str(c["param"]),
                    decorrelate=str(c["param"]) == "fft", seed=int(c["seed"]))
    if k and inv_layers:
        inv = invert(model, images[:k], inv_layers, progress=progress, **inv_opts)
        err = -inv.objective
        paths.append(str(inversion_rows(images[:k], inv.images, inv_layers, out / "inversion.png", mean=mean, errors=err)))
        index["inversion"] = {"png": "inversion.png", "layers": inv_layers,
                              "feature_error": {l: [float(e) for e in err[:, j]] for j, l in enumerate(inv_layers)}}
    # the time taken goes to the log, not into index.json (a DVC output: same inputs, same bytes)
    log.info("synthesis: %d images in %.1f s on %d threads", len(paths), time.perf_counter() - start,
             torch.get_num_threads())
    index["threads"] = torch.get_num_threads()
    index["options"] = {**opts, **{f"inversion_{key}": val for key, val in inv_opts.items()}}
    save_json(index, out / "index.json")
    return {"synthesis": paths}


def _has(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False
