"""DVC stage `train`: see ``run``."""

from __future__ import annotations

from omegaconf import DictConfig

from zfnet.schema import validate


def run(cfg: DictConfig, metrics_path: str | None = None, history_path: str | None = None) -> dict:
    """Train the configured model, or one Table 3 variant (``train.variant``; job_type ``ablation``)."""
    cfg = validate(cfg)  # a wrong type or range fails here, naming the key, before any work
    from zfnet.ablation import selected_variant, variant_config
    from zfnet.training.outputs import resolve_paths
    from zfnet.training.run import train as run_train

    variant = selected_variant(cfg)
    if variant is not None:
        cfg = variant_config(cfg, variant)
    # null paths (the defaults): this run's own Hydra output dir, never the folders dvc.yaml tracks
    out_dir, metrics_path, history_path = resolve_paths(cfg, metrics_path, history_path)
    if cfg.train.out_dir is None:
        cfg = cfg.copy()
        cfg.train.out_dir = str(out_dir)
    return run_train(cfg, cfg.prepare.out_dir, metrics_path, history_path,
                     job_type="ablation" if variant else "train", run_name=variant, epoch_images=epoch_images)


def epoch_images(model) -> dict:
    """What W&B shows after each epoch: the layer-1 filters (``filters/conv1``)."""
    from zfnet.figures.filters import filter_grid

    return {"filters/conv1": filter_grid(model.weight_layer("conv1").weight)}

