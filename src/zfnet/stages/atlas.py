"""DVC stage `atlas`: the unit atlas of the model the visualize keys name (``visualize.checkpoint``, or a
user's ``visualize.model`` / ``weights`` / ``image_folder``), for ``atlas.layers`` over ``atlas.images``.

Per unit (feature map), streaming the images: statistics and its top-k (one pass), the top-k's image
patches, deconvnet projections and guided backprop (chunks of ``atlas.max_units`` units), and within the
budgets (counts: the first n maps of each layer) its synthesized image, its evolution over our training's
checkpoints and the accuracy lost when it alone is zeroed; its dissection concept when the dissect stage
dissected this model; links to the report's figures that show it. Writes ``atlas.out_dir`` (data, images,
pages; :mod:`zfnet.atlas.data` says what), logs one W&B table per layer and the folder as an artifact.
Every file is written atomically and the same inputs give the same bytes: an interrupted run is rerun.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from zfnet.schema import validate
from zfnet.tracking import model_artifact_name, start_run

log = logging.getLogger(__name__)


def atlas_layers(cfg, model) -> list[str]:
    """``atlas.layers``, or conv1..conv5 when the model has them; a model without them needs the key."""
    from zfnet.paper import CONV_LAYERS

    if cfg.atlas.layers:
        return [str(l) for l in cfg.atlas.layers]
    names = {n for n, _ in model.named_modules()}
    if set(CONV_LAYERS) <= names:
        return list(CONV_LAYERS)
    raise ValueError(f"atlas.layers: null means conv1..conv5 of our model, which "
                     f"visualize.model={cfg.visualize.model!r} lacks; name its layers, e.g. atlas.layers=[layer1,layer4] "
                     f"(module paths as model.named_modules() gives them)")


def _first(chans: int, n) -> list[int]:
    """A budget's units of a layer of ``chans`` maps: the first n (None: all)."""
    return list(range(chans if n is None else min(int(n), chans)))


def _coverage(a, layers, chans, images: int, evolution: bool, dissection: bool, syn_size: int) -> dict[str, str]:
    def budget(n, what):
        if n is not None and int(n) == 0:
            return "not computed (budget 0)"
        total = sum(chans.values())
        got = sum(len(_first(c, n)) for c in chans.values())
        which = "every unit" if got == total else f"the first {int(n)} maps of each layer"
        return f"{which} ({got} of {total}){what}"

    return {
        "projections": f"every unit ({sum(chans.values())}): top-{int(a.k)} over {images} images, patches, "
                       "deconvnet and guided backprop",
        "statistics": f"every unit: mean, max, fire rate, class selectivity over {images} images",
        "synthesis": budget(a.synthesis.units_per_layer, f", {int(a.synthesis.steps)} steps at {syn_size} px"),
        "evolution": budget(a.evolution.units_per_layer, ", the top projection at each saved checkpoint")
        if evolution else "not computed (no checkpoints of our training, or atlas.evolution.enabled false)",
        "ablation": budget(a.ablation.units_per_layer, f", accuracy drop on the first {int(a.ablation.images)} images"),
        "dissection": "every unit: best concept and IoU from the dissect stage" if dissection
        else "not computed (no dissection of this model and these layers)",
    }


