"""DVC stage `table3`: see ``run``."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from zfnet.schema import validate
from zfnet.tracking import start_run


def run(cfg: DictConfig) -> Path:
    """Aggregate the trained Table 3 variants into reports/tables/table3_ablation.{csv,md} and W&B."""
    cfg = validate(cfg)  # a wrong type or range fails here, naming the key, before any work
    from zfnet.ablation import table3 as build_table
    from zfnet.tables import write_table

    frame = build_table(cfg, cfg.table3.metrics_dir)
    csv_path, _ = write_table(frame, cfg.table3.table)
    with start_run(cfg, "table3") as tracker:
        tracker.table("table3_ablation", frame)
    return csv_path

