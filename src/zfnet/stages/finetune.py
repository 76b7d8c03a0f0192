"""DVC stage `finetune@<strategy>`: see ``run``."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from zfnet.parallel import capped
from zfnet.schema import validate
from zfnet.tracking import start_run

log = logging.getLogger(__name__)


def selected(cfg: DictConfig) -> list[str]:
    """``finetune.only``, else every composed strategy (``finetune/strategy=fc`` composes one)."""
    only = cfg.finetune.get("only")
    return [str(only)] if only else list(cfg.finetune.strategies)


def run(cfg: DictConfig) -> dict:
    """Fine-tune the source network under each selected strategy: metrics/finetune/<strategy>.json, the
    per-epoch history, models/finetune/<strategy>/model.pt and the figures of reports/finetune/<strategy>/."""
    cfg = capped(validate(cfg), "finetune.workers")  # a wrong type or range fails here, naming the key
    from zfnet.finetune.experiments import run as run_strategy
    from zfnet.io import write_json, write_text

    f = cfg.finetune
    results = {}
    for name in selected(cfg):
        result = run_strategy(cfg, name)
        history, figures = result.pop("history"), result.pop("figures")
        write_text(Path(f.metrics_dir) / f"{name}_history.csv", history.to_csv(index=False))
        seconds = result.pop("train_seconds")  # W&B and the log keep wall-clock time; the metrics file
        log.info("finetune %s: trained in %.1f s", name, seconds)  # does not (same inputs, same bytes)
        write_json(Path(f.metrics_dir) / f"{name}.json", result)
        with start_run(cfg, job_type="finetune", name=f"finetune/{name}") as tracker:
            tracker.summary({"finetune": {**result, "train_seconds": seconds}})
            tracker.table(f"finetune/{name}_history", history)
            for epoch_row in history[history.n_train == history.n_train.max()].to_dict("records"):
                tracker.log({f"finetune/{k}": v for k, v in epoch_row.items() if k not in ("strategy", "n_train")})
            for path in figures:
                tracker.image(f"finetune/{name}/{Path(path).parent.name}_{Path(path).stem}", Path(path))
        results[name] = result
    return results
