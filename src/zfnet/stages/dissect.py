"""DVC stage `dissect`: see ``run``."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from zfnet.paper import CONV_LAYERS
from zfnet.schema import validate
from zfnet.tracking import start_run


def _device(name):
    import torch

    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _model(c):
    """Our trained model (``dissect.checkpoint``), or a user's: ``dissect.model`` with ``dissect.weights``,
    loaded as the visualize stage loads them."""
    from zfnet.models.weights import build_model

    return build_model(c, 1000)


def _unit_maps(model, layers, images, idx, device) -> dict:
    """Per layer: (len(idx), units, h, w) activations for the probe images ``idx`` (one forward)."""
    import torch

    from zfnet.analysis.hooks import eval_mode, run

    with torch.no_grad(), eval_mode(model):
        outs, _ = run(model, images(list(idx)).to(device), list(layers), reduce=lambda _p, o: o.detach())
    return {l: (a.float().cpu()[:, :, None, None] if a.dim() == 2 else a.float().cpu()) for l, a in outs.items()}


def _mean(c):
    """``dissect.mean``: a file (our ``mean.npy``, read as (s, s, 3)), one or 3 values, or null."""
    mean = c.get("mean")
    if isinstance(mean, str):
        from zfnet.data.mean_image import read_mean_image

        m = read_mean_image(mean, "dissect.mean", or_else="give 3 values for a model of your own, or null")
        return m.permute(1, 2, 0).numpy()  # the file's (s, s, 3) layout: the probe loader averages it per channel
    return None if mean is None else [float(m) for m in (mean if hasattr(mean, "__len__") else [mean] * 3)]


def run(cfg: DictConfig) -> dict:
    """Dissect ``dissect.layers`` of the trained model (or ``dissect.model``/``weights``) over the probe set
    in ``dissect.probe_dir``: writes the per-layer table (``<tables_dir>/dissection.{csv,md}``), the top
    units of each layer (``dissection_top_units.{csv,md}``), every unit (``<figures_dir>/units.csv``,
    ``top_units.json``), the bar plot and the top units' figures (``<figures_dir>/*.png``), the counts
    (``dissect.metrics_path``), and the W&B tables and images. Returns the metrics."""
    cfg = validate(cfg)  # a wrong type or range fails here, naming the key, before any work
    import pandas as pd

    from zfnet.analysis.dissection import dissect, probe_loader
    from zfnet.data.broden import read_broden
    from zfnet.figures import dissection as figs
    from zfnet.figures.notes import write_notes
    from zfnet.io import write_json, write_text
    from zfnet.tables import write_table

    c = cfg.dissect
    probe_dir = Path(c.probe_dir)
    if not (probe_dir / "index.csv").is_file():
        raise FileNotFoundError(f"dissect.probe_dir: {probe_dir} has no index.csv (a Broden-layout folder: "
                                "index.csv, category.csv, label.csv, c_<category>.csv, images/)")
    mean = _mean(c)
    model, arch = _model(c)
    layers = [str(l) for l in (c.layers or CONV_LAYERS)]
    probe = read_broden(probe_dir, categories=list(c.categories) if c.categories else None)
    if c.max_images:
        probe.rows = probe.rows[: int(c.max_images)]
    size = int(c.input_size or cfg.data.crop)
    images = probe_loader(probe, size, mean=mean, std=list(c.std) if c.std else None, scale=float(c.scale))
    device = _device(c.get("device"))
    d = dissect(model, layers, probe, images, quantile=float(c.quantile), iou_threshold=float(c.iou_threshold),
                batch_size=int(c.batch_size), device=device, progress=True)

    figures_dir, tables_dir = Path(c.figures_dir), Path(c.tables_dir)
    table = figs.layer_table(d)
    write_table(table, tables_dir / "dissection")
    top = figs.top_units(d, int(c.top_units))
    cols = ["layer", "unit", "label", "category", "iou", "detector", "threshold"]
    top_table = top[cols].assign(iou=(100 * top["iou"]).round(1), threshold=top["threshold"].round(2))
    top_table = top_table.rename(columns={"iou": "IoU (%)"})  # the .md shows one decimal
    write_table(top_table, tables_dir / "dissection_top_units")
    figures_dir.mkdir(parents=True, exist_ok=True)
    write_text(figures_dir / "units.csv", d.units.to_csv(index=False))
    figures = [figs.plot_detectors(table, probe.categories, figures_dir / "detectors.png")]
    k = min(int(c.top_images), len(probe))
    tops = {layer: {int(u): list(d.top_images(layer, int(u), k)) for u in top.loc[top["layer"] == layer, "unit"]}
            for layer in layers}
    flat = sorted({i for t in tops.values() for v in t.values() for i in v})
    acts = _unit_maps(model.to(device), layers, images, flat, device)  # one forward for all the figures
    links = []
    for layer in layers:
        sel = top[top["layer"] == layer]
        maps = {u: acts[layer][[flat.index(i) for i in v], u] for u, v in tops[layer].items()}
        png = figs.plot_units(d, probe, layer, sel, maps, k, figures_dir / f"units_{layer.replace('/', '_')}.png")
        figures.append(png)
        links += [{"layer": layer, "unit": int(r.unit), "label": r.label, "category": r.category,
                   "iou": round(float(r.iou), 4), "figure": png.name} for r in sel.itertuples()]
    write_json(figures_dir / "top_units.json", {"model": arch, "units": links})
    title, text, order = figs.NOTES
    write_notes(figures_dir, title, text, order=order, sections=figs.top_units_sections(links))
    metrics = {"images": len(probe), "quantile": float(c.quantile), "iou_threshold": float(c.iou_threshold),
               "detectors": int(table["detectors"].sum()),
               "layers": {r["layer"]: {k_: int(v) for k_, v in r.items() if k_ != "layer"}
                          for r in table.to_dict("records")}}
    write_json(c.metrics_path, metrics)
    with start_run(cfg, job_type="dissect", name="dissect") as tracker:
        tracker.table("dissection", table)
        tracker.table("dissection_top_units", top_table)
        tracker.table("dissection_units", pd.DataFrame(d.units))
        for p in figures:
            tracker.image(f"dissection/{p.stem}", p)
        tracker.summary({f"dissection/{layer}/detectors": m["detectors"] for layer, m in metrics["layers"].items()})
    return metrics
