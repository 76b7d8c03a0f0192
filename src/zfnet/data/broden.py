"""Reader of probe data in the Broden layout (Bau et al. 2017), the input of network dissection.

A Broden folder (``broden1_224`` or the demo's ``data/demo/broden``) holds, as NetDissect and
NetDissect-Lite (``loader/data_loader.py``) read it:

``index.csv``
    one row per image; columns ``image, split, ih, iw, sh, sw`` then one column per category.
    ``image`` is relative to ``<root>/images/``; ``ih, iw`` the image size, ``sh, sw`` the size of its
    segmentations. A category cell lists ``;``-separated entries, each either the path (relative to
    ``images/``) of a mask PNG or an integer: a label of the whole image (``scene``, and Broden's
    ``texture`` from DTD). An empty cell: no data of that category for that image.
mask PNGs
    RGB, ``label id = R + 256 * G`` per pixel (B unused), size ``sh x sw``; 0 = unlabelled.
``label.csv``
    ``number, name, category, frequency, coverage, syns``: every label's global id (0 = ``-``), name, the
    categories it occurs in as ``cat(count);cat(count)``, images it occurs in, pixel coverage in whole
    images, ``;``-separated synonyms.
``category.csv``
    ``name, first, last, count, frequency``: the categories in order.
``c_<category>.csv``
    ``code, number, name, frequency, coverage``: the category's dense codes mapped to global label numbers,
    with the label's coverage *within that category*.

A label that occurs in several categories belongs, for dissection, to its *primary* category: the one in
which its coverage (``c_<category>.csv``) is largest; on a tie the later category in ``category.csv`` wins
(NetDissect-Lite's ``primary_categories_per_index``).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["Broden", "read_broden", "decode_mask", "encode_mask", "META_COLUMNS"]

META_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw")


def decode_mask(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int64 label ids, ``R + 256 * G``."""
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:  # a grey PNG: the value is the id
        return rgb.astype(np.int64)
    return rgb[:, :, 0].astype(np.int64) + 256 * rgb[:, :, 1].astype(np.int64)


