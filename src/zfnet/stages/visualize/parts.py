"""Every visualize part, in the order ``pipelines/visualize.py`` runs them (the synthesis reads the deconv
part's Fig. 2), and :func:`run`, all of them in one process: the library entry for your own CNN."""

from __future__ import annotations

from zfnet.stages.visualize import correspondence, deconv, fig6, invariance, occlusion, synthesis
from zfnet.stages.visualize.context import run_parts

PARTS = (deconv, synthesis, occlusion, invariance, correspondence, fig6)


def run(cfg, names=None) -> dict[str, list[str]]:
    """The figures of the parts named (None: all), in :data:`PARTS` order."""
    wanted = [p for p in PARTS if names is None or p.NAME in names]
    unknown = sorted(set(names or ()) - {p.NAME for p in PARTS})
    if unknown:
        raise ValueError(f"visualize parts {unknown}: expected some of {[p.NAME for p in PARTS]}")
    return run_parts(cfg, wanted)
