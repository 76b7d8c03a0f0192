"""DVC stage `visualize`: see ``run``."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from zfnet.schema import validate
from zfnet.tracking import start_run


def run(cfg: DictConfig) -> dict:
    cfg = validate(cfg)  # a wrong type or range fails here, naming the key, before any work
    from zfnet.visualize import run as run_visualize

    figures = run_visualize(cfg)
    with start_run(cfg, "visualize") as tracker:
        for group, paths in figures.items():
            for p in paths:
                tracker.image(f"{group}/{Path(p).stem}", Path(p))
    return figures

