"""Embedded demo data: layouts, counts, determinism, ground truth, duplicates, config errors."""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zfnet.data import demo

TINY = {
    "seed": 3,
    "min_side": 64,
    "max_side": 120,
    "jpeg_quality": 90,
    "workers": 2,
    "imagenet": {"num_classes": 3, "train_per_class": 4, "val_per_class": 2},
    "caltech101": {"num_classes": 2, "per_class": 3, "background": 2},
    "caltech256": {"num_classes": 2, "per_class": 3, "clutter": 2},
    "voc": {"num_images": 6},
    "duplicates": {"caltech101": 1, "caltech256": 1},
    "broden": {"images": 0, "size": 112},  # the probe set has its own tests (tests/test_dissection.py)
}


def _tiny(**over) -> dict:
    cfg = copy.deepcopy(TINY)
    for key, val in over.items():
        node = cfg
        parts = key.split("__")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = val
    return cfg


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    from omegaconf import OmegaConf  # the pipeline passes a Hydra DictConfig

    root = tmp_path_factory.mktemp("demo") / "data"
    summary = demo.generate(OmegaConf.create(TINY), root, progress=False)
    assert summary == json.loads((root / "summary.json").read_text())
    return root


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _hashes(root: Path) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _grey32(path: Path) -> np.ndarray:
    a = np.asarray(Image.open(path).convert("L").resize((32, 32), Image.BILINEAR), np.float64).ravel()
    a = a - a.mean()
    return a / (np.linalg.norm(a) + 1e-12)


# ---------------------------------------------------------------------------------------------
# layouts and counts
# ---------------------------------------------------------------------------------------------


