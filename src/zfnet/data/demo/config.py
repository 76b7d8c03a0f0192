"""Demo-data config: defaults, typed and range-checked reading (see :mod:`zfnet.data.demo`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from zfnet.data.demo.classes import CALTECH101_CLASSES, CALTECH256_CLASSES, IMAGENET_CLASSES

DEFAULTS: dict = {
    "seed": 0,
    "min_side": 160,
    "max_side": 500,
    "jpeg_quality": 90,
    "workers": 2,
    "imagenet": {"num_classes": 10, "train_per_class": 100, "val_per_class": 20},
    "caltech101": {"num_classes": 8, "per_class": 40, "background": 20},
    "caltech256": {"num_classes": 8, "per_class": 40, "clutter": 20},
    "voc": {"num_images": 120},
    "duplicates": {"caltech101": 6, "caltech256": 6},
    "broden": {"images": 60, "size": 112},
    "dogscats": {"train_per_class": 60, "test": 40},
}

# --------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------


def _plain(x):
    if isinstance(x, Mapping):
        return {str(k): _plain(x[k]) for k in x}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _get(cfg: dict, key: str):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"demo_data: missing config key {key!r}")
        node = node[part]
    return node


def _int(cfg: dict, key: str, lo: int, hi: int | None = None) -> int:
    val = _get(cfg, key)
    if isinstance(val, bool) or not isinstance(val, (int, np.integer)):
        raise ValueError(f"demo_data: {key} must be an integer, got {val!r}")
    val = int(val)
    if val < lo or (hi is not None and val > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"demo_data: {key} must be {rng}, got {val}")
    return val


def _config(cfg: Mapping) -> dict:
    raw = _plain(cfg)
    if not isinstance(raw, dict):
        raise ValueError("demo_data: config must be a mapping")
    c = {
        "seed": _int(raw, "seed", 0),
        "min_side": _int(raw, "min_side", 32, 4096),
        "max_side": _int(raw, "max_side", 32, 4096),
        "jpeg_quality": _int(raw, "jpeg_quality", 1, 100),
        "workers": _int({"workers": raw.get("workers", 2)}, "workers", 0, 256),
    }
    if c["min_side"] > c["max_side"]:
        raise ValueError(f"demo_data: min_side ({c['min_side']}) must be <= max_side ({c['max_side']})")
    c["imagenet"] = {
        "num_classes": _int(raw, "imagenet.num_classes", 1, len(IMAGENET_CLASSES)),
        "train_per_class": _int(raw, "imagenet.train_per_class", 1),
        "val_per_class": _int(raw, "imagenet.val_per_class", 0),
    }
    c["caltech101"] = {
        "num_classes": _int(raw, "caltech101.num_classes", 1, len(CALTECH101_CLASSES)),
        "per_class": _int(raw, "caltech101.per_class", 1, 9999),
        "background": _int(raw, "caltech101.background", 0, 9999),
    }
    c["caltech256"] = {
        "num_classes": _int(raw, "caltech256.num_classes", 1, len(CALTECH256_CLASSES)),
        "per_class": _int(raw, "caltech256.per_class", 1, 9999),
        "clutter": _int(raw, "caltech256.clutter", 0, 9999),
    }
    c["voc"] = {"num_images": _int(raw, "voc.num_images", 2, 999999)}
    c["duplicates"] = {}
    for ds in ("caltech101", "caltech256"):
        n = _int(raw, f"duplicates.{ds}", 0)
        avail = c[ds]["num_classes"] * c[ds]["per_class"]
        if n > avail:
            raise ValueError(
                f"demo_data: duplicates.{ds} ({n}) exceeds the {avail} {ds} object images "
                f"({ds}.num_classes x {ds}.per_class)"
            )
        c["duplicates"][ds] = n
    probe = {"broden": DEFAULTS["broden"] | dict(raw.get("broden") or {})}  # older configs: the defaults
    c["broden"] = {"images": _int(probe, "broden.images", 0, 99999), "size": _int(probe, "broden.size", 32, 1024)}
    cats = {"dogscats": dict(raw.get("dogscats") or {"train_per_class": 0, "test": 0})}  # absent: no such set
    c["dogscats"] = {"train_per_class": _int(cats, "dogscats.train_per_class", 0, 99999),
                     "test": _int(cats, "dogscats.test", 0, 99999)}
    n_train = c["imagenet"]["num_classes"] * c["imagenet"]["train_per_class"]
    n_dup = c["duplicates"]["caltech101"] + c["duplicates"]["caltech256"]
    if n_dup > n_train:
        raise ValueError(
            f"demo_data: duplicates.caltech101 + duplicates.caltech256 ({n_dup}) exceeds the "
            f"{n_train} ImageNet train images they are copied from"
        )
    return c

