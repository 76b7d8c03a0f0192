"""Demo probe set for network dissection in the Broden layout (see :mod:`zfnet.data.broden`).

Each image (``size`` x ``size``) is a flat background of one palette colour with 2-3 objects of the
demo's shape families painted on it (:mod:`zfnet.data.demo.shapes`), each in one or two palette colours,
solid or with one of four textures; one image in four carries the face-like object (eyes, nose, ears).
The masks are exact: computed from the same local frame and coverage rule (>= 0.5) the painter uses,
later objects over earlier ones. Categories and labels (global numbers in this order, 0 = ``-``):

* ``color``: the palette's 11 colour names (NetDissect's colour terms); a pixel has the colour its
  painter gave it (background, an object's ``c1`` / ``c2``, a face's eyes and nose black, its eye
  highlights white; a face's head ``c1``, its ears ``c2``, its muzzle (a tint) no colour label);
* ``object``: the shape family of each object (the face included);
* ``part``: ``eye``, ``nose``, ``ear`` of the faces;
* ``texture``: ``dotted``, ``striped``, ``chequered``, ``grid`` (DTD's names for the demo's dots,
  stripes, checker and grid), the pixels of objects drawn with that texture.

Layout under ``<out_dir>/broden``: ``index.csv, category.csv, label.csv, c_<category>.csv``,
``images/demo/NNNN.jpg`` and ``images/demo/NNNN_<category>.png`` (label id = R + 256 G); ``sh = ih``.
A category with no labelled pixel in an image leaves its cell empty.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from zfnet.data.broden import encode_mask
from zfnet.data.demo import shapes as S
from zfnet.data.demo.render import _rng, _run

__all__ = ["PALETTE", "CATEGORIES", "LABELS", "TEXTURE_NAMES", "write"]

_DS_BRODEN = 10  # RNG stream of the probe set (the other datasets use 1..9)

PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20),
    "white": (240, 240, 240),
    "grey": (128, 128, 128),
    "red": (205, 30, 30),
    "orange": (240, 135, 20),
    "yellow": (235, 215, 40),
    "green": (40, 155, 50),
    "blue": (35, 70, 205),
    "purple": (125, 45, 165),
    "pink": (245, 150, 195),
    "brown": (125, 75, 35),
}
TEXTURE_NAMES = {"dots": "dotted", "stripes": "striped", "checker": "chequered", "grid": "grid"}
_OBJECT_FAMILIES = S.FAMILIES + (S.FACE,)
PARTS = ("eye", "nose", "ear")
CATEGORIES = ("color", "object", "part", "texture")
LABELS: list[tuple[str, str]] = (
    [(c, "color") for c in PALETTE]
    + [(f, "object") for f in _OBJECT_FAMILIES]
    + [(p, "part") for p in PARTS]
    + [(t, "texture") for t in TEXTURE_NAMES.values()]
)  # global number = position + 1
NUMBER = {(name, cat): i for i, (name, cat) in enumerate(LABELS, start=1)}


def _render_probe(task: dict) -> dict:
    """Draw one probe image and its four label maps (pure function of the task)."""
    rng = _rng(*task["key"])
    s = task["size"]
    names = list(PALETTE)
    bg = names[int(rng.integers(len(names)))]
    img = np.empty((s, s, 3), np.float32)
    img[:] = np.array(PALETTE[bg], np.float32)
    maps = {c: np.zeros((s, s), np.int64) for c in CATEGORIES}
    maps["color"][:] = NUMBER[(bg, "color")]
    n_obj = int(rng.integers(2, 4))
    face_at = int(rng.integers(n_obj)) if rng.random() < 0.25 else -1
    textures = ("solid",) + tuple(TEXTURE_NAMES)
    for k in range(n_obj):
        fam = S.FACE if k == face_at else S.FAMILIES[int(rng.integers(len(S.FAMILIES)))]
        tex = "fur" if fam == S.FACE else textures[int(rng.integers(len(textures)))]
        others = [n for n in names if n != bg]
        i1, i2 = rng.choice(len(others), size=2, replace=False)
        c1, c2 = others[int(i1)], others[int(i2)]
        r = s * rng.uniform(0.16, 0.28) * (0.8 if fam == S.FACE else 1.0)
        cx, cy = rng.uniform(0.15 * s, 0.85 * s), rng.uniform(0.15 * s, 0.85 * s)
        spec = S.random_object(rng, fam, tex, cx, cy, r,
                               (np.array(PALETTE[c1], np.float32), np.array(PALETTE[c2], np.float32)))
        S.paint(img, spec)
        reg = S.regions(spec, s, s)
        if reg is None:
            continue
        x0, y0, x1, y1, layer = reg
        win = (slice(y0, y1), slice(x0, x1))
        on = layer > 0
        for cat in CATEGORIES:  # the object hides whatever lay below it
            maps[cat][win][on] = 0
        maps["object"][win][on] = NUMBER[(fam, "object")]
        col = maps["color"][win]
        if fam == S.FACE:
            order = {name: i + 1 for i, name in enumerate(S.FACE_REGIONS)}
            col[layer == order["ear"]] = NUMBER[(c2, "color")]
            col[layer == order["head"]] = NUMBER[(c1, "color")]
            col[(layer == order["eye"]) | (layer == order["nose"])] = NUMBER[("black", "color")]
            col[layer == order["highlight"]] = NUMBER[("white", "color")]
            part = maps["part"][win]
            part[layer == order["ear"]] = NUMBER[("ear", "part")]
            part[(layer == order["eye"]) | (layer == order["highlight"])] = NUMBER[("eye", "part")]
            part[layer == order["nose"]] = NUMBER[("nose", "part")]
        else:
            col[layer == 1] = NUMBER[(c1, "color")]
            col[layer == 2] = NUMBER[(c2, "color")]
            if tex in TEXTURE_NAMES:
                maps["texture"][win][on] = NUMBER[(TEXTURE_NAMES[tex], "texture")]
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(3.0)
    np.clip(img, 0.0, 255.0, out=img)
    root = Path(task["root"])
    Image.fromarray(img.astype(np.uint8), "RGB").save(root / "images" / task["image"], format="JPEG",
                                                      quality=task["quality"])
    cells = {}
    for cat, m in maps.items():
        if not m.any():
            cells[cat] = ""
            continue
        rel = task["image"].replace(".jpg", f"_{cat}.png")
        Image.fromarray(encode_mask(m), "RGB").save(root / "images" / rel, format="PNG")
        cells[cat] = rel
    counts = {cat: np.bincount(m.ravel(), minlength=len(LABELS) + 1) for cat, m in maps.items()}
    return {"id": task["id"], "cells": cells, "counts": counts}


def _write_csv(path: Path, header, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(header)
        wr.writerows(rows)


def write(c: dict, root: Path, progress: bool = False) -> dict:
    """Write the probe set of ``c["broden"]`` (``images``, ``size``) under ``root``; returns its summary."""
    n, s = c["broden"]["images"], c["broden"]["size"]
    (root / "images" / "demo").mkdir(parents=True, exist_ok=True)
    tasks = [
        {"kind": "broden", "id": i, "key": (c["seed"], _DS_BRODEN, i + 1), "size": s, "root": str(root),
         "image": f"demo/{i + 1:04d}.jpg", "quality": c["jpeg_quality"]}
        for i in range(n)
    ]  # fmt: skip
    results = _run(tasks, c["workers"], progress, "probe set", fn=_render_probe)
    index = [
        [t["image"], "train", s, s, s, s, *(r["cells"][cat] for cat in CATEGORIES)]
        for t, r in zip(tasks, results)
    ]
    _write_csv(root / "index.csv", ["image", "split", "ih", "iw", "sh", "sw", *CATEGORIES], index)
    n_lab = len(LABELS) + 1
    freq = {cat: np.zeros(n_lab, np.int64) for cat in CATEGORIES}  # images with the label
    cov = {cat: np.zeros(n_lab, np.float64) for cat in CATEGORIES}  # pixels, in whole images
    for r in results:
        for cat in CATEGORIES:
            freq[cat] += r["counts"][cat] > 0
            cov[cat] += r["counts"][cat] / float(s * s)
    label_rows, cat_rows = [[0, "-", "", 0, "0.0", ""]], []
    for num, (name, cat) in enumerate(LABELS, start=1):
        label_rows.append([num, name, f"{cat}({int(freq[cat][num])})", int(freq[cat][num]),
                           f"{cov[cat][num]:.4f}", ""])
    for cat in CATEGORIES:
        nums = [num for num, (_, c_) in enumerate(LABELS, start=1) if c_ == cat]
        rows = [[code, num, LABELS[num - 1][0], int(freq[cat][num]), f"{cov[cat][num]:.4f}"]
                for code, num in enumerate(nums, start=1)]
        _write_csv(root / f"c_{cat}.csv", ["code", "number", "name", "frequency", "coverage"], rows)
        touched = sum(1 for r in results if r["cells"][cat])
        cat_rows.append([cat, 1, len(nums), len(nums), touched])
    _write_csv(root / "label.csv", ["number", "name", "category", "frequency", "coverage", "syns"], label_rows)
    _write_csv(root / "category.csv", ["name", "first", "last", "count", "frequency"], cat_rows)
    return {"images": n, "size": s, "labels": len(LABELS),
            "labels_present": int(sum((freq[cat][1:] > 0).sum() for cat in CATEGORIES))}
