"""DVC stage `transfer`: see ``run``."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from zfnet.parallel import capped
from zfnet.schema import validate
from zfnet.tracking import start_run


def run(cfg: DictConfig) -> dict:
    """§5.2–5.3: Tables 4–7 (Caltech-101/256, VOC 2012, one layer at a time) with the paper's beside ours."""
    cfg = capped(validate(cfg), "transfer.workers")  # a wrong type or range fails here, naming the key
    from zfnet.transfer.experiments import run as run_transfer

    result = run_transfer(cfg)
    with start_run(cfg, "transfer") as tracker:
        tracker.summary({"transfer": result["metrics"]})
        for stem, frame in result["tables"].items():
            tracker.table(stem, frame)
        tracker.table("transfer_by_fold_mean", result["summary"])  # every (dataset, method, layer, size): mean, std
        for path in result["figures"]:
            tracker.image(f"transfer/{Path(path).stem}", Path(path))
    return result["metrics"]

