"""Table 3: architecture ablations, each variant trained from scratch.

Variants are the ``ablation.<id>`` entries of the config (one file per row in ``conf/ablation/``);
``variant_config`` applies one to a config, ``table3`` gathers the trained variants' metrics into the
paper's table with the paper's numbers beside ours.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf


def selected_variant(cfg: DictConfig) -> str | None:
    """``train.variant``, or the single entry of ``ablation`` when one was chosen (``ablation=<id>``)."""
    variant = cfg.train.get("variant")
    rows = cfg.get("ablation") or {}
    if variant is None and len(rows) == 1:
        variant = next(iter(rows))
    if variant is not None and variant not in rows:
        raise KeyError(f"train.variant={variant!r} is not a Table 3 row; known: {sorted(rows)}")
    return variant


def variant_config(cfg: DictConfig, variant: str) -> DictConfig:
    """A copy of ``cfg`` whose model carries the variant's overrides (other model keys: as configured)."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    OmegaConf.set_struct(out, False)
    out.model = OmegaConf.merge(out.model, cfg.ablation[variant].model)
    return out


def metrics_file(metrics_dir: str | Path, variant: str) -> Path | None:
    """``<metrics_dir>/<variant>.json`` (dvc.yaml's layout), else the ``<job>/metrics.json`` of a Hydra sweep
    dir (``+sweep=ablation``) whose run record names the variant; None when the variant has none."""
    path = Path(metrics_dir) / f"{variant}.json"
    if path.is_file():
        return path
    found = []
    for job in sorted(Path(metrics_dir).glob("*/metrics.json")):
        try:
            run = json.loads(job.read_text()).get("run") or {}
        except (OSError, ValueError, AttributeError):
            continue
        if run.get("variant") == variant:
            found.append(job)
    if len(found) > 1:
        raise ValueError(f"{metrics_dir}: {len(found)} jobs trained Table 3 row {variant!r} ({', '.join(map(str, found))}); "
                         "aggregate a sweep with one job per row")
    return found[0] if found else None


def table3(cfg: DictConfig, metrics_dir: str | Path) -> pd.DataFrame:
    """One row per Table 3 variant (paper order); ours where its metrics exist, the paper's beside."""
    rows = []
    for variant, spec in cfg.ablation.items():
        path = metrics_file(metrics_dir, variant)
        m = json.loads(path.read_text()) if path is not None else None
        pct = (lambda k: round(100 * m[k], 1)) if m else (lambda k: None)
        rows.append({
            "variant": variant, "model": spec.base, "row": spec.row,
            "train top-1 (ours)": pct("train_top1_error"), "val top-1 (ours)": pct("val_top1_error"),
            "val top-5 (ours)": pct("val_top5_error"),
            "train top-1 (paper)": spec.paper.train_top1, "val top-1 (paper)": spec.paper.val_top1,
            "val top-5 (paper)": spec.paper.val_top5,
        })
    return pd.DataFrame(rows)
