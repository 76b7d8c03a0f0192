"""DVC stage `demo_data`: see ``run``."""

from __future__ import annotations

from omegaconf import DictConfig

from zfnet.parallel import capped
from zfnet.schema import validate
from zfnet.tracking import start_run


def run(cfg: DictConfig) -> dict:
    cfg = capped(validate(cfg), "demo_data.workers")  # a wrong type or range fails here, naming the key
    from zfnet.data.demo import generate

    summary = generate(cfg.demo_data, cfg.demo_data.out_dir)
    with start_run(cfg, "demo_data") as tracker:
        tracker.summary({"demo_data": summary})
    return summary

