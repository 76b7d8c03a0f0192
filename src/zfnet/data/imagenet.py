"""ILSVRC2012 on disk: the class list and the (path, label) lists of train and val.

Layout: ``train/<wnid>/*.JPEG``; ``val/`` either as class folders (after the usual ``valprep.sh``) or
flat with ``LOC_val_solution.csv`` (Kaggle) beside it, or flat with the devkit's
``ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt``, whose IDs index the devkit's
``meta.mat`` order (not sorted wnid order; a ``synsets.txt`` of ``ID wnid`` lines may stand in for meta.mat).
Class names come from ``LOC_synset_mapping.txt`` when present. Labels are indices into the sorted wnids,
the convention of torchvision's ``ImageFolder``.

Every entry of an image folder whose name ends in an image suffix is listed, whatever it is: a directory
named ``x.JPEG`` or a broken symlink is listed too (and then rejected by the prepare stage with its reason,
"not a file" / "broken symlink"), so nothing on disk is silently left out of seen = written + rejected.
In ``val/``, class folders are the directories without an image suffix.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


class DatasetError(ValueError):
    """The dataset on disk is not in the expected layout; the message names the path and what was expected."""


@dataclass(frozen=True)
class Split:
    name: str
    paths: list[Path]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.paths)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _images(folder: Path) -> list[Path]:
    """Every entry named like an image (files, and whatever else carries such a name: see the module)."""
    return sorted(p for p in folder.iterdir() if _is_image_name(p))


def classes(root: str | Path) -> tuple[list[str], dict[str, str]]:
    """(sorted wnids of train/, wnid -> human-readable name)."""
    root = Path(root)
    train = root / "train"
    if not train.is_dir():
        raise DatasetError(f"{train}: missing; expected ILSVRC2012 train/<wnid>/*.JPEG under data.imagenet_root={root}")
    wnids = sorted(p.name for p in train.iterdir() if p.is_dir())
    if not wnids:
        raise DatasetError(f"{train}: no class folders; expected train/<wnid>/*.JPEG")
    names = {w: w for w in wnids}
    mapping = root / "LOC_synset_mapping.txt"
    if mapping.is_file():
        for line in mapping.read_text().splitlines():
            if line.strip():
                wnid, _, name = line.partition(" ")
                names[wnid] = name.strip()
    return wnids, names


def train_split(root: str | Path, exclude: Iterable[str | Path] | None = None) -> Split:
    """The training images; ``exclude``: paths to leave out (the overlap stage's removed list)."""
    root = Path(root)
    wnids, _ = classes(root)
    drop = {Path(p).resolve() for p in exclude or ()}
    paths, labels = [], []
    for label, wnid in enumerate(wnids):
        files = _images(root / "train" / wnid)
        if not files:
            raise DatasetError(f"{root / 'train' / wnid}: empty class folder; expected *.JPEG images")
        if drop:
            files = [f for f in files if f.resolve() not in drop]
        paths += files
        labels += [label] * len(files)
    return Split("train", paths, labels)


def _devkit_labels(root: Path, wnids: list[str]) -> dict[str, int] | None:
    data = root / "ILSVRC2012_devkit_t12" / "data"
    truth = data / "ILSVRC2012_validation_ground_truth.txt"
    if not truth.is_file():
        return None
    id_to_wnid: dict[int, str] = {}
    if (data / "meta.mat").is_file():
        from scipy.io import loadmat  # only for the real devkit

        for row in loadmat(data / "meta.mat", squeeze_me=True)["synsets"]:
            id_to_wnid[int(row[0])] = str(row[1])
    elif (data / "synsets.txt").is_file():
        for line in (data / "synsets.txt").read_text().split("\n"):
            if line.strip():
                i, wnid = line.split()[:2]
                id_to_wnid[int(i)] = wnid
    else:
        raise DatasetError(f"{data}: {truth.name} needs meta.mat (or synsets.txt) to map ILSVRC2012_IDs to wnids")
    index = {w: i for i, w in enumerate(wnids)}
    ids = [int(x) for x in truth.read_text().split()]
    return {f"ILSVRC2012_val_{n:08d}": index[id_to_wnid[i]] for n, i in enumerate(ids, start=1)}


def val_split(root: str | Path) -> Split:
    root = Path(root)
    wnids, _ = classes(root)
    index = {w: i for i, w in enumerate(wnids)}
    val = root / "val"
    if not val.is_dir():
        raise DatasetError(f"{val}: missing; expected ILSVRC2012 val/ (class folders or flat with a label file)")
    folders = sorted(p for p in val.iterdir() if p.is_dir() and not _is_image_name(p))
    if folders:
        paths, labels = [], []
        for folder in folders:
            if folder.name not in index:
                raise DatasetError(f"{folder}: val class {folder.name!r} is not a train class")
            files = _images(folder)
            paths += files
            labels += [index[folder.name]] * len(files)
        return Split("val", paths, labels)
    files = _images(val)
    solution = root / "LOC_val_solution.csv"
    if solution.is_file():
        with solution.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if not {"ImageId", "PredictionString"} <= set(reader.fieldnames or []):
                raise DatasetError(f"{solution}: expected columns ImageId,PredictionString")
            by_id = {row["ImageId"]: index[row["PredictionString"].split()[0]] for row in reader}
    else:
        by_id = _devkit_labels(root, wnids)
        if by_id is None:
            raise DatasetError(
                f"{val}: flat val folder without labels; expected {solution.name} beside it, or "
                "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt, or val/<wnid>/ folders"
            )
    missing = [p.name for p in files if p.stem not in by_id]
    if missing:
        raise DatasetError(f"{val}: {len(missing)} images have no label (e.g. {missing[0]})")
    return Split("val", files, [by_id[p.stem] for p in files])