def run(cfg: DictConfig) -> dict:
    """Build the atlas; returns ``{"layers": {layer: units}, "images": n, "seconds": {part: s}}``."""
    cfg = validate(cfg)  # a wrong type or range fails here, naming the key, before any work
    from zfnet.analysis.deconvnet.batched import project_top_units
    from zfnet.atlas import data, images as pics
    from zfnet.atlas.ablation import unit_ablation
    from zfnet.atlas.dissection import describes_same_model, unit_concepts
    from zfnet.atlas.explorer import write_explorer
    from zfnet.atlas.report_links import report_links
    from zfnet.atlas.statistics import unit_statistics
    from zfnet.atlas.wandb_tables import log_atlas
    from zfnet.progress import bar
    from zfnet.stages.visualize.context import Context

    a, v = cfg.atlas, cfg.visualize
    out = Path(a.out_dir)
    ctx = Context(cfg, images=a.images, batch_size=a.batch_size)
    model = ctx.model
    layers = atlas_layers(cfg, model)
    stream, names = ctx.stream, list(ctx.classes)
    stream.desc = "atlas: images"
    seconds: dict[str, float] = {}  # wall
    cpu: dict[str, float] = {}  # this process's CPU (every thread)
    clock = (time.perf_counter(), time.process_time())

    def lap(part: str, minus: tuple[float, float] = (0.0, 0.0)) -> None:
        """Close the part ``part``; ``minus``: (wall, CPU) seconds inside it booked to another part."""
        nonlocal clock
        now = (time.perf_counter(), time.process_time())
        seconds[part] = round(now[0] - clock[0] - minus[0], 2)
        cpu[part] = round(now[1] - clock[1] - minus[1], 2)
        clock = now

    # 1. statistics and top-k: one pass
    n_classes = max(len(names), 1)
    stats = unit_statistics(model, stream, layers, n_classes=n_classes, k=int(a.k))
    n_images = stream.size()
    chans = {l: int(stats[l].mean.shape[0]) for l in layers}
    imgs: dict[tuple[str, int], dict[str, str | None]] = {(l, c): {} for l in layers for c in range(chans[l])}
    windows: dict[tuple[str, int], list[list[int]]] = {}
    lap("statistics")

    # 2. patches, deconvnet and guided backprop of every unit's top-k, chunk by chunk
    mean = ctx.mean.mean(dim=(1, 2))  # patches are crops: a per-channel mean to display them
    writing = [0.0, 0.0]  # the pictures' encoding and writing, booked apart from the projections
    with bar(total=sum(chans.values()), desc="atlas: projections", unit="map") as progress:
        for chunk in project_top_units(model, stream, {l: stats[l].topk for l in layers}, lrn="identity", guided=True,
                                       max_units=int(a.max_units), batch_size=int(a.batch_size)):
            k = len(chunk.units["channel"]) // max(len(chunk.channels), 1)
            start = (time.perf_counter(), time.process_time())
            cut = pics.in_image(chunk.deconv)  # each frame's part inside the image (the rest is zero)
            for i, c in enumerate(chunk.channels):
                sl = range(i * k, (i + 1) * k)
                windows[(chunk.layer, c)] = [cut[j][0] for j in sl]
                for kind, tiles, how in (("deconv", chunk.deconv.values, "projection"), ("patches", chunk.patches, "patch"),
                                         ("guided", chunk.guided.values, "projection")):
                    rel = data.image_path(chunk.layer, c, kind)
                    pics.grid_png([tiles[j][cut[j][1]] for j in sl], how, out / rel, mean=mean if how == "patch" else None)
                    imgs[(chunk.layer, c)][kind] = rel
            writing[0] += time.perf_counter() - start[0]
            writing[1] += time.process_time() - start[1]
            progress.update(len(chunk.channels))
    lap("projections", minus=tuple(writing))
    seconds["pictures"], cpu["pictures"] = round(writing[0], 2), round(writing[1], 2)

    # 3. synthesis within its budget
    from omegaconf import OmegaConf

    from zfnet.atlas.synthesis import synthesize_units

    syn_size = int(a.synthesis.size or cfg.data.crop)
    syn_units = {l: _first(chans[l], a.synthesis.units_per_layer) for l in layers}
    vs = OmegaConf.to_container(v.synthesis, resolve=True)
    with bar(total=sum(map(len, syn_units.values())), desc="atlas: synthesis", unit="map") as progress:
        for layer, part, images in synthesize_units(model, syn_units, size=syn_size, steps=int(a.synthesis.steps),
                                                    options=vs, batch_size=int(a.batch_size), threads=vs.get("threads")):
            for c, image in zip(part, images):
                rel = data.image_path(layer, c, "synthesis")
                pics.synthesis_png(image, out / rel)
                imgs[(layer, c)]["synthesis"] = rel
            progress.update(len(part))
    lap("synthesis")

    # 4. evolution over our training's checkpoints
    checkpoints = None
    if a.evolution.enabled and not v.get("model"):
        from zfnet.stages.visualize.deconv import checkpoints_by_epoch

        checkpoints = checkpoints_by_epoch(Path(v.checkpoints_dir)) or None
    if checkpoints:
        from zfnet.atlas.evolution import unit_evolution

        evo_units = {l: _first(chans[l], a.evolution.units_per_layer) for l in layers}
        for layer, c, tiles in unit_evolution(checkpoints, stream, evo_units, max_units=int(a.max_units),
                                              batch_size=int(a.batch_size)):
            rel = data.image_path(layer, c, "evolution")
            pics.strip_png(tiles, out / rel)
            imgs[(layer, c)]["evolution"] = rel
    lap("evolution")

    # 5. unit ablation within its budget
    abl_units = {l: _first(chans[l], a.ablation.units_per_layer) for l in layers}
    drop: dict[str, dict[int, float]] = {}
    if any(abl_units.values()):
        drop = unit_ablation(model, stream, abl_units, images=int(a.ablation.images),
                             batch_units=int(a.batch_size)).drop
    lap("ablation")

    # 6. dissection concepts, report links, the records
    concepts = None
    dissect = cfg.get("dissect")
    if dissect is not None and describes_same_model(v, dissect):
        concepts = unit_concepts(Path(dissect.figures_dir) / "units.csv", layers)
    links = report_links(out, v.out_dir, dissect.figures_dir if dissect is not None else None)
    records: dict[str, list[dict]] = {}
    entries = []
    for layer in layers:
        s = stats[layer]
        recs = []
        for c in range(chans[layer]):
            top = [{"image_index": int(s.topk.image_index[c, j]), "label": int(s.top_labels[c, j]),
                    "value": float(s.topk.values[c, j]), "y": int(s.topk.y[c, j]), "x": int(s.topk.x[c, j]),
                    "window": windows[(layer, c)][j]}
                   for j in range(s.topk.values.shape[1]) if int(s.topk.image_index[c, j]) >= 0]
            concept, iou = (concepts or {}).get(layer, {}).get(c, (None, None))
            recs.append(data.unit_record(
                c, mean=s.mean[c], max=s.max[c], fire_rate=s.fire_rate[c], selectivity=s.selectivity[c], top=top,
                names=names, images=imgs[(layer, c)], concept=concept, iou=iou, ablation=drop.get(layer, {}).get(c),
                report_links=links.get((layer, c), ())))
        records[layer] = recs
        entries.append((layer, chans[layer], data.layer_json(out, layer, recs)))
    source = str(v.weights or v.model) if v.get("model") else str(v.checkpoint)
    data.atlas_json(out, arch=ctx.arch, source=source, images=n_images, k=min(int(a.k), n_images), layers=entries,
                    coverage=_coverage(a, layers, chans, n_images, bool(checkpoints), concepts is not None, syn_size),
                    report="../index.html")
    write_explorer(out)
    lap("records")

    # 7. W&B: a table per layer, the folder as an artifact (lineage: the train stage's model)
    with start_run(cfg, job_type="atlas", name="atlas") as tracker:
        own = not v.get("model")
        log_atlas(tracker, out, records, artifact=f"atlas-{ctx.arch}",
                  model_artifact=(model_artifact_name(cfg, "train"), "model", [Path(v.checkpoint)]) if own else None,
                  metadata={"layers": {l: chans[l] for l in layers}, "images": n_images})
        tracker.summary({**{f"atlas/seconds/{p}": t for p, t in seconds.items()},
                         **{f"atlas/cpu_seconds/{p}": t for p, t in cpu.items()},
                         **{f"atlas/{l}/units": chans[l] for l in layers}})
    log.info("atlas: %d units of %d layers over %d images in %s (wall; CPU)", sum(chans.values()), len(layers),
             n_images, ", ".join(f"{p} {t:.1f} s; {cpu[p]:.1f} s" for p, t in seconds.items()))
    return {"layers": chans, "images": n_images, "seconds": seconds, "cpu_seconds": cpu}
