"""What a run's numbers are: which data they come from, and how the run departs from the paper's setting.

``datasets(cfg)`` lists every dataset root the run reads (config key, path, and whether it lies under the demo
generator's folder: synthetic). ``departures(cfg)`` lists every way the run differs from the paper's setting
(:mod:`zfnet.paper`): the configuration (epochs, width, input size, ...), the data actually prepared (classes,
training and validation images, from the prepare stage's ``classes.json`` / ``stats.json``) and the Table 3
rows trained. An empty list means a full-scale run of the paper's setting. The report shows both on top of
every page, so a 1-epoch, 10-class run on a real ImageNet folder is never read as a reproduction.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from zfnet.paper import IMAGENET_CLASSES, IMAGENET_TRAIN_IMAGES, IMAGENET_VAL_IMAGES, SETTING, TABLE3_ROWS

__all__ = ["DATASET_KEYS", "datasets", "departures", "on_demo_data"]

# (what, config key of its root): every dataset a pipeline run reads
DATASET_KEYS = (
    ("ImageNet 2012", "data.imagenet_root"),
    ("Caltech-101", "transfer.caltech101.root"),
    ("Caltech-256", "transfer.caltech256.root"),
    ("PASCAL VOC 2012", "transfer.voc2012.root"),
    ("Dogs vs. Cats", "finetune.root"),
    ("Broden probe set", "dissect.probe_dir"),
    ("landmarks (Table 1)", "visualize.ground_truth"),
)


def _get(cfg, key: str):
    return OmegaConf.select(cfg, key, default=None)


def _under(path, folder) -> bool:
    if not path or not folder:
        return False
    try:
        Path(str(path)).resolve().relative_to(Path(str(folder)).resolve())
        return True
    except ValueError:
        return False


def datasets(cfg) -> list[dict]:
    """``[{"what", "key", "path", "synthetic"}]`` for every dataset root set in ``cfg``."""
    demo = _get(cfg, "demo_data.out_dir")
    return [{"what": what, "key": key, "path": str(path), "synthetic": _under(path, demo)}
            for what, key in DATASET_KEYS if (path := _get(cfg, key))]


def on_demo_data(cfg) -> bool:
    """Whether the run's ImageNet is the demo generator's synthetic one."""
    return _under(_get(cfg, "data.imagenet_root"), _get(cfg, "demo_data.out_dir"))


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _same(ours, paper) -> bool:
    if isinstance(paper, list):
        ours = OmegaConf.to_container(ours) if OmegaConf.is_config(ours) else ours
        return isinstance(ours, (list, tuple)) and len(ours) == len(paper) and all(map(_same, ours, paper))
    if isinstance(paper, (int, float)) and not isinstance(paper, bool):
        try:
            return abs(float(ours) - float(paper)) < 1e-12
        except (TypeError, ValueError):
            return False
    return str(ours) == str(paper)


def departures(cfg, prepared_dir: str | Path | None = None) -> list[dict]:
    """``[{"what", "key", "ours", "paper"}]``: every difference from the paper's setting, in reading order."""
    out = []
    for ds in datasets(cfg):
        if ds["synthetic"]:
            out.append({"what": f"{ds['what']}: synthetic demo data", "key": ds["key"], "ours": ds["path"],
                        "paper": "the real dataset"})
    prepared = Path(prepared_dir or _get(cfg, "prepare.out_dir") or "data/prepared")
    classes = _read(prepared / "classes.json")
    if classes and len(classes.get("wnids", [])) != IMAGENET_CLASSES:
        out.append({"what": "ImageNet classes", "key": "data.imagenet_root", "ours": len(classes["wnids"]),
                    "paper": IMAGENET_CLASSES})
    stats = _read(prepared / "stats.json") or {}
    for split, paper in (("train", IMAGENET_TRAIN_IMAGES), ("val", IMAGENET_VAL_IMAGES)):
        written = (stats.get(split) or {}).get("written")
        # the paper's retrained model leaves out the few thousand Caltech copies: within 1% is full scale
        if written is not None and written < 0.99 * paper:
            out.append({"what": f"ImageNet {'training' if split == 'train' else 'validation'} images",
                        "key": "data.imagenet_root", "ours": written, "paper": paper})
    for key, (paper, what) in SETTING.items():
        ours = _get(cfg, key)
        if ours is not None and not _same(ours, paper):
            out.append({"what": what, "key": key, "ours": ours, "paper": paper})
    rows = list((_get(cfg, "ablation") or {}).keys())
    missing = [r for r in TABLE3_ROWS if r not in rows]
    if missing:
        out.append({"what": f"Table 3 rows: {len(rows)} of {len(TABLE3_ROWS)}", "key": "ablation",
                    "ours": ", ".join(rows) or "none", "paper": "all 12 (missing: " + ", ".join(missing) + ")"})
    return out
