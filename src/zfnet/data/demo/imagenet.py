"""Demo ILSVRC2012: class-folder train set, flat val set with its three label forms (see
:mod:`zfnet.data.demo`)."""

from __future__ import annotations

from pathlib import Path

from zfnet.data.demo.classes import (
    _DS_IMAGENET_TRAIN, _DS_IMAGENET_VAL, _DS_PLAN, _IMAGENET_NAMES, GT_COLUMNS_IMAGENET, IMAGENET_CLASSES,
)  # fmt: skip
from zfnet.data.demo.render import _box_landmark_cells, _rng, _write_csv


def _imagenet_plan(c, root: Path):
    k = c["imagenet"]["num_classes"]
    table = IMAGENET_CLASSES[:k]
    wnids = sorted(w for w, *_ in table)
    label = {w: i for i, w in enumerate(wnids)}
    tasks, meta = [], []
    base = {"min_side": c["min_side"], "max_side": c["max_side"], "quality": c["jpeg_quality"]}
    for wnid, fam, tex, hue in table:
        (root / "train" / wnid).mkdir(parents=True, exist_ok=True)
        for n in range(1, c["imagenet"]["train_per_class"] + 1):
            rel = f"ILSVRC2012/train/{wnid}/{wnid}_{n}.JPEG"
            tasks.append(
                base | {"kind": "single", "classes": [(fam, tex, hue)], "rel": rel,
                        "key": (c["seed"], _DS_IMAGENET_TRAIN, int(wnid[1:]), n)}
            )  # fmt: skip
            meta.append({"split": "train", "wnid": wnid, "label": label[wnid]})
    (root / "val").mkdir(parents=True, exist_ok=True)
    order = [w for w in wnids for _ in range(c["imagenet"]["val_per_class"])]
    perm = _rng(c["seed"], _DS_PLAN, _DS_IMAGENET_VAL).permutation(len(order))
    spec = {w: (f, t, h) for w, f, t, h in table}
    for i, j in enumerate(perm, start=1):
        wnid = order[j]
        rel = f"ILSVRC2012/val/ILSVRC2012_val_{i:08d}.JPEG"
        tasks.append(
            base | {"kind": "single", "classes": [spec[wnid]], "rel": rel,
                    "key": (c["seed"], _DS_IMAGENET_VAL, i)}
        )  # fmt: skip
        meta.append({"split": "val", "wnid": wnid, "label": label[wnid]})
    return tasks, meta, wnids


def write_files(c: dict, inet_root: Path, gt: Path, inet_tasks, inet_meta, wnids, res: dict) -> None:
    """ground_truth/imagenet.csv, ground_truth/landmarks.csv (the validation images' part landmarks in the
    format a user gives for real ImageNet), LOC_val_solution.csv, LOC_synset_mapping.txt and the devkit files."""
    rows, val_rows, landmark_rows = [], [], []
    for i, (t, m) in enumerate(zip(inet_tasks, inet_meta)):
        r = res[i]
        o = r["objects"][0]
        rows.append(
            [m["split"], t["rel"], m["wnid"], m["label"], r["width"], r["height"],
             *_box_landmark_cells(o), o["family"], o["texture"]]
        )  # fmt: skip
        if m["split"] == "val":
            x0, y0, x1, y1 = o["box"]
            val_rows.append([Path(t["rel"]).stem, f"{m['wnid']} {x0} {y0} {x1} {y1}"])
            cells = dict(zip(GT_COLUMNS_IMAGENET, rows[-1]))
            for part in ("right_eye", "left_eye", "nose"):  # Table 1's row order
                if cells[f"{part}_x"] != "":
                    landmark_rows.append([Path(t["rel"]).stem, part, cells[f"{part}_x"], cells[f"{part}_y"]])
    _write_csv(gt / "imagenet.csv", GT_COLUMNS_IMAGENET, rows)
    _write_csv(gt / "landmarks.csv", ["ImageId", "part", "x", "y"], landmark_rows)
    _write_csv(inet_root / "LOC_val_solution.csv", ["ImageId", "PredictionString"], sorted(val_rows))
    with open(inet_root / "LOC_synset_mapping.txt", "w", encoding="utf-8", newline="\n") as f:
        for w in wnids:
            f.write(f"{w} {_IMAGENET_NAMES[w]}\n")
    devkit_order = list(wnids)
    perm = _rng(c["seed"], _DS_PLAN, 77).permutation(len(devkit_order))
    devkit_order = [devkit_order[p] for p in perm]
    if len(devkit_order) > 1 and devkit_order == sorted(devkit_order):
        devkit_order = devkit_order[::-1]  # the devkit order must not be sorted wnid order
    ilsvrc_id = {w: i for i, w in enumerate(devkit_order, start=1)}
    dk = inet_root / "ILSVRC2012_devkit_t12" / "data"
    dk.mkdir(parents=True)
    with open(dk / "synsets.txt", "w", encoding="utf-8", newline="\n") as f:
        for w in devkit_order:
            f.write(f"{ilsvrc_id[w]} {w}\n")
    with open(dk / "ILSVRC2012_validation_ground_truth.txt", "w", encoding="utf-8", newline="\n") as f:
        for m in inet_meta:
            if m["split"] == "val":  # val tasks are in image-number order
                f.write(f"{ilsvrc_id[m['wnid']]}\n")

