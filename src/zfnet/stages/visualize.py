"""DVC stages `visualize_<part>` (one part each) and `pipelines/visualize.py` (every part): see ``run``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from zfnet.schema import validate
from zfnet.tracking import start_run


def run(cfg: DictConfig, parts: Sequence) -> dict:
    """Run the visualize ``parts`` (modules of :mod:`zfnet.visualize`; ``zfnet.visualize.parts.PARTS``: all)
    and log their figures to one W&B run: job type ``visualize``, named after the part when there is one
    (``visualize/occlusion``)."""
    cfg = validate(cfg)  # a wrong type or range fails here, naming the key, before any work
    from zfnet.visualize.context import run_parts

    figures = run_parts(cfg, parts)
    with start_run(cfg, "visualize", parts[0].NAME if len(parts) == 1 else None) as tracker:
        for group, paths in figures.items():
            for p in paths:
                tracker.image(f"{group}/{Path(p).stem}", Path(p))
    return figures
