"""Visualize part ``synthesis`` (``visualize.synthesis``; null or ``enabled: false``: nothing): class
models, the deconv part's Fig. 2 maps synthesized beside their Fig. 2 rows, inversions layer by layer
(:func:`zfnet.figures.synthesis.export_synthesis`)."""

from __future__ import annotations

from zfnet.stages.visualize import fig2_rows

NAME = "synthesis"
FOLDERS = ("synthesis",)


def run(ctx) -> dict[str, list[str]]:
    if ctx.v.get("synthesis") is None:
        return {}
    from omegaconf import OmegaConf

    from zfnet.figures.synthesis import export_synthesis

    synthesis = OmegaConf.to_container(ctx.v.synthesis, resolve=True)
    maps, rows = fig2_rows.read(ctx.out)
    first, _ = ctx.stream.head(max(1, int(synthesis.get("inversion_images") or 0)))  # the inversions' images
    return export_synthesis(ctx.model, first, ctx.out, synthesis, maps, class_names=ctx.classes, mean=ctx.mean,
                            fig2_rows=rows, progress=True)
