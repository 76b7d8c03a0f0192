"""DVC stages `visualize_<part>` (one part each) and `pipelines/visualize.py` (every part): every figure of the paper's analyses from the trained model, in parts.

Inputs are what the network sees: validation images prepared by the prepare stage (centre crop of
``data.crop``, minus the mean image), streamed (:mod:`zfnet.stages.visualize.stream`). Each part is one DVC stage
(``visualize_<part>``, its own deps, params and outputs: an interruption costs at most the part that was
running, and editing one analysis reruns only its part); ``pipelines/visualize.py`` runs them all in one
process (:mod:`zfnet.stages.visualize.parts`):

* ``deconv``: layer-1 filters, training curves, top-k deconvnet projections (Fig. 2) and their evolution over
  the saved checkpoints (Fig. 4); Fig. 2's maps and rows for the synthesis (:mod:`zfnet.stages.visualize.fig2_rows`);
* ``synthesis``: network-centric views (``visualize.synthesis``): class models, the Fig. 2 maps synthesized
  beside their Fig. 2 rows, inversions layer by layer;
* ``occlusion``: Fig. 7 and where its minima fall against the object boxes (``occlusion/boxes.json``);
* ``invariance``: Fig. 5, its curves also as CSV for ``dvc plots``;
* ``correspondence``: Table 1 on images of a class with part landmarks in its ground truth (the demo's
  face-like class), when that ground truth exists;
* ``fig6``: layer-1 filters and layer-2 projections of Krizhevsky's model and ours (Table 3's baselines).

Each part lists its figures in ``<visualize.out_dir>/index/<part>.json`` (:mod:`zfnet.figures.index`).
This file holds :func:`run` (the stages' entry: validate, run the parts, log to W&B) and imports nothing
else of the package: a part's stage imports only what that part runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from zfnet.schema import validate
from zfnet.tracking import start_run


def run(cfg: DictConfig, parts: Sequence) -> dict:
    """Run the visualize ``parts`` (modules of :mod:`zfnet.stages.visualize`; ``zfnet.stages.visualize.parts.PARTS``: all)
    and log their figures to one W&B run: job type ``visualize``, named after the part when there is one
    (``visualize/occlusion``)."""
    cfg = validate(cfg)  # a wrong type or range fails here, naming the key, before any work
    from zfnet.stages.visualize.context import run_parts

    figures = run_parts(cfg, parts)
    with start_run(cfg, "visualize", parts[0].NAME if len(parts) == 1 else None) as tracker:
        for group, paths in figures.items():
            for p in paths:
                tracker.image(f"{group}/{Path(p).stem}", Path(p))
    return figures