def test_imagenet_layout(out):
    root = out / "ILSVRC2012"
    k, ntr, nva = 3, 4, 2
    mapping = (root / "LOC_synset_mapping.txt").read_text().splitlines()
    wnids = [line.split(" ", 1)[0] for line in mapping]
    assert len(wnids) == k and wnids == sorted(wnids)
    assert all(re.fullmatch(r"n\d{8} \S.*", line) for line in mapping)
    assert demo.FACE_WNID in wnids  # the face-like class is always present
    assert "n01440764 tench, Tinca tinca" in mapping
    assert sorted(p.name for p in (root / "train").iterdir()) == wnids
    for w in wnids:
        files = sorted((root / "train" / w).glob("*"))
        assert sorted(p.name for p in files) == sorted(f"{w}_{n}.JPEG" for n in range(1, ntr + 1))
    val = sorted((root / "val").glob("*"))
    assert [p.name for p in val] == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, k * nva + 1)]
    with open(root / "LOC_val_solution.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["ImageId", "PredictionString"]
    assert sorted(r[0] for r in rows[1:]) == [p.stem for p in val]
    for _, pred in rows[1:]:
        toks = pred.split()
        assert len(toks) % 5 == 0 and toks[0] in wnids and all(t.isdigit() for t in toks[1:5])
    dk = root / "ILSVRC2012_devkit_t12" / "data"
    assert len((dk / "ILSVRC2012_validation_ground_truth.txt").read_text().split()) == k * nva
    order = [line.split() for line in (dk / "synsets.txt").read_text().splitlines()]
    assert [int(i) for i, _ in order] == list(range(1, k + 1))
    assert sorted(w for _, w in order) == wnids
    assert [w for _, w in order] != wnids  # devkit order is not sorted wnid order


def test_caltech101_layout(out):
    root = out / "caltech101" / "101_ObjectCategories"
    dirs = sorted(p.name for p in root.iterdir())
    assert "BACKGROUND_Google" in dirs and len(dirs) == 2 + 1
    for d in dirs:
        n = 2 if d == "BACKGROUND_Google" else 3
        assert sorted(p.name for p in (root / d).iterdir()) == [f"image_{i:04d}.jpg" for i in range(1, n + 1)]
    real = set(demo._CALTECH101_ALL) | {"BACKGROUND_Google"}
    assert set(dirs) <= real


def test_caltech256_layout(out):
    root = out / "caltech256" / "256_ObjectCategories"
    dirs = sorted(p.name for p in root.iterdir())
    assert "257.clutter" in dirs and len(dirs) == 2 + 1
    for d in dirs:
        assert re.fullmatch(r"\d{3}\.[a-z0-9-]+", d)
        num = d.split(".")[0]
        n = 2 if d == "257.clutter" else 3
        assert sorted(p.name for p in (root / d).iterdir()) == [f"{num}_{i:04d}.jpg" for i in range(1, n + 1)]


def test_voc_layout(out):
    root = out / "VOC2012"
    ids = [f"2012_{i:06d}" for i in range(1, 7)]
    assert sorted(p.name for p in (root / "JPEGImages").iterdir()) == [f"{i}.jpg" for i in ids]
    assert sorted(p.name for p in (root / "Annotations").iterdir()) == [f"{i}.xml" for i in ids]
    main = root / "ImageSets" / "Main"
    expected = {f"{s}.txt" for s in ("train", "val", "trainval")}
    expected |= {f"{c}_{s}.txt" for c in demo.VOC_CLASSES for s in ("train", "val", "trainval")}
    assert {p.name for p in main.iterdir()} == expected
    assert len(demo.VOC_CLASSES) == 20


def test_ground_truth_files_and_summary(out):
    gt = out / "ground_truth"
    assert sorted(p.name for p in gt.iterdir()) == sorted(
        ["imagenet.csv", "caltech101.csv", "caltech256.csv", "duplicates.csv", "landmarks.csv"]
    )
    with open(gt / "imagenet.csv", newline="") as f:
        assert next(csv.reader(f)) == demo.GT_COLUMNS_IMAGENET
    for ds in ("caltech101", "caltech256"):
        with open(gt / f"{ds}.csv", newline="") as f:
            assert next(csv.reader(f)) == demo.GT_COLUMNS_CALTECH
    with open(gt / "duplicates.csv", newline="") as f:
        assert next(csv.reader(f)) == ["dataset", "caltech_path", "imagenet_path", "scale", "jpeg_quality"]
    inet = _read_csv(gt / "imagenet.csv")
    assert sum(r["split"] == "train" for r in inet) == 12 and sum(r["split"] == "val" for r in inet) == 6
    # landmarks.csv: every validation image's eyes and nose from imagenet.csv, as ImageId,part,x,y
    expected = [[Path(r["path"]).stem, part, r[f"{part}_x"], r[f"{part}_y"]] for r in inet
                if r["split"] == "val" and r["nose_x"] for part in ("right_eye", "left_eye", "nose")]
    with open(gt / "landmarks.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["ImageId", "part", "x", "y"] and rows[1:] == expected and expected
    for row in inet:
        assert (out / row["path"]).is_file()
    s = json.loads((out / "summary.json").read_text())
    assert s["imagenet"] == {"classes": 3, "train": 12, "val": 6}
    assert s["caltech101"] == {"classes": 2, "images": 6, "background": 2, "duplicates": 1}
    assert s["caltech256"] == {"classes": 2, "images": 6, "clutter": 2, "duplicates": 1}
    assert s["voc"]["images"] == 6 and s["voc"]["train"] + s["voc"]["val"] == 6
    files = [p for p in out.rglob("*") if p.is_file() and p.name != "summary.json"]
    assert s["files"] == len(files) and s["bytes"] == sum(p.stat().st_size for p in files)
    assert s["images"] == 12 + 6 + 8 + 8 + 6
    assert not list(out.parent.glob("*.tmp-*")) and not list(out.parent.glob("*.old-*"))


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------


def test_images_are_jpegs_with_varied_sides(out):
    dup = {r["caltech_path"] for r in _read_csv(out / "ground_truth" / "duplicates.csv")}
    paths = [p for ext in ("*.JPEG", "*.jpg") for p in out.rglob(ext)]
    assert len(paths) == 12 + 6 + 8 + 8 + 6
    ratios = set()
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            w, h = im.size
        if str(p.relative_to(out)) in dup:
            continue
        assert 64 <= w <= 120 and 64 <= h <= 120, p
        ratios.add(round(w / h, 3))
    assert len(ratios) > 5


def test_deterministic_and_independent_of_workers(out, tmp_path, monkeypatch):
    monkeypatch.setattr(demo.render, "_POOL_MIN_TASKS", 0)  # force the process pool on the tiny set
    again = tmp_path / "again"
    demo.generate(_tiny(workers=2), again, progress=False)
    assert _hashes(again) == _hashes(out)
    other = tmp_path / "other"
    demo.generate(_tiny(seed=4, workers=1), other, progress=False)
    h_other = _hashes(other)
    assert h_other.keys() == _hashes(out).keys()
    assert h_other["ILSVRC2012/val/ILSVRC2012_val_00000001.JPEG"] != _hashes(out)[
        "ILSVRC2012/val/ILSVRC2012_val_00000001.JPEG"
    ]


def test_rerun_replaces_atomically(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    cfg = _tiny(imagenet={"num_classes": 2, "train_per_class": 1, "val_per_class": 1},
                caltech101={"num_classes": 1, "per_class": 1, "background": 0},
                caltech256={"num_classes": 1, "per_class": 1, "clutter": 0},
                voc={"num_images": 2}, duplicates={"caltech101": 0, "caltech256": 0})  # fmt: skip
    dead = tmp_path / "data.tmp-4999999"  # left by a killed run (no such pid)
    dead.mkdir()
    (dead / "half.jpg").write_bytes(b"")
    demo.generate(cfg, target, progress=True)
    assert not (target / "stale.txt").exists()
    assert (target / "summary.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# ---------------------------------------------------------------------------------------------
# ground truth
# ---------------------------------------------------------------------------------------------


def test_boxes_inside_images(out):
    for name in ("imagenet", "caltech101", "caltech256"):
        for r in _read_csv(out / "ground_truth" / f"{name}.csv"):
            w, h = int(r["width"]), int(r["height"])
            with Image.open(out / r["path"]) as im:
                assert im.size == (w, h)
            if r.get("label") == "-1":
                assert r["xmin"] == "" and r["family"] == ""
                continue
            x0, y0, x1, y1 = (int(r[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            assert 0 <= x0 <= x1 <= w - 1 and 0 <= y0 <= y1 <= h - 1
            assert (x1 - x0 + 1) * (y1 - y0 + 1) >= 0.02 * w * h  # a real object, not a speck


def test_face_landmarks(out):
    rows = _read_csv(out / "ground_truth" / "imagenet.csv")
    rows += _read_csv(out / "ground_truth" / "caltech101.csv") + _read_csv(out / "ground_truth" / "caltech256.csv")
    faces = [r for r in rows if r["family"] == "face"]
    assert any(r.get("wnid") == demo.FACE_WNID for r in faces)
    assert all(r.get("wnid") in (None, demo.FACE_WNID) for r in faces)
    for r in rows:
        has = r["nose_x"] != ""
        assert has == (r["family"] == "face"), r["path"]
        if not has:
            continue
        x0, y0, x1, y1 = (int(r[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        pts = {k: (float(r[f"{k}_x"]), float(r[f"{k}_y"])) for k in ("left_eye", "right_eye", "nose")}
        for x, y in pts.values():
            assert x0 <= x < x1 + 1 and y0 <= y < y1 + 1
        assert pts["left_eye"][1] < pts["nose"][1] and pts["right_eye"][1] < pts["nose"][1]
        assert pts["right_eye"][0] < pts["nose"][0] < pts["left_eye"][0]  # subject's right = image left


def test_val_labels_agree(out):
    root = out / "ILSVRC2012"
    dk = root / "ILSVRC2012_devkit_t12" / "data"
    id_to_wnid = dict(line.split() for line in (dk / "synsets.txt").read_text().splitlines())
    gt_ids = (dk / "ILSVRC2012_validation_ground_truth.txt").read_text().split()
    with open(root / "LOC_val_solution.csv", newline="") as f:
        sol = {r["ImageId"]: r["PredictionString"].split()[0] for r in csv.DictReader(f)}
    truth = {
        Path(r["path"]).stem: r["wnid"] for r in _read_csv(out / "ground_truth" / "imagenet.csv") if r["split"] == "val"
    }
    assert len(gt_ids) == len(sol) == len(truth) == 6
    for i, gid in enumerate(gt_ids, start=1):
        image_id = f"ILSVRC2012_val_{i:08d}"
        assert id_to_wnid[gid] == sol[image_id] == truth[image_id]
    wnids = [line.split()[0] for line in (root / "LOC_synset_mapping.txt").read_text().splitlines()]
    counts = {w: list(sol.values()).count(w) for w in wnids}
    assert set(counts.values()) == {2}


def test_voc_annotations_and_imagesets(out):
    root = out / "VOC2012"
    objects: dict[str, list[tuple[str, bool]]] = {}
    for xml in sorted((root / "Annotations").glob("*.xml")):
        ann = ET.parse(xml).getroot()
        assert ann.tag == "annotation"
        assert ann.findtext("filename") == f"{xml.stem}.jpg"
        w, h, d = (int(ann.find("size").findtext(k)) for k in ("width", "height", "depth"))
        with Image.open(root / "JPEGImages" / f"{xml.stem}.jpg") as im:
            assert im.size == (w, h) and d == 3
        objs = ann.findall("object")
        assert 1 <= len(objs) <= 3
        names = [o.findtext("name") for o in objs]
        assert len(set(names)) == len(names) and set(names) <= set(demo.VOC_CLASSES)
        for o in objs:
            assert o.findtext("pose") in ("Unspecified", "Frontal")
            assert o.findtext("truncated") in ("0", "1") and o.findtext("difficult") in ("0", "1")
            bb = o.find("bndbox")
            x0, y0, x1, y1 = (int(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            assert 1 <= x0 <= x1 <= w and 1 <= y0 <= y1 <= h
        objects[xml.stem] = [(o.findtext("name"), o.findtext("difficult") == "1") for o in objs]
    main = root / "ImageSets" / "Main"
    split = {s: (main / f"{s}.txt").read_text().split() for s in ("train", "val", "trainval")}
    assert not set(split["train"]) & set(split["val"])
    assert sorted(split["train"] + split["val"]) == split["trainval"] == sorted(objects)
    for cls in demo.VOC_CLASSES:
        for s, ids in split.items():
            lines = (main / f"{cls}_{s}.txt").read_text().splitlines()
            assert [line.split()[0] for line in lines] == ids
            for line in lines:
                assert re.fullmatch(r"2012_\d{6} ( 1|-1| 0)", line), line
                vid, flag = line.split()
                present = [diff for name, diff in objects[vid] if name == cls]
                want = -1 if not present else (0 if all(present) else 1)
                assert int(flag) == want


def test_planted_duplicates(out):
    dups = _read_csv(out / "ground_truth" / "duplicates.csv")
    assert sorted(r["dataset"] for r in dups) == ["caltech101", "caltech256"]
    cal = {r["path"]: r for ds in ("caltech101", "caltech256") for r in _read_csv(out / "ground_truth" / f"{ds}.csv")}
    inet = {r["path"]: r for r in _read_csv(out / "ground_truth" / "imagenet.csv")}
    for d in dups:
        c, src = cal[d["caltech_path"]], inet[d["imagenet_path"]]
        assert src["split"] == "train" and c["duplicate_of"] == d["imagenet_path"] and c["label"] != "-1"
        scale = float(d["scale"])
        assert 0.6 <= scale <= 0.95 and int(d["jpeg_quality"]) != TINY["jpeg_quality"]
        assert int(c["width"]) == round(int(src["width"]) * scale)
        assert int(c["height"]) == round(int(src["height"]) * scale)
        assert float(_grey32(out / d["caltech_path"]) @ _grey32(out / d["imagenet_path"])) > 0.9
    assert sum(1 for r in cal.values() if r["duplicate_of"]) == len(dups)
    # unrelated pairs are not mistaken for duplicates
    dup_pairs = {(d["caltech_path"], d["imagenet_path"]) for d in dups}
    train = sorted(p for p, r in inet.items() if r["split"] == "train")
    rnd = random.Random(0)
    pairs = [(rnd.choice(sorted(cal)), rnd.choice(train)) for _ in range(40)]
    for a, b in pairs:
        if (a, b) in dup_pairs:
            continue
        assert float(_grey32(out / a) @ _grey32(out / b)) < 0.9, (a, b)


# ---------------------------------------------------------------------------------------------
# config errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"min_side": 200, "max_side": 100}, "min_side"),
        ({"imagenet__num_classes": 10_000}, "imagenet.num_classes"),
        ({"caltech101__num_classes": 10_000}, "caltech101.num_classes"),
        ({"caltech256__num_classes": 0}, "caltech256.num_classes"),
        ({"duplicates__caltech101": 7}, "duplicates.caltech101"),
        ({"duplicates__caltech256": -1}, "duplicates.caltech256"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
        ({"seed": "zero"}, "seed"),
        ({"voc": {}}, "voc.num_images"),
        ({"imagenet__train_per_class": 1.5}, "imagenet.train_per_class"),
    ],
)
def test_bad_config_names_the_key(tmp_path, over, key):
    target = tmp_path / "data"
    with pytest.raises(ValueError, match=re.escape(key)):
        demo.generate(_tiny(**over), target, progress=False)
    assert not target.exists() and not list(tmp_path.iterdir())


def test_too_many_duplicates_for_imagenet(tmp_path):
    cfg = _tiny(imagenet={"num_classes": 1, "train_per_class": 1, "val_per_class": 1})
    with pytest.raises(ValueError, match=r"duplicates\.caltech101 \+ duplicates\.caltech256"):
        demo.generate(cfg, tmp_path / "data", progress=False)


def test_config_keys_documented_and_in_the_schema():
    """conf/demo_data/demo.yaml holds the values, the schema the rules, the docstring what each key means."""
    from omegaconf import OmegaConf

    from zfnet.schema.data import DemoData

    conf = OmegaConf.to_container(OmegaConf.load(Path(__file__).resolve().parents[1] / "conf/demo_data/demo.yaml"))
    assert set(conf) == set(DemoData.model_fields)
    doc = demo.__doc__
    for key, val in conf.items():
        if key != "out_dir":
            assert re.search(rf"^    ({key}|min_side, {key})\b", doc, re.M), key
        if isinstance(val, dict):
            assert set(val) == set(DemoData.model_fields[key].annotation.model_fields), key
            assert "{" + ", ".join(val) + "}" in doc, key
    assert len(demo.IMAGENET_CLASSES) == len({w for w, *_ in demo.IMAGENET_CLASSES})


@pytest.mark.parametrize(("over", "line"), [
    ({"voc": {"num_images": 1}}, "demo_data.voc.num_images=1: expected an int in [2, 999999]"),  # passed the schema
    ({"workers": 0}, "demo_data.workers=0: expected an int in [1, 256]"),  # passed the generator
    ({"min_side": 16, "max_side": 100}, "demo_data.min_side=16: expected an int in [32, 4096]"),
])
def test_generator_and_stage_apply_the_same_rules(tmp_path, tiny_cfg, over, line):
    """The generator reads its settings through the config schema: a value the stage's ``validate`` lets
    through, the generator takes; both word a bad one the same."""
    from omegaconf import OmegaConf

    from zfnet.schema import ConfigError, validate

    with pytest.raises(ConfigError) as generated:
        demo.generate(_tiny(**over), tmp_path / "data", progress=False)
    assert generated.value.problems == [line]
    with pytest.raises(ConfigError) as validated:
        validate(OmegaConf.merge(tiny_cfg, {"demo_data": over}))
    assert validated.value.problems == [line]
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# the package split (issue 17): byte-identical to the single-module generator it replaced
# ---------------------------------------------------------------------------------------------

PRE_SPLIT_COMMIT = "c8a756e"  # last commit with src/zfnet/data/demo.py as one module


def _tiny_profile_cfg() -> dict:
    from omegaconf import OmegaConf

    root = Path(__file__).resolve().parents[1]
    base = OmegaConf.load(root / "conf/demo_data/demo.yaml")
    over = OmegaConf.load(root / "conf/profile/tiny.yaml").get("demo_data", {})
    cfg = OmegaConf.to_container(OmegaConf.merge(base, over))
    cfg.pop("out_dir", None)
    cfg["workers"] = 1  # in-process
    return cfg


def test_split_package_writes_the_same_bytes_as_the_single_module(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    old = tmp_path / "old_src"
    old.mkdir()
    for name in ("demo", "demo_shapes"):  # needs the git history (a shallow clone fails here, saying so)
        shown = subprocess.run(["git", "show", f"{PRE_SPLIT_COMMIT}:src/zfnet/data/{name}.py"], cwd=root,
                               capture_output=True, text=True)
        assert shown.returncode == 0, f"git history with {PRE_SPLIT_COMMIT} needed: {shown.stderr.strip()}"
        src = shown.stdout.replace("from zfnet.data import demo_shapes as S", "import demo_shapes as S")
        (old / f"{'old_demo' if name == 'demo' else name}.py").write_text(src)
    cfg = _tiny_profile_cfg()
    # the sets added after the split (probe set, Dogs vs. Cats) off: absent dogscats means none
    cfg_no_probe = ({k: v for k, v in cfg.items() if k not in ("broden", "dogscats")}
                    | {"broden": {"images": 0, "size": 112}})
    code = (
        "import json, sys, old_demo; "
        "old_demo.generate(json.loads(sys.argv[1]), sys.argv[2], progress=False)"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(old)}
    old_cfg = {k: v for k, v in cfg.items() if k != "broden"}
    subprocess.run([sys.executable, "-c", code, json.dumps(old_cfg), str(tmp_path / "before")], env=env, check=True)
    demo.generate(cfg_no_probe, tmp_path / "after", progress=False)
    before = {k: v for k, v in _hashes(tmp_path / "before").items()}
    after = _hashes(tmp_path / "after")
    assert len(before) > 100
    # every file of the single module byte for byte; added since: Table 1's landmarks in the format a user
    # writes for real ImageNet (ground_truth/landmarks.csv), which the summary's file count and bytes include
    assert after.pop("ground_truth/landmarks.csv")
    changed = {k for k in before if after.get(k) != before[k]}
    assert set(after) == set(before) and changed == {"summary.json"}
    # with the probe set and Dogs vs. Cats on, every earlier file but summary.json keeps its bytes
    demo.generate(cfg | {"broden": {"images": 4, "size": 64}}, tmp_path / "with_probe", progress=False)
    with_probe = _hashes(tmp_path / "with_probe")
    changed = {k for k in before if with_probe.get(k) != before[k]}
    assert changed == {"summary.json"} and "ground_truth/landmarks.csv" in with_probe
    assert any(k.startswith("broden/") for k in with_probe)
    assert any(k.startswith("dogscats/train/") for k in with_probe) and "ground_truth/dogscats.csv" in with_probe
