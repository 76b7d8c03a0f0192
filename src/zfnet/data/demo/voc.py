"""Demo PASCAL VOC 2012: JPEGImages, Annotations (XML, 1-based boxes), ImageSets/Main split and
per-class lists (see :mod:`zfnet.data.demo`)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from zfnet.data.demo import shapes as S
from zfnet.data.demo.classes import _DS_PLAN, _DS_VOC, VOC_CLASSES, VOC_TABLE
from zfnet.data.demo.render import _rng


def plan(c: dict, voc_root: Path) -> tuple[list[str], list[dict]]:
    """Create the folders; return the image ids and their drawing tasks."""
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc_root / sub).mkdir(parents=True, exist_ok=True)
    voc_classes = [(name, *VOC_TABLE[name]) for name in VOC_CLASSES]
    voc_ids = [f"2012_{i:06d}" for i in range(1, c["voc"]["num_images"] + 1)]
    voc_tasks = [
        {"kind": "voc", "classes": voc_classes, "rel": f"VOC2012/JPEGImages/{vid}.jpg",
         "key": (c["seed"], _DS_VOC, i), "min_side": c["min_side"], "max_side": c["max_side"],
         "quality": c["jpeg_quality"]}
        for i, vid in enumerate(voc_ids, start=1)
    ]  # fmt: skip
    return voc_ids, voc_tasks


def _voc_xml(img_id: str, res: dict) -> str:
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = "VOC2012"
    ET.SubElement(ann, "filename").text = f"{img_id}.jpg"
    src = ET.SubElement(ann, "source")
    ET.SubElement(src, "database").text = "The VOC2012 Database"
    ET.SubElement(src, "annotation").text = "PASCAL VOC2012"
    ET.SubElement(src, "image").text = "zfnet synthetic demo"
    size = ET.SubElement(ann, "size")
    ET.SubElement(size, "width").text = str(res["width"])
    ET.SubElement(size, "height").text = str(res["height"])
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(ann, "segmented").text = "0"
    for o in res["objects"]:
        x0, y0, x1, y1 = o["box"]
        trunc = x0 == 0 or y0 == 0 or x1 == res["width"] - 1 or y1 == res["height"] - 1
        ob = ET.SubElement(ann, "object")
        ET.SubElement(ob, "name").text = o["name"]
        ET.SubElement(ob, "pose").text = "Frontal" if o["family"] == S.FACE else "Unspecified"
        ET.SubElement(ob, "truncated").text = str(int(trunc))
        ET.SubElement(ob, "difficult").text = str(int(o["difficult"]))
        bb = ET.SubElement(ob, "bndbox")
        for tag, val in zip(("xmin", "ymin", "xmax", "ymax"), (x0, y0, x1, y1)):
            ET.SubElement(bb, tag).text = str(val + 1)  # VOC: 1-based pixel coordinates
    ET.indent(ann, space="\t")
    return ET.tostring(ann, encoding="unicode") + "\n"


def write_files(c: dict, voc_root: Path, voc_ids: list[str], res: dict) -> tuple[int, dict]:
    """Annotations and ImageSets/Main; returns (number of objects, {split: ids})."""
    n_objects = 0
    for i, vid in enumerate(voc_ids):
        r = res[i]
        n_objects += len(r["objects"])
        (voc_root / "Annotations" / f"{vid}.xml").write_text(_voc_xml(vid, r), encoding="utf-8")
    perm = _rng(c["seed"], _DS_PLAN, _DS_VOC).permutation(len(voc_ids))
    n_train = (len(voc_ids) + 1) // 2
    splits = {
        "train": sorted(voc_ids[p] for p in perm[:n_train]),
        "val": sorted(voc_ids[p] for p in perm[n_train:]),
    }
    splits["trainval"] = sorted(splits["train"] + splits["val"])
    flags = {}
    for i, vid in enumerate(voc_ids):
        for o in res[i]["objects"]:
            cur = flags.setdefault((vid, o["name"]), 0)
            flags[(vid, o["name"])] = 1 if (cur == 1 or not o["difficult"]) else 0
    main = voc_root / "ImageSets" / "Main"
    for split, ids in splits.items():
        (main / f"{split}.txt").write_text("".join(f"{v}\n" for v in ids), encoding="utf-8")
        for cls in VOC_CLASSES:
            lines = "".join(f"{v} {flags.get((v, cls), -1):2d}\n" for v in ids)
            (main / f"{cls}_{split}.txt").write_text(lines, encoding="utf-8")
    return n_objects, splits
