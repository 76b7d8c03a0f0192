"""DVC stage `report`: see ``run``."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from zfnet.schema import validate
from zfnet.tracking import start_run


def run(cfg: DictConfig) -> Path:
    """The static HTML report, and the W&B summary run (job_type ``summary``, in the pipeline run's group):
    every table, the key figures, the training metrics and the report folder, so one dashboard shows the
    whole reproduction."""
    cfg = validate(cfg)  # a wrong type or range fails here, naming the key, before any work
    from zfnet.report import log_summary, write_report

    path = write_report(cfg)
    with start_run(cfg, "summary", name="summary") as tracker:
        log_summary(tracker, cfg, path)
    return path

