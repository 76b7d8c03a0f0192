"""The transfer datasets on disk (§5.2): Caltech-101, Caltech-256 and PASCAL VOC 2012.

Layouts (the real downloads; the demo generator writes the same):

* Caltech-101: ``<root>/101_ObjectCategories/<class>/image_NNNN.jpg``, with ``BACKGROUND_Google``
  (kept out unless ``background=True``; some papers count it as a 102nd class). ``root`` may also be the
  ``101_ObjectCategories`` folder itself.
* Caltech-256: ``<root>/256_ObjectCategories/NNN.name/NNN_NNNN.jpg``, with ``257.clutter`` (kept out
  unless ``clutter=True``). Only image files directly inside a class folder count (the real archive has
  a few stray sub-folders).
* VOC 2012: ``<root>/JPEGImages/<id>.jpg``, ``<root>/ImageSets/Main/<class>_<split>.txt`` (``id  1|-1|0``;
  0 = only "difficult" objects of the class, ignored by the VOC evaluation), ``Annotations/<id>.xml``.
  ``root`` may also be ``VOCdevkit`` (its ``VOC2012`` is used).

Labels are indices into the sorted class-folder names (``ImageFolder``'s convention). Every problem is a
``DatasetError`` naming the path and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zfnet.data.imagenet import IMAGE_SUFFIXES, DatasetError

__all__ = ["DatasetError", "Labelled", "MultiLabelled", "VOC_CLASSES", "caltech101", "caltech256", "voc2012", "load"]

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")


@dataclass(frozen=True)
class Labelled:
    """A single-label dataset: one class per image."""

    name: str
    paths: list[Path]
    labels: np.ndarray  # (N,) int64 indices into classes
    classes: list[str]

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class MultiLabelled:
    """VOC: per image and class 1 (present), -1 (absent) or 0 (difficult only: ignored when scoring)."""

    name: str
    paths: list[Path]
    targets: np.ndarray  # (N, C) int8 in {1, -1, 0}
    classes: list[str]

    def __len__(self) -> int:
        return len(self.paths)


def _class_folders(root: Path, top: str, key: str) -> Path:
    if root.name == top and root.is_dir():
        return root
    folder = root / top
    if not folder.is_dir():
        raise DatasetError(f"{folder}: missing; expected {key}=<folder holding {top}/<class>/*.jpg> (got {root})")
    return folder


def _labelled(name: str, folder: Path, skip: set[str]) -> Labelled:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in skip)
    if not classes:
        raise DatasetError(f"{folder}: no class folders; expected {folder}/<class>/*.jpg")
    paths, labels = [], []
    for label, cls in enumerate(classes):
        files = sorted(p for p in (folder / cls).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"{folder / cls}: empty class folder; expected *.jpg images")
        paths += files
        labels += [label] * len(files)
    return Labelled(name, paths, np.asarray(labels, dtype=np.int64), classes)


def caltech101(root: str | Path, background: bool = False) -> Labelled:
    folder = _class_folders(Path(root), "101_ObjectCategories", "transfer.caltech101.root")
    return _labelled("caltech101", folder, set() if background else {"BACKGROUND_Google"})


def caltech256(root: str | Path, clutter: bool = False) -> Labelled:
    folder = _class_folders(Path(root), "256_ObjectCategories", "transfer.caltech256.root")
    return _labelled("caltech256", folder, set() if clutter else {"257.clutter"})


def _voc_root(root: Path) -> Path:
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir() and (candidate / "ImageSets" / "Main").is_dir():
            return candidate
    raise DatasetError(f"{root}: not a VOC 2012 folder; expected JPEGImages/ and ImageSets/Main/ "
                       "(transfer.voc2012.root may be VOC2012 or VOCdevkit)")


def voc2012(root: str | Path, split: str) -> MultiLabelled:
    """Image-level labels of ``split`` (train, val, trainval) from ``ImageSets/Main/<class>_<split>.txt``."""
    root = _voc_root(Path(root))
    main = root / "ImageSets" / "Main"
    ids: list[str] | None = None
    columns = []
    for cls in VOC_CLASSES:
        f = main / f"{cls}_{split}.txt"
        if not f.is_file():
            raise DatasetError(f"{f}: missing; expected '<image id> <1|-1|0>' lines for every VOC class")
        rows = [line.split() for line in f.read_text().splitlines() if line.strip()]
        bad = [r for r in rows if len(r) != 2 or r[1] not in ("1", "-1", "0")]
        if bad:
            raise DatasetError(f"{f}: malformed line {' '.join(bad[0])!r}; expected '<image id> <1|-1|0>'")
        these = [r[0] for r in rows]
        if ids is None:
            ids = these
        elif these != ids:
            raise DatasetError(f"{f}: lists other images than {main / (VOC_CLASSES[0] + '_' + split + '.txt')}")
        columns.append([int(r[1]) for r in rows])
    if not ids:
        raise DatasetError(f"{main}: split {split!r} is empty")
    paths = [root / "JPEGImages" / f"{i}.jpg" for i in ids]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"{missing[0]}: listed in ImageSets/Main/*_{split}.txt but missing ({len(missing)} missing)")
    return MultiLabelled("voc2012", paths, np.asarray(columns, dtype=np.int8).T.copy(), list(VOC_CLASSES))


def load(name: str, cfg) -> Labelled | tuple[MultiLabelled, MultiLabelled]:
    """The dataset ``name`` as configured under ``transfer.<name>`` (VOC: its (train, test) splits)."""
    if name == "caltech101":
        return caltech101(cfg.root, background=bool(cfg.get("background", False)))
    if name == "caltech256":
        return caltech256(cfg.root, clutter=bool(cfg.get("clutter", False)))
    if name == "voc2012":
        return voc2012(cfg.root, cfg.train_split), voc2012(cfg.root, cfg.test_split)
    raise ValueError(f"transfer: unknown dataset {name!r}; known: caltech101, caltech256, voc2012")
