"""DVC stage `overlap`: see ``run``."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from zfnet.parallel import capped
from zfnet.schema import validate
from zfnet.tracking import start_run


def run(cfg: DictConfig) -> dict:
    """§5.2: Caltech images that overlap ImageNet training images; the list the retrained model drops."""
    cfg = capped(validate(cfg), "overlap.workers")  # a wrong type or range fails here, naming the key
    from zfnet.transfer.overlap import run as find_overlap

    metrics = find_overlap(cfg)
    with start_run(cfg, "overlap") as tracker:
        tracker.summary({"overlap": metrics})
        import pandas as pd

        tracker.table("overlap_pairs", pd.read_csv(Path(cfg.overlap.out_dir) / "pairs.csv"))
    return metrics