def encode_mask(ids: np.ndarray) -> np.ndarray:
    """(H, W) label ids in [0, 65535] -> (H, W, 3) uint8 with ``R = id % 256``, ``G = id // 256``, B = 0."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.min(initial=0) < 0 or ids.max(initial=0) > 65535:
        raise ValueError("mask label ids must lie in [0, 65535]")
    out = np.zeros(ids.shape + (3,), np.uint8)
    out[..., 0] = ids % 256
    out[..., 1] = ids // 256
    return out


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (a Broden folder has index.csv, category.csv, label.csv, "
                                "c_<category>.csv)")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _num(v: str, kind=int, default=0):
    v = (v or "").strip()
    if not v:
        return default
    try:
        return kind(v)
    except ValueError:
        return kind(float(v))


@dataclass
class Broden:
    """A Broden-layout probe set. ``rows[i][cat]``: list of mask paths (str) and whole-image labels (int)."""

    root: Path
    categories: list[str]
    label_names: list[str]  # index = global label number; "" for unused numbers
    primary: np.ndarray  # (n_labels,) primary category index per label (-1: label 0 / unused)
    rows: list[dict]
    category_codes: dict[str, dict[int, int]] = field(default_factory=dict)  # cat -> {code: number}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    def image_path(self, i: int) -> Path:
        return self.root / "images" / self.rows[i]["image"]

    def seg_shape(self, i: int) -> tuple[int, int]:
        return self.rows[i]["sh"], self.rows[i]["sw"]

    def segmentation(self, i: int) -> dict[str, np.ndarray | list[int]]:
        """Per category: (k, sh, sw) int64 label ids (k masks of the cell) or a list of whole-image labels.

        A cell mixing masks and integers gives masks, the integer entries as constant planes (as
        NetDissect's ``resolve_segmentation``). Categories without data in this image are left out.
        """
        row = self.rows[i]
        sh, sw = row["sh"], row["sw"]
        out: dict[str, np.ndarray | list[int]] = {}
        for cat in self.categories:
            cell = row.get(cat) or []
            if not cell:
                continue
            if all(isinstance(e, int) for e in cell):
                out[cat] = list(cell)
                continue
            planes = np.empty((len(cell), sh, sw), np.int64)
            for k, e in enumerate(cell):
                if isinstance(e, int):
                    planes[k] = e
                    continue
                with Image.open(self.root / "images" / e) as im:
                    ids = decode_mask(np.asarray(im.convert("RGB")))
                if ids.shape != (sh, sw):
                    raise ValueError(f"{e}: mask is {ids.shape[1]}x{ids.shape[0]}, index.csv says {sw}x{sh}")
                planes[k] = ids
            out[cat] = planes
        return out

    def concept_planes(self, i: int) -> tuple[np.ndarray, list[int]]:
        """All pixel categories stacked, (D, sh, sw) int64 (D may be 0), and the whole-image labels."""
        sh, sw = self.seg_shape(i)
        planes, scalars = [], []
        for v in self.segmentation(i).values():
            if isinstance(v, list):
                scalars += v
            else:
                planes.append(v)
        stack = np.concatenate(planes) if planes else np.zeros((0, sh, sw), np.int64)
        return stack, scalars

    def label_category_matrix(self) -> np.ndarray:
        """(n_labels, n_categories) one-hot of each label's primary category (NetDissect's ``labelcat``)."""
        m = np.zeros((self.n_labels, len(self.categories)), np.float64)
        ok = self.primary >= 0
        m[np.nonzero(ok)[0], self.primary[ok]] = 1
        return m


def _cell(v: str) -> list:
    items = [s.strip() for s in (v or "").split(";") if s.strip()]
    return [int(s) if re.fullmatch(r"\d+", s) else s for s in items]


def read_broden(root: str | Path, categories: list[str] | None = None) -> Broden:
    """Read a Broden folder; ``categories`` keeps only those (in ``category.csv`` order) and the images
    that have data in at least one of them (NetDissect's ``index_has_any_data``)."""
    root = Path(root)
    cat_rows = _read_rows(root / "category.csv")
    all_cats = [r["name"] for r in cat_rows]
    if categories is not None:
        unknown = [c for c in categories if c not in all_cats]
        if unknown:
            raise ValueError(f"{root}: categories {unknown} not in category.csv ({all_cats})")
        cats = [c for c in all_cats if c in set(categories)]
    else:
        cats = all_cats
    labels = _read_rows(root / "label.csv")
    n = max((_num(r["number"]) for r in labels), default=0) + 1
    names = [""] * n
    for r in labels:
        names[_num(r["number"])] = r["name"]
    coverage = np.zeros((n, len(cats)))
    member = np.zeros((n, len(cats)), bool)
    codes: dict[str, dict[int, int]] = {}
    for ci, cat in enumerate(cats):
        codes[cat] = {}
        for r in _read_rows(root / f"c_{cat}.csv"):
            num = _num(r["number"])
            if num <= 0 or num >= n:
                continue
            codes[cat][_num(r["code"])] = num
            member[num, ci] = True
            coverage[num, ci] = _num(r.get("coverage", ""), float, 0.0)
    primary = np.full(n, -1, np.int64)
    for j in range(1, n):
        if member[j].any():
            # max over (coverage, category index): ties go to the later category, as NetDissect-Lite
            best = max((coverage[j, ci] if member[j, ci] else -1.0, ci) for ci in range(len(cats)))
            primary[j] = best[1]
    rows = []
    for r in _read_rows(root / "index.csv"):
        row = {"image": r["image"], "split": r.get("split", "")}
        for k in ("ih", "iw", "sh", "sw"):
            row[k] = _num(r.get(k, ""))
        for cat in cats:
            row[cat] = _cell(r.get(cat, ""))
        if any(row[c] for c in cats):
            rows.append(row)
    return Broden(root=root, categories=cats, label_names=names, primary=primary, rows=rows,
                  category_codes=codes)
