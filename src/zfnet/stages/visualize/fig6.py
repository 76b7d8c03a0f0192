"""Visualize part ``fig6``: layer 1 and 2 of Krizhevsky's model and ours (the Table 3 baselines: same data,
epochs and width), and ours trained without RMS clipping; each model's conv2 search streams the same images.
Our pipeline's models only (``visualize.fig6``; a user's model or layers: nothing)."""

from __future__ import annotations

from pathlib import Path

from zfnet.figures.notes import write_notes
from zfnet.models.weights import load_model

NAME = "fig6"
FOLDERS = ("fig6",)
#: the folder's notes (:mod:`zfnet.figures.notes`): title, what the paper shows there, place in the report
NOTES = {"fig6": ("Fig. 6: Krizhevsky's model beside ours",
                  "Layer-1 filters and layer-2 projections of Krizhevsky's architecture, of ours, and of ours trained "
                  "without filter RMS clipping (the paper: dead filters and aliasing without the changes).", 30)}


def run(ctx) -> dict[str, list[str]]:
    v = ctx.v
    models = {label: load_model(p) for label, p in (("alexnet", v.fig6.alexnet), ("zfnet", v.fig6.zfnet),
                                                    ("zfnet, no RMS clipping", v.fig6.zfnet_noclip))
              if ctx.own and not v.get("model") and Path(p).is_file()}
    if not models:
        return {}
    from zfnet.analysis.deconvnet.top_projections import conv2_projections
    from zfnet.figures.deconv import fig6

    ctx.stream.desc = "visualize: conv2 search (Fig. 6)"
    results = {label: conv2_projections(model, ctx.stream, seed=int(ctx.cfg.seed)) for label, model in models.items()}
    title, text, order = NOTES["fig6"]
    write_notes(ctx.out / "fig6", title, text, order=order)
    return {"fig6": fig6(results, ctx.out)}
