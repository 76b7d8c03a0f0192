"""Demo Caltech-101 / Caltech-256 (with BACKGROUND_Google / 257.clutter) and the ImageNet-train
near-duplicates planted in them (see :mod:`zfnet.data.demo`)."""

from __future__ import annotations

from pathlib import Path

from zfnet.data.demo.classes import (
    _DS_C101, _DS_C101_BG, _DS_C256, _DS_C256_BG, _DS_DUP, _DS_PLAN, CALTECH101_BACKGROUND, CALTECH101_CLASSES,
    CALTECH256_CLASSES, CALTECH256_CLUTTER, GT_COLUMNS_CALTECH, GT_COLUMNS_DUPLICATES,
)  # fmt: skip
from zfnet.data.demo.render import _box_landmark_cells, _rng, _write_csv


def _caltech_plan(c, ds: str, root: Path):
    cc = c[ds]
    if ds == "caltech101":
        table = CALTECH101_CLASSES[: cc["num_classes"]]
        folders = {name: name for name, *_ in table}
        bg_folder, n_bg, ds_code, bg_code = CALTECH101_BACKGROUND, cc["background"], _DS_C101, _DS_C101_BG
        full = [n for n, *_ in CALTECH101_CLASSES]

        def fname(folder, n):
            return f"image_{n:04d}.jpg"
    else:
        table = CALTECH256_CLASSES[: cc["num_classes"]]
        folders = {name: name for name, *_ in table}
        bg_folder, n_bg, ds_code, bg_code = CALTECH256_CLUTTER, cc["clutter"], _DS_C256, _DS_C256_BG
        full = [n for n, *_ in CALTECH256_CLASSES]

        def fname(folder, n):
            return f"{folder.split('.')[0]}_{n:04d}.jpg"

    sub = "101_ObjectCategories" if ds == "caltech101" else "256_ObjectCategories"
    label = {name: i for i, name in enumerate(sorted(folders))}
    base = {"min_side": c["min_side"], "max_side": c["max_side"], "quality": c["jpeg_quality"]}
    tasks, meta = [], []
    for name, fam, tex, hue in table:
        (root / sub / name).mkdir(parents=True, exist_ok=True)
        for n in range(1, cc["per_class"] + 1):
            rel = f"{ds}/{sub}/{name}/{fname(name, n)}"
            tasks.append(
                base | {"kind": "single", "classes": [(fam, tex, hue)], "rel": rel,
                        "key": (c["seed"], ds_code, full.index(name), n)}
            )  # fmt: skip
            meta.append({"class": name, "label": label[name], "slot": (name, n)})
    (root / sub / bg_folder).mkdir(parents=True, exist_ok=True)
    for n in range(1, n_bg + 1):
        rel = f"{ds}/{sub}/{bg_folder}/{fname(bg_folder, n)}"
        tasks.append(base | {"kind": "clutter", "classes": [], "rel": rel, "key": (c["seed"], bg_code, n)})
        meta.append({"class": bg_folder, "label": -1, "slot": None})
    return tasks, meta


def _plan_duplicates(c, caltech_meta: dict, imagenet_tasks, imagenet_meta):
    """Pick Caltech slots (<= ceil(d / classes) per class) and distinct ImageNet-train sources."""
    rng = _rng(c["seed"], _DS_PLAN, _DS_DUP)
    train_idx = [i for i, m in enumerate(imagenet_meta) if m["split"] == "train"]
    total = sum(c["duplicates"].values())
    sources = [train_idx[i] for i in rng.choice(len(train_idx), size=total, replace=False)]
    plans = {}
    for ds in ("caltech101", "caltech256"):
        d = c["duplicates"][ds]
        k, per = c[ds]["num_classes"], c[ds]["per_class"]
        counts = [0] * k
        order = rng.permutation(k)
        for j in range(d):
            counts[order[j % k]] += 1
        slots = []
        class_names = [m["class"] for m in caltech_meta[ds] if m["label"] >= 0]
        class_names = list(dict.fromkeys(class_names))  # table order
        for ci, n in enumerate(counts):
            for idx in sorted(rng.choice(per, size=n, replace=False)):
                slots.append((class_names[ci], int(idx) + 1))
        dup = []
        for slot in slots:
            src = sources.pop()
            scale = round(float(rng.uniform(0.6, 0.95)), 3)
            q = int(rng.integers(50, 96))
            while q == c["jpeg_quality"]:
                q = int(rng.integers(50, 96))
            dup.append({"slot": slot, "source": src, "scale": scale, "quality": q})
        plans[ds] = dup
    return plans


def write_files(c: dict, gt: Path, cal_tasks: dict, cal_meta: dict, inet_tasks, res: dict) -> dict:
    """ground_truth/{caltech101,caltech256,duplicates}.csv; returns the summary's Caltech entries."""
    dup_rows = []
    cal_summary = {}
    for ds in ("caltech101", "caltech256"):
        rows = []
        for i, (t, m) in enumerate(zip(cal_tasks[ds], cal_meta[ds])):
            r = res[ds][i]
            d = r.get("duplicate")
            if d is not None:
                st, sm = inet_tasks[d["source"]], res["imagenet"][d["source"]]
                so = sm["objects"][0]
                sx, sy = r["width"] / sm["width"], r["height"] / sm["height"]
                x0, y0, x1, y1 = so["box"]
                box = (
                    min(r["width"] - 1, int(round(x0 * sx))), min(r["height"] - 1, int(round(y0 * sy))),
                    min(r["width"] - 1, int(round(x1 * sx))), min(r["height"] - 1, int(round(y1 * sy))),
                )  # fmt: skip
                lm = None
                if so["landmarks"]:
                    lm = {k: (x * sx, y * sy) for k, (x, y) in so["landmarks"].items()}
                o = {"box": box, "landmarks": lm, "family": so["family"], "texture": so["texture"]}
                dup_rows.append([ds, t["rel"], st["rel"], f"{d['scale']:.3f}", d["quality"]])
                dup_of = st["rel"]
            else:
                o = r["objects"][0] if r["objects"] else None
                dup_of = ""
            rows.append(
                [t["rel"], m["class"], m["label"], r["width"], r["height"], *_box_landmark_cells(o),
                 o["family"] if o else "", o["texture"] if o else "", dup_of]
            )  # fmt: skip
        _write_csv(gt / f"{ds}.csv", GT_COLUMNS_CALTECH, rows)
        n_obj = sum(1 for m in cal_meta[ds] if m["label"] >= 0)
        bg_key = "background" if ds == "caltech101" else "clutter"
        cal_summary[ds] = {
            "classes": c[ds]["num_classes"],
            "images": n_obj,
            bg_key: len(cal_meta[ds]) - n_obj,
            "duplicates": c["duplicates"][ds],
        }
    _write_csv(gt / "duplicates.csv", GT_COLUMNS_DUPLICATES, dup_rows)
    return cal_summary
