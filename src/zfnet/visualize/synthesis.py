"""Visualize part ``synthesis`` (``visualize.synthesis``; null or ``enabled: false``: nothing): class
models, the deconv part's Fig. 2 maps synthesized beside their Fig. 2 rows, inversions layer by layer
(:func:`zfnet.figures.synthesis.export_synthesis`)."""

from __future__ import annotations

from zfnet.figures.notes import write_notes
from zfnet.visualize import fig2_rows

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


def run(ctx) -> dict[str, list[str]]:
    if ctx.v.get("synthesis") is None:
        return {}
    from omegaconf import OmegaConf

    from zfnet.figures.synthesis import export_synthesis

    synthesis = OmegaConf.to_container(ctx.v.synthesis, resolve=True)
    title, text, order = NOTES["synthesis"]
    write_notes(ctx.out / "synthesis", title, text, order=order)
    maps, rows = fig2_rows.read(ctx.out)
    first, _ = ctx.stream.head(max(1, int(synthesis.get("inversion_images") or 0)))  # the inversions' images
    return export_synthesis(ctx.model, first, ctx.out, synthesis, maps, class_names=ctx.classes, mean=ctx.mean,
                            fig2_rows=rows, progress=True)
