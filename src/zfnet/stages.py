"""What each DVC stage does, as a pure ``run``-style function of the composed config.

``pipelines/<stage>.py`` is the Hydra entry point that calls one of these; tests call them directly.
Each one calls the library, writes its outputs where config says, and logs to W&B (job_type = stage).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from zfnet.tracking import start_run

log = logging.getLogger(__name__)


def demo_data(cfg: DictConfig) -> dict:
    from zfnet.data.demo import generate

    summary = generate(cfg.demo_data, cfg.demo_data.out_dir)
    with start_run(cfg, "demo_data") as tracker:
        tracker.summary({"demo_data": summary})
    return summary


def overlap_removed(cfg: DictConfig) -> list[str]:
    """ImageNet training images the overlap stage found in Caltech (§5.2), when ``overlap.remove``."""
    if not cfg.get("overlap") or not cfg.overlap.remove:
        return []
    removed = Path(cfg.overlap.out_dir) / "removed.txt"
    if not removed.is_file():
        raise FileNotFoundError(f"{removed}: missing; run the overlap stage first (dvc repro overlap), "
                                "or set overlap.remove=false to train on every ImageNet training image")
    return [line for line in removed.read_text().splitlines() if line.strip()]


def prepare(cfg: DictConfig) -> dict:
    from zfnet.data.prepare import prepare as run_prepare

    settings = OmegaConf.create({**OmegaConf.to_container(cfg.prepare, resolve=True), "size": cfg.data.resize,
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
        import pandas as pd

        tracker.table("rejected", pd.read_csv(out / "rejected.csv", dtype=str).fillna(""))
    return stats


def train(cfg: DictConfig, metrics_path: str | None = None, history_path: str | None = None) -> dict:
    """Train the configured model, or one Table 3 variant (``train.variant``; job_type ``ablation``)."""
    from zfnet.ablation import selected_variant, variant_config
    from zfnet.training.run import train as run_train

    variant = selected_variant(cfg)
    if variant is not None:
        cfg = variant_config(cfg, variant)
    return run_train(cfg, cfg.prepare.out_dir, metrics_path or cfg.train.metrics_path,
                     history_path or cfg.train.history_path,
                     job_type="ablation" if variant else "train", run_name=variant)


def table3(cfg: DictConfig) -> Path:
    """Aggregate the trained Table 3 variants into reports/tables/table3_ablation.{csv,md} and W&B."""
    from zfnet.ablation import table3 as build_table
    from zfnet.tables import write_table

    frame = build_table(cfg, cfg.table3.metrics_dir)
    csv_path, _ = write_table(frame, cfg.table3.table)
    with start_run(cfg, "table3") as tracker:
        tracker.table("table3_ablation", frame)
    return csv_path


def overlap(cfg: DictConfig) -> dict:
    """§5.2: Caltech images that overlap ImageNet training images; the list the retrained model drops."""
    from zfnet.transfer.overlap import run

    metrics = run(cfg)
    with start_run(cfg, "overlap") as tracker:
        tracker.summary({"overlap": metrics})
        import pandas as pd

        tracker.table("overlap_pairs", pd.read_csv(Path(cfg.overlap.out_dir) / "pairs.csv"))
    return metrics


def transfer(cfg: DictConfig) -> dict:
    """§5.2–5.3: Tables 4–7 (Caltech-101/256, VOC 2012, one layer at a time) with the paper's beside ours."""
    from zfnet.transfer.experiments import run

    result = run(cfg)
    with start_run(cfg, "transfer") as tracker:
        tracker.summary({"transfer": result["metrics"]})
        for stem, frame in result["tables"].items():
            tracker.table(stem, frame)
        tracker.table("transfer_by_fold_mean", result["summary"])  # every (dataset, method, layer, size): mean, std
        for path in result["figures"]:
            tracker.image(f"transfer/{Path(path).stem}", Path(path))
    return result["metrics"]


def visualize(cfg: DictConfig) -> dict:
    from zfnet.visualize import run

    figures = run(cfg)
    with start_run(cfg, "visualize") as tracker:
        for group, paths in figures.items():
            for p in paths:
                tracker.image(f"{group}/{Path(p).stem}", Path(p))
    return figures


def report(cfg: DictConfig) -> Path:
    """The static HTML report, and the W&B summary run (job_type ``summary``, in the pipeline run's group):
    every table, the key figures, the training metrics and the report folder, so one dashboard shows the
    whole reproduction."""
    from zfnet.report import log_summary, write_report

    path = write_report(cfg)
    with start_run(cfg, "summary", name="summary") as tracker:
        log_summary(tracker, cfg, path)
    return path
