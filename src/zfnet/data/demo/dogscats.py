"""Demo Kaggle "Dogs vs. Cats" (the fine-tuning set, :mod:`zfnet.finetune`; see :mod:`zfnet.data.demo`).

Layout under ``out_dir/dogscats/`` as Kaggle ships it: ``train/cat.<i>.jpg`` and ``train/dog.<i>.jpg``
(i = 0 .. train_per_class - 1; the label is the file name's prefix) and an unlabelled ``test1/<n>.jpg``
(n = 1 .. test). Ground truth of both (labels, boxes, drawn family and texture) goes to
``ground_truth/dogscats.csv`` with columns ``split, path, class, label, width, height, xmin, ymin, xmax,
ymax, family, texture`` (label: 0 cat, 1 dog, the sorted class names).

The two classes are new to the demo: shape families that no ImageNet demo class uses (they occur there
only as small distractors), drawn with the same scene renderer as every other single-object image and
with the same hue, so colour does not give the class away.
"""

from __future__ import annotations

from pathlib import Path

from zfnet.data.demo.render import _rng, _write_csv

# class -> (shape family, texture, hue); sorted names are the labels (cat 0, dog 1)
DOGSCATS_CLASSES = {"cat": ("rhombus", "speckle", 0.08), "dog": ("arrow", "rings", 0.08)}
GT_COLUMNS_DOGSCATS = ["split", "path", "class", "label", "width", "height", "xmin", "ymin", "xmax", "ymax",
                       "family", "texture"]
# RNG stream identifiers, beside zfnet.data.demo.classes' (1..9): never reorder
_DS_DOGSCATS_TRAIN, _DS_DOGSCATS_TEST, _DS_DOGSCATS_PLAN = 10, 11, 12


def plan(c: dict, root: Path) -> tuple[list[dict], list[dict]]:
    """Render tasks and their metadata (split, class, label), train first, then test1 in number order."""
    d = c["dogscats"]
    base = {"min_side": c["min_side"], "max_side": c["max_side"], "quality": c["jpeg_quality"]}
    names = sorted(DOGSCATS_CLASSES)
    tasks, meta = [], []
    (root / "train").mkdir(parents=True, exist_ok=True)
    for label, name in enumerate(names):
        for i in range(d["train_per_class"]):
            tasks.append(base | {"kind": "single", "classes": [DOGSCATS_CLASSES[name]],
                                 "rel": f"dogscats/train/{name}.{i}.jpg",
                                 "key": (c["seed"], _DS_DOGSCATS_TRAIN, label, i)})
            meta.append({"split": "train", "class": name, "label": label})
    (root / "test1").mkdir(parents=True, exist_ok=True)
    test_labels = _rng(c["seed"], _DS_DOGSCATS_PLAN).permutation([n % 2 for n in range(d["test"])])
    for n, label in enumerate(test_labels, start=1):
        name = names[int(label)]
        tasks.append(base | {"kind": "single", "classes": [DOGSCATS_CLASSES[name]], "rel": f"dogscats/test1/{n}.jpg",
                             "key": (c["seed"], _DS_DOGSCATS_TEST, n)})
        meta.append({"split": "test1", "class": name, "label": int(label)})
    return tasks, meta


def write_files(gt: Path, tasks: list[dict], meta: list[dict], results: list[dict]) -> dict:
    """ground_truth/dogscats.csv; returns the summary's entry."""
    rows = []
    for t, m, r in zip(tasks, meta, results):
        o = r["objects"][0]
        box = [str(v) for v in o["box"]] if o["box"] is not None else [""] * 4
        rows.append([m["split"], t["rel"], m["class"], m["label"], r["width"], r["height"], *box, o["family"],
                     o["texture"]])
    _write_csv(gt / "dogscats.csv", GT_COLUMNS_DOGSCATS, rows)
    return {"classes": len(DOGSCATS_CLASSES), "train": sum(m["split"] == "train" for m in meta),
            "test1": sum(m["split"] == "test1" for m in meta)}
