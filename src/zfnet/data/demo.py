"""Embedded demo data: deterministic synthetic ImageNet / Caltech-101 / Caltech-256 / VOC 2012.

:func:`generate` writes real JPEG files in the exact on-disk layouts of the real datasets, so the
adapters that read real data read these too. The same ``cfg`` always produces byte-identical files
(every image has its own RNG derived from ``seed`` + dataset + class + index).

Config (Hydra group ``conf/demo_data/demo.yaml``; keys not listed here, e.g. ``out_dir``, are ignored)::

    seed: 0
    min_side: 160          # image sides drawn uniformly in [min_side, max_side], independent w/h
    max_side: 500
    jpeg_quality: 90
    workers: 2             # optional; processes used for drawing (0 or 1: in-process)
    imagenet:  {num_classes: 10, train_per_class: 100, val_per_class: 20}
    caltech101: {num_classes: 8, per_class: 40, background: 20}   # + BACKGROUND_Google
    caltech256: {num_classes: 8, per_class: 40, clutter: 20}      # + 257.clutter
    voc: {num_images: 120}
    duplicates: {caltech101: 6, caltech256: 6}   # ImageNet-train copies planted in Caltech classes

Layout under ``out_dir``::

    ILSVRC2012/train/<wnid>/<wnid>_<n>.JPEG                 n = 1..train_per_class
    ILSVRC2012/val/ILSVRC2012_val_%08d.JPEG                 flat, numbered from 1, classes shuffled
    ILSVRC2012/LOC_synset_mapping.txt                       "<wnid> <names>", sorted by wnid
    ILSVRC2012/LOC_val_solution.csv                         ImageId,PredictionString ("wnid x0 y0 x1 y1")
    ILSVRC2012/ILSVRC2012_devkit_t12/data/synsets.txt       "<ILSVRC2012_ID> <wnid>" (devkit order;
                                                            stands in for meta.mat, NOT sorted by wnid)
    ILSVRC2012/ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt   one ID per val image
    caltech101/101_ObjectCategories/<class>/image_NNNN.jpg  incl. BACKGROUND_Google
    caltech256/256_ObjectCategories/NNN.name/NNN_NNNN.jpg   incl. 257.clutter
    VOC2012/JPEGImages/2012_NNNNNN.jpg, VOC2012/Annotations/2012_NNNNNN.xml
    VOC2012/ImageSets/Main/{train,val,trainval}.txt and <class>_{train,val,trainval}.txt
    ground_truth/{imagenet,caltech101,caltech256,duplicates}.csv     (evaluation / tests only)
    summary.json

Ground truth conventions:

* Boxes in ``ground_truth/*.csv`` and ``LOC_val_solution.csv`` are 0-based inclusive pixel indices
  (``0 <= xmin <= xmax <= width - 1``) of the pixels at least half covered by the object. VOC XML
  boxes are the same boxes in VOC's 1-based convention (``+1``, so ``1 <= xmin <= xmax <= width``).
* ``label`` is the index in sorted folder order: sorted wnids for ImageNet (= LOC_synset_mapping
  line order), Python-sorted (case-sensitive, so ``Faces`` sorts before ``accordion``) object class
  folders for Caltech, background / clutter images have label -1 and empty boxes.
* The face-like classes (ImageNet ``n02102040`` English springer, Caltech-101 ``Faces``, Caltech-256
  ``253.faces-easy-101``, VOC ``person``) carry landmarks ``left_eye_*, right_eye_*, nose_*`` in
  continuous pixel coordinates (floats; pixel column i covers [i, i + 1), so a landmark lies in
  pixel (floor(x), floor(y)) and inside its box means xmin <= x < xmax + 1). Left/right are the
  *subject's*: the right eye is on the image's left side (smaller x), as in the paper's dog-face
  correspondence study. Other classes leave these cells empty.
* CSV columns (header row, comma separated, empty cell = not applicable):
  ``imagenet.csv``: split (train/val), path (relative to out_dir), wnid, label, width, height, xmin,
  ymin, xmax, ymax, left_eye_x, left_eye_y, right_eye_x, right_eye_y, nose_x, nose_y, family, texture.
  ``caltech101.csv`` / ``caltech256.csv``: path, class (folder name), label, width, height, box,
  landmarks as above, family, texture, duplicate_of (ImageNet path of a planted duplicate, else
  empty; the box / landmarks / family of a duplicate are those of its source, rescaled).
  ``duplicates.csv``: dataset, caltech_path, imagenet_path, scale, jpeg_quality.
  ``family`` / ``texture`` name the drawn object (see :mod:`zfnet.data.demo_shapes`).
* Planted duplicates (``ground_truth/duplicates.csv``) are ImageNet-train images copied into Caltech
  class folders (replacing generated images there, so counts stay ``per_class``), resized by
  ``scale`` in [0.6, 0.95] and re-encoded at a different JPEG quality. Their sides are therefore
  ``round(scale * source side)`` and may fall below ``min_side``; every other image has sides in
  [min_side, max_side].
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from zfnet.data import demo_shapes as S

__all__ = ["generate", "DEFAULTS", "VOC_CLASSES", "FACE_WNID"]

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
}

# --------------------------------------------------------------------------------------------
# class tables: real names, with the demo's (shape family, texture, hue) for each class.
# Classes are taken in list order (first num_classes); the face-like class is always first.
# --------------------------------------------------------------------------------------------

FACE_WNID = "n02102040"

_IMAGENET_CURATED = [  # the Imagenette classes
    (FACE_WNID, "English springer, English springer spaniel", "face", "fur", 0.07),
    ("n01440764", "tench, Tinca tinca", "blob", "dots", 0.25),
    ("n02979186", "cassette player", "square", "grid", 0.6),
    ("n03000684", "chain saw, chainsaw", "cross", "stripes", 0.12),
    ("n03028079", "church, church building", "triangle", "checker", 0.0),
    ("n03394916", "French horn, horn", "ring", "rings", 0.14),
    ("n03417042", "garbage truck, dustcart", "hexagon", "stripes", 0.35),
    ("n03425413", "gas pump, gasoline pump, petrol pump, island dispenser", "crescent", "solid", 0.95),
    ("n03445777", "golf ball", "disc", "dots", 0.5),
    ("n03888257", "parachute, chute", "star", "split", 0.8),
]
_IMAGENET_EXTRA = [
    ("n01443537", "goldfish, Carassius auratus"),
    ("n01484850", "great white shark, white shark, man-eater, man-eating shark, Carcharodon carcharias"),
    ("n01491361", "tiger shark, Galeocerdo cuvieri"),
    ("n01494475", "hammerhead, hammerhead shark"),
    ("n01496331", "electric ray, crampfish, numbfish, torpedo"),
    ("n01498041", "stingray"),
    ("n01514668", "cock"),
    ("n01514859", "hen"),
    ("n01518878", "ostrich, Struthio camelus"),
    ("n02085620", "Chihuahua"),
    ("n02099601", "golden retriever"),
    ("n02108915", "French bulldog"),
    ("n03255030", "dumbbell"),
    ("n03272010", "electric guitar"),
    ("n03372029", "flute, transverse flute"),
    ("n03384352", "forklift"),
    ("n03388043", "fountain"),
    ("n03393912", "freight car"),
    ("n03400231", "frying pan, frypan, skillet"),
    ("n03443371", "goblet"),
    ("n03445924", "golfcart, golf cart"),
    ("n03447721", "gong, tam-tam"),
    ("n03452741", "grand piano, grand"),
]

_CALTECH101_CURATED = [
    ("Faces", "face", "fur", 0.07),
    ("soccer_ball", "disc", "checker", 0.6),
    ("starfish", "star", "dots", 0.05),
    ("stop_sign", "hexagon", "solid", 0.0),
    ("pyramid", "triangle", "stripes", 0.12),
    ("yin_yang", "crescent", "split", 0.7),
    ("watch", "ring", "grid", 0.55),
    ("accordion", "square", "stripes", 0.3),
    ("airplanes", "cross", "solid", 0.6),
    ("anchor", "arrow", "speckle", 0.65),
    ("ant", "blob", "checker", 0.02),
]
_CALTECH101_ALL = (
    "Faces Faces_easy Leopards Motorbikes accordion airplanes anchor ant barrel bass beaver binocular "
    "bonsai brain brontosaurus buddha butterfly camera cannon car_side ceiling_fan cellphone chair "
    "chandelier cougar_body cougar_face crab crayfish crocodile crocodile_head cup dalmatian dollar_bill "
    "dolphin dragonfly electric_guitar elephant emu euphonium ewer ferry flamingo flamingo_head garfield "
    "gerenuk gramophone grand_piano hawksbill headphone hedgehog helicopter ibis inline_skate joshua_tree "
    "kangaroo ketch lamp laptop llama lobster lotus mandolin mayfly menorah metronome minaret nautilus "
    "octopus okapi pagoda panda pigeon pizza platypus pyramid revolver rhino rooster saxophone schooner "
    "scissors scorpion sea_horse snoopy soccer_ball stapler starfish stegosaurus stop_sign strawberry "
    "sunflower tick trilobite umbrella watch water_lilly wheelchair wild_cat windsor_chair wrench yin_yang"
).split()
CALTECH101_BACKGROUND = "BACKGROUND_Google"

_CALTECH256_CURATED = [
    ("253.faces-easy-101", "face", "fur", 0.07),
    ("193.soccer-ball", "disc", "checker", 0.6),
    ("201.starfish-101", "star", "dots", 0.05),
    ("167.pyramid", "triangle", "stripes", 0.12),
    ("037.chess-board", "square", "checker", 0.1),
    ("177.saturn", "ring", "stripes", 0.1),
    ("054.diamond-ring", "rhombus", "solid", 0.55),
    ("069.fighter-jet", "arrow", "split", 0.6),
    ("043.coin", "disc", "rings", 0.12),
    ("095.hamburger", "crescent", "speckle", 0.08),
    ("226.traffic-light", "hexagon", "dots", 0.3),
]
_CALTECH256_ALL = (
    "001.ak47 002.american-flag 003.backpack 004.baseball-bat 005.baseball-glove 006.basketball-hoop "
    "007.bat 008.bathtub 009.bear 010.beer-mug 011.billiards 012.binoculars 013.birdbath 014.blimp "
    "015.bonsai-101 016.boom-box 017.bowling-ball 018.bowling-pin 019.boxing-glove 020.brain-101 "
    "021.breadmaker 022.buddha-101 023.bulldozer 024.butterfly 025.cactus 026.cake 027.calculator "
    "028.camel 029.cannon 030.canoe 031.car-tire 032.cartman 033.cd 034.centipede 035.cereal-box "
    "036.chandelier-101 037.chess-board 038.chimp 039.chopsticks 040.cockroach 041.coffee-mug 042.coffin "
    "043.coin 044.comet 045.computer-keyboard 046.computer-monitor 047.computer-mouse 048.conch "
    "049.cormorant 050.covered-wagon 051.cowboy-hat 052.crab-101 053.desk-globe 054.diamond-ring "
    "055.dice 056.dog 057.dolphin-101 058.doorknob 059.drinking-straw 060.duck 061.dumb-bell "
    "062.eiffel-tower 069.fighter-jet 095.hamburger 167.pyramid 177.saturn 193.soccer-ball "
    "201.starfish-101 226.traffic-light 253.faces-easy-101"
).split()
CALTECH256_CLUTTER = "257.clutter"

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip


def _auto_assign(names, curated):
    """Curated (name, family, texture, hue) first, then unused (family, texture) pairs for the rest."""
    combos = [
        (fam, S.TEXTURES[(fi + shift) % len(S.TEXTURES)])
        for shift in range(len(S.TEXTURES))
        for fi, fam in enumerate(S.FAMILIES)
    ]  # all len(FAMILIES) * len(TEXTURES) pairs, each once
    table = list(curated)
    used = {(f, t) for _, f, t, _ in curated}
    taken = {n for n, *_ in curated}
    free = [p for p in combos if p not in used]
    k = 0
    for name in names:
        if name in taken:
            continue
        if not free:  # more classes than pairs: reuse pairs (classes then differ by hue only)
            free = list(combos)
        fam, tex = free.pop(0)
        k += 1
        table.append((name, fam, tex, (k * 0.618034) % 1.0))
    return table


_IMAGENET_NAMES = {w: n for w, n, *_ in _IMAGENET_CURATED} | dict(_IMAGENET_EXTRA)
IMAGENET_CLASSES = _auto_assign(
    [w for w, _ in _IMAGENET_EXTRA], [(w, f, t, h) for w, _, f, t, h in _IMAGENET_CURATED]
)  # (wnid, family, texture, hue)
CALTECH101_CLASSES = _auto_assign(
    [n for n in _CALTECH101_ALL if n != "Faces_easy"], _CALTECH101_CURATED
)  # Faces_easy left out: one face class per dataset
CALTECH256_CLASSES = _auto_assign(
    [n for n in _CALTECH256_ALL if n != "253.faces-easy-101"], _CALTECH256_CURATED
)
VOC_TABLE = {
    name: (fam, tex, hue)
    for name, fam, tex, hue in _auto_assign(
        [c for c in VOC_CLASSES if c != "person"], [("person", "face", "fur", 0.07)]
    )
}

# RNG stream identifiers (part of every per-image seed; never reorder)
_DS_IMAGENET_TRAIN, _DS_IMAGENET_VAL, _DS_C101, _DS_C101_BG = 1, 2, 3, 4
_DS_C256, _DS_C256_BG, _DS_VOC, _DS_PLAN, _DS_DUP = 5, 6, 7, 8, 9

GT_COLUMNS_IMAGENET = [
    "split", "path", "wnid", "label", "width", "height", "xmin", "ymin", "xmax", "ymax",
    "left_eye_x", "left_eye_y", "right_eye_x", "right_eye_y", "nose_x", "nose_y", "family", "texture",
]  # fmt: skip
GT_COLUMNS_CALTECH = [
    "path", "class", "label", "width", "height", "xmin", "ymin", "xmax", "ymax",
    "left_eye_x", "left_eye_y", "right_eye_x", "right_eye_y", "nose_x", "nose_y", "family", "texture",
    "duplicate_of",
]  # fmt: skip
GT_COLUMNS_DUPLICATES = ["dataset", "caltech_path", "imagenet_path", "scale", "jpeg_quality"]


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
    n_train = c["imagenet"]["num_classes"] * c["imagenet"]["train_per_class"]
    n_dup = c["duplicates"]["caltech101"] + c["duplicates"]["caltech256"]
    if n_dup > n_train:
        raise ValueError(
            f"demo_data: duplicates.caltech101 + duplicates.caltech256 ({n_dup}) exceeds the "
            f"{n_train} ImageNet train images they are copied from"
        )
    return c


# --------------------------------------------------------------------------------------------
# drawing (runs in worker processes; pure function of the task)
# --------------------------------------------------------------------------------------------


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _distractors(rng, img, n, exclude, rmin, rmax):
    h, w = img.shape[:2]
    s = min(w, h)
    fams = [f for f in S.FAMILIES if f not in exclude]
    for _ in range(n):
        fam = fams[int(rng.integers(len(fams)))]
        tex = S.TEXTURES[int(rng.integers(len(S.TEXTURES)))]
        r = s * rng.uniform(rmin, rmax)
        spec = S.random_object(
            rng, fam, tex, rng.uniform(0, w), rng.uniform(0, h), r, S.random_colours(rng)
        )
        S.paint(img, spec)


def _face_scale(family: str) -> float:
    return 0.8 if family == S.FACE else 1.0


def _render_scene(task: dict) -> dict:
    rng = _rng(*task["key"])
    w = int(rng.integers(task["min_side"], task["max_side"] + 1))
    h = int(rng.integers(task["min_side"], task["max_side"] + 1))
    s = min(w, h)
    img = S.background(rng, w, h)
    objects = []
    kind = task["kind"]
    if kind == "single":
        fam, tex, hue = task["classes"][0]
        _distractors(rng, img, int(rng.integers(3, 8)), {fam, S.FACE}, 0.04, 0.11)
        r = s * rng.uniform(0.2, 0.34) * _face_scale(fam)
        off = max(0.0, 0.4375 * s - 1.0 * r)  # keep the object (mostly) inside the centre crop
        cx = w / 2 + rng.uniform(-off, off)
        cy = h / 2 + rng.uniform(-off, off)
        spec = S.random_object(rng, fam, tex, cx, cy, r, S.class_colours(rng, hue))
        box, lm = S.paint(img, spec)
        objects.append({"family": fam, "texture": tex, "box": box, "landmarks": lm})
    elif kind == "clutter":
        _distractors(rng, img, int(rng.integers(6, 15)), {S.FACE}, 0.04, 0.2)
    elif kind == "voc":
        k = int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))
        picks = rng.choice(len(task["classes"]), size=k, replace=False)
        radii = sorted((s * rng.uniform(0.12, 0.3) for _ in range(k)), reverse=True)
        fams = {task["classes"][i][1] for i in picks}
        _distractors(rng, img, int(rng.integers(2, 7)), fams | {S.FACE}, 0.03, 0.09)
        centres: list[tuple[float, float, float]] = []
        for i, r0 in zip(picks, radii):
            name, fam, tex, hue = task["classes"][i]
            r = r0 * _face_scale(fam)
            for _ in range(30):
                cx, cy = rng.uniform(0.12 * w, 0.88 * w), rng.uniform(0.12 * h, 0.88 * h)
                if all(math.hypot(cx - x, cy - y) >= 0.9 * (r + rr) for x, y, rr in centres):
                    break
            centres.append((cx, cy, r))
            spec = S.random_object(rng, fam, tex, cx, cy, r, S.class_colours(rng, hue))
            box, lm = S.paint(img, spec)
            difficult = bool(rng.random() < 0.1)
            if box is None:
                continue
            objects.append(
                {"name": name, "family": fam, "texture": tex, "box": box, "landmarks": lm,
                 "difficult": difficult}
            )  # fmt: skip
    else:  # pragma: no cover
        raise ValueError(kind)
    arr = S.add_noise(rng, img)
    Image.fromarray(arr, "RGB").save(task["path"], format="JPEG", quality=task["quality"])
    return {"id": task["id"], "width": w, "height": h, "objects": objects}


def _render_duplicate(task: dict) -> dict:
    with Image.open(task["source"]) as src:
        src = src.convert("RGB")
        w = max(1, round(src.width * task["scale"]))
        h = max(1, round(src.height * task["scale"]))
        out = src.resize((w, h), Image.BICUBIC)
    out.save(task["path"], format="JPEG", quality=task["quality"])
    return {"id": task["id"], "width": w, "height": h, "objects": []}


def _render(task: dict) -> dict:
    if task["kind"] == "duplicate":
        return _render_duplicate(task)
    return _render_scene(task)


# --------------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------


def _write_csv(path: Path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(header)
        wr.writerows(rows)


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def _box_landmark_cells(obj):
    if obj is None or obj.get("box") is None:
        return [""] * 4 + [""] * 6
    cells = [str(v) for v in obj["box"]]
    lm = obj.get("landmarks")
    if lm:
        for k in ("left_eye", "right_eye", "nose"):
            cells += [_fmt(lm[k][0]), _fmt(lm[k][1])]
    else:
        cells += [""] * 6
    return cells


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


# --------------------------------------------------------------------------------------------
# main entry
# --------------------------------------------------------------------------------------------


_POOL_MIN_TASKS = 64  # below this a process pool costs more than it saves


def _run(tasks: list[dict], workers: int, progress: bool, desc: str) -> list[dict]:
    """Render ``tasks`` (in any order, any number of processes: every task has its own RNG)."""
    from tqdm.auto import tqdm

    results: list[dict | None] = [None] * len(tasks)
    pool = None
    if workers > 1 and len(tasks) >= max(_POOL_MIN_TASKS, 1):
        # fork before tqdm starts its monitor thread; the workers only need numpy and PIL
        ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        pool = ctx.Pool(workers)
    bar = tqdm(total=len(tasks), desc=desc, unit="img", disable=not progress)
    try:
        it = pool.imap_unordered(_render, tasks, chunksize=8) if pool else map(_render, tasks)
        for r in it:
            results[r["id"]] = r
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    return results  # type: ignore[return-value]


def _remove_stale_siblings(out_dir: Path) -> None:
    """Delete ``<out_dir>.tmp-<pid>`` / ``.old-<pid>`` left by runs whose process is gone (killed)."""
    for sib in out_dir.parent.glob(f"{out_dir.name}.*-*"):
        kind, _, pid = sib.name[len(out_dir.name) + 1 :].partition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # that run is still going
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(sib, ignore_errors=True)


def generate(cfg: Mapping, out_dir: str | Path, progress: bool = True) -> dict:
    """Write the demo datasets under ``out_dir`` (atomically replacing it) and return the summary.

    Raises ``ValueError`` naming the offending key for a bad config.
    """
    c = _config(cfg)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_siblings(out_dir)
    tmp = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        summary = _generate_into(c, tmp, progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.is_symlink() or out_dir.is_file():
        out_dir.unlink()
    if out_dir.exists():
        old = out_dir.with_name(f"{out_dir.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)
    return summary


def _generate_into(c: dict, out: Path, progress: bool) -> dict:
    inet_root = out / "ILSVRC2012"
    inet_tasks, inet_meta, wnids = _imagenet_plan(c, inet_root)
    cal_tasks, cal_meta = {}, {}
    for ds in ("caltech101", "caltech256"):
        cal_tasks[ds], cal_meta[ds] = _caltech_plan(c, ds, out / ds)
    dup_plans = _plan_duplicates(c, cal_meta, inet_tasks, inet_meta)

    voc_root = out / "VOC2012"
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

    # phase 1: everything drawn (duplicate slots are skipped and filled in phase 2)
    dup_slots = {ds: {d["slot"]: d for d in dup_plans[ds]} for ds in dup_plans}
    all_tasks: list[dict] = []
    refs: list[tuple[str, int]] = []
    for i, t in enumerate(inet_tasks):
        all_tasks.append(t)
        refs.append(("imagenet", i))
    for ds in ("caltech101", "caltech256"):
        for i, t in enumerate(cal_tasks[ds]):
            if cal_meta[ds][i]["slot"] in dup_slots[ds]:
                continue
            all_tasks.append(t)
            refs.append((ds, i))
    for i, t in enumerate(voc_tasks):
        all_tasks.append(t)
        refs.append(("voc", i))
    for j, t in enumerate(all_tasks):
        t["id"] = j
        t["path"] = str(out / t["rel"])
    results = _run(all_tasks, c["workers"], progress, "demo data")
    res = {"imagenet": {}, "caltech101": {}, "caltech256": {}, "voc": {}}
    for (ds, i), r in zip(refs, results):
        res[ds][i] = r

    # phase 2: planted duplicates, copied from the ImageNet-train JPEGs just written
    dup_tasks, dup_refs = [], []
    for ds in ("caltech101", "caltech256"):
        for i, m in enumerate(cal_meta[ds]):
            d = dup_slots[ds].get(m["slot"]) if m["slot"] else None
            if d is None:
                continue
            src = inet_tasks[d["source"]]
            dup_tasks.append(
                {"kind": "duplicate", "id": len(dup_tasks), "source": src["path"],
                 "path": str(out / cal_tasks[ds][i]["rel"]), "scale": d["scale"],
                 "quality": d["quality"]}
            )  # fmt: skip
            dup_refs.append((ds, i, d))
    for (ds, i, d), r in zip(dup_refs, _run(dup_tasks, 1, False, "duplicates")):
        res[ds][i] = r | {"duplicate": d}

    gt = out / "ground_truth"
    gt.mkdir()

    # ---- ImageNet files
    rows, val_rows = [], []
    for i, (t, m) in enumerate(zip(inet_tasks, inet_meta)):
        r = res["imagenet"][i]
        o = r["objects"][0]
        rows.append(
            [m["split"], t["rel"], m["wnid"], m["label"], r["width"], r["height"],
             *_box_landmark_cells(o), o["family"], o["texture"]]
        )  # fmt: skip
        if m["split"] == "val":
            x0, y0, x1, y1 = o["box"]
            val_rows.append([Path(t["rel"]).stem, f"{m['wnid']} {x0} {y0} {x1} {y1}"])
    _write_csv(gt / "imagenet.csv", GT_COLUMNS_IMAGENET, rows)
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

    # ---- Caltech files
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

    # ---- VOC files
    n_objects = 0
    for i, vid in enumerate(voc_ids):
        r = res["voc"][i]
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
        for o in res["voc"][i]["objects"]:
            cur = flags.setdefault((vid, o["name"]), 0)
            flags[(vid, o["name"])] = 1 if (cur == 1 or not o["difficult"]) else 0
    main = voc_root / "ImageSets" / "Main"
    for split, ids in splits.items():
        (main / f"{split}.txt").write_text("".join(f"{v}\n" for v in ids), encoding="utf-8")
        for cls in VOC_CLASSES:
            lines = "".join(f"{v} {flags.get((v, cls), -1):2d}\n" for v in ids)
            (main / f"{cls}_{split}.txt").write_text(lines, encoding="utf-8")

    # ---- summary
    files, nbytes = 0, 0
    for p in out.rglob("*"):
        if p.is_file():
            files += 1
            nbytes += p.stat().st_size
    n_images = len(inet_tasks) + sum(len(v) for v in cal_tasks.values()) + len(voc_tasks)
    summary = {
        "seed": c["seed"],
        "imagenet": {
            "classes": c["imagenet"]["num_classes"],
            "train": sum(1 for m in inet_meta if m["split"] == "train"),
            "val": sum(1 for m in inet_meta if m["split"] == "val"),
        },
        **cal_summary,
        "voc": {
            "images": len(voc_ids),
            "objects": n_objects,
            "train": len(splits["train"]),
            "val": len(splits["val"]),
        },
        "images": n_images,
        "files": files,  # every file under out_dir except summary.json itself
        "bytes": nbytes,
    }
    with open(out / "summary.json", "w", encoding="utf-8", newline="\n") as f:
        json.dump(summary, f, indent=2, sort_keys=False)
        f.write("\n")
    return summary


if __name__ == "__main__":  # pragma: no cover - manual use: python -m zfnet.data.demo OUT_DIR
    import sys
    import time

    t0 = time.perf_counter()
    summ = generate(DEFAULTS, sys.argv[1] if len(sys.argv) > 1 else "data/demo")
    print(json.dumps(summ, indent=2), f"\n{time.perf_counter() - t0:.1f} s")
