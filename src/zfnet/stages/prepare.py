"""DVC stage `prepare`: see ``run``."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from zfnet.parallel import capped
from zfnet.schema import validate
from zfnet.tracking import mean_image_artifact, start_run

log = logging.getLogger(__name__)


def overlap_removed(cfg: DictConfig) -> list[str]:
    """ImageNet training images the overlap stage found in Caltech (§5.2), when ``overlap.remove``."""
    if not cfg.get("overlap") or not cfg.overlap.remove:
        return []
    removed = Path(cfg.overlap.out_dir) / "removed.txt"
    if not removed.is_file():
        raise FileNotFoundError(f"{removed}: missing; run the overlap stage first (dvc repro overlap), "
                                "or set overlap.remove=false to train on every ImageNet training image")
    return [line for line in removed.read_text().splitlines() if line.strip()]


def run(cfg: DictConfig) -> dict:
    cfg = validate(cfg)  # a wrong type or range fails here, naming the key, before any work
    from zfnet.data.prepare import prepare as run_prepare

    settings = OmegaConf.create({**OmegaConf.to_container(capped(cfg, "prepare.workers").prepare, resolve=True),
                                 "size": cfg.data.resize,
                                 "exclude": overlap_removed(cfg)})
    stats = run_prepare(settings, cfg.data.imagenet_root, cfg.prepare.out_dir)
    if stats.get("complete") is False:
        log.warning("prepared %s of %s shards; run the other shard indices, then any run finalizes",
                    stats["shards_done"], stats["shards_total"])
        return stats
    out = Path(cfg.prepare.out_dir)
    with start_run(cfg, "prepare") as tracker:
        tracker.summary({"stats": stats})
        tracker.image("mean_image", out / "mean.png", caption=f"per-pixel mean over {stats['train']['written']} training images")
        tracker.artifact(*mean_image_artifact(cfg, out))  # every training run uses it (W&B lineage)
        import pandas as pd

        tracker.table("rejected", pd.read_csv(out / "rejected.csv", dtype=str).fillna(""))
    return stats

