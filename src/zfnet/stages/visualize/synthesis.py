"""Visualize part ``synthesis`` (``visualize.synthesis``; null or ``enabled: false``: nothing): class
models, the deconv part's Fig. 2 maps synthesized beside their Fig. 2 rows, inversions layer by layer
(:func:`synthesize`; the figures: :mod:`zfnet.figures.synthesis`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from zfnet.figures.notes import write_notes
from zfnet.stages.visualize import fig2_rows

log = logging.getLogger(__name__)

NAME = "synthesis"
FOLDERS = ("synthesis",)
#: the folder's notes (:mod:`zfnet.figures.notes`): title, what the paper shows there, place in the report
NOTES = {"synthesis": (
    "Network-centric synthesis: class models, Fig. 2's maps, inversions",
    "Images synthesized from the network alone (not from the paper; Hadji & Wildes' survey of ConvNet understanding, §4.1.1). Class "
    "models: the image that maximizes each class's pre-softmax score from noise (Simonyan et al.). "
    "Per layer, each map of Fig. 2 in one row: its top activations projected and their image "
    "patches (dataset-centric), then the image synthesized to maximize its mean activation "
    "(network-centric). Inversions: validation images reconstructed from each layer's features "
    "(Mahendran & Vedaldi), with the normalized feature error reached.", 60)}

#: the visualize stage's ``synthesis:`` block (conf/visualize/default.yaml), with these defaults when a key is
#: missing
DEFAULTS = {
    "enabled": True, "steps": 24, "lr": 0.08, "l2": 1e-3, "tv": 1e-3, "jitter": 4, "rotate": 5.0,
    "blur_every": 16, "param": "fft", "classes": "all", "max_classes": 32, "maps_per_layer": 4,
    "inversion_images": 2, "inversion_steps": 32, "inversion_tv": 0.3, "layers": None, "seed": 0, "threads": 1,
}


def run(ctx) -> dict[str, list[str]]:
    if ctx.v.get("synthesis") is None:
        return {}
    from omegaconf import OmegaConf

    synthesis = OmegaConf.to_container(ctx.v.synthesis, resolve=True)
    if not {**DEFAULTS, **synthesis}["enabled"]:
        return {}  # the folder stays empty: no figures, no notes
    title, text, order = NOTES["synthesis"]
    write_notes(ctx.out / "synthesis", title, text, order=order)
    maps, rows = fig2_rows.read(ctx.out)
    first, _ = ctx.stream.head(max(1, int(synthesis.get("inversion_images") or 0)))  # the inversions' images
    return synthesize(ctx.model, first, ctx.out, synthesis, maps, class_names=ctx.classes, mean=ctx.mean,
                      fig2_rows=rows, progress=True)


def _num_classes(model: nn.Module, images: torch.Tensor) -> int:
    from zfnet.analysis import hooks

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


def synthesize(model: nn.Module, images: torch.Tensor, out_dir: str | Path, cfg_section: Mapping | None = None,
                     maps_by_layer: Mapping[str, Sequence[int]] | None = None, *, class_names: Sequence[str] | None = None,
                     mean: torch.Tensor | None = None, fig2_rows: Mapping[str, Sequence] | None = None,
                     progress: bool = False) -> dict[str, list[str]]:
    """Network-centric figures under ``out_dir/synthesis/``: ``{"synthesis": [PNG paths]}`` (``{}`` when
    ``enabled`` is false).

    * ``classes.png``: a class model per class (``classes``: ``"all"``, i.e. the model's outputs up to
      ``max_classes``; a count; or a list of class indices);
    * ``<layer>.png``: per layer, an image synthesized for each of the maps of ``maps_by_layer`` (pass the
      Fig. 2 maps, as :func:`fig2_rows.read` returns them; the first ``maps_per_layer`` of
      each are used; without it, the first ``maps_per_layer`` maps of each of ``layers`` or conv1..conv5),
      each beside its Fig. 2 row when ``fig2_rows`` (the rows :func:`fig2_rows.read` returns) is given; ``layers``: a subset;
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
    from zfnet.analysis.synthesis import threads

    with threads(c["threads"]):
        return _export(model, images, Path(out_dir) / "synthesis", c, maps_by_layer, class_names, mean, fig2_rows,
                       progress)


def _export(model, images, out, c, maps_by_layer, class_names, mean, fig2_rows, progress) -> dict[str, list[str]]:
    from zfnet.analysis.synthesis import Synthesis, channel, invert, logit, maximize
    from zfnet.figures.synthesis import class_models, inversion_rows, synthesized_maps
    from zfnet.figures.tiles import save_json
    from zfnet.paper import CONV_LAYERS

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
