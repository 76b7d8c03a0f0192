"""The W&B summary run that mirrors the report: every table, every figure, the unit atlas's tables, the
provenance, the reduced run's departures, the training metrics and the report folder."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from zfnet.report import collect


def figure_keys(group: str, paths: Sequence[Path]) -> dict[str, Path]:
    """``figures/<group>/<name>`` -> file: each file's path below the folder its group's files share, without
    suffix (unique when files of one group share a name in different sub-folders)."""
    root = Path(os.path.commonpath([str(Path(p).resolve().parent) for p in paths])) if paths else Path()
    return {f"figures/{group}/{Path(p).resolve().relative_to(root).with_suffix('').as_posix()}": Path(p) for p in paths}


def log_summary(tracker, cfg, report: Path | None = None) -> dict[str, list[str]]:
    """Log every table (``tables/<stem>``: Tables 1-7 and the claims, a ``wandb.Table`` with the CSV's
    columns, ours beside the paper's; ``atlas/<layer>``: the unit atlas, when there is one), every figure the report shows (``figures/<group>/<name>``, each
    group of ``all_figure_groups``, so figures of stages added later appear by themselves; raster images,
    SVGs travel in the artifact), the provenance (a table, and the W&B group, git revision and report path
    in the run summary, linking the dashboard back to the report), the reduced run's departures from the paper's
    setting (a ``reduced_run`` table; their count in the summary), the training metrics (run summary) and
    the report folder (artifact). Returns the keys logged, by kind."""
    from zfnet.reduced_run import departures
    from zfnet.tracking import group_name

    logged: dict[str, list[str]] = {"tables": [], "figures": []}
    for stem, (_path, frame) in collect.tables(cfg).items():
        tracker.table(f"tables/{stem}", frame)
        logged["tables"].append(f"tables/{stem}")
    atlas = cfg.get("atlas")
    if atlas is not None:  # the unit atlas: a table per layer (``atlas/<layer>``), when the atlas stage ran
        from zfnet.atlas.wandb_tables import log_tables, read_layers

        logged["tables"] += log_tables(tracker, atlas.out_dir, read_layers(atlas.out_dir))
    images = {}
    groups = collect.all_figure_groups(cfg)
    notes = collect.all_group_notes(cfg, list(groups))
    for group, paths in groups.items():
        raster = [p for p in paths if p.suffix.lower() != ".svg"]  # wandb.Image reads raster images; the
        for key, p in figure_keys(group, raster).items():            # report artifact holds the SVGs
            images[key] = (p, f"{notes[group]['title']}: {p.name}")
    tracker.images(images)  # one step: the dashboard's media panels need no step slider
    logged["figures"] = list(images)
    prov = collect.provenance(cfg)
    tracker.table("provenance", pd.DataFrame({"what": list(prov), "value": [str(v) for v in prov.values()]}))
    changes = departures(cfg)
    tracker.table("reduced_run", pd.DataFrame(changes or [{"what": "none: the paper's setting at full scale",
                                                           "key": "", "ours": "", "paper": ""}]).astype(str))
    links = {"W&B group": group_name(cfg), "git revision": prov.get("git revision", "unknown"),
             "reduced_run": len(changes)}
    if report is not None:
        links["report"] = str(Path(report).resolve())
    tracker.summary(links)
    metrics = collect.train_metrics(cfg)
    if metrics:
        tracker.summary({f"train/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
    if report is not None:  # the whole folder: the pages' relative links hold inside the artifact too
        tracker.artifact("report", "report", [Path(report).parent], metadata=links)
    return logged
