"""Labels from file names, as the Kaggle "Dogs vs. Cats" set has them: ``train/cat.0.jpg``, ``train/dog.12.jpg``;
the unlabelled ``test1/1.jpg``, ``test1/2.jpg``, ...

A training file is ``<class>.<id>.<extension>``: the class is the part before the first dot (compared
case-insensitively: ``Cat.3.JPG`` is a cat), the id a whole number, the extension an image suffix in any
case. Everything else in the folder (``README.txt``, ``cat.jpg`` without an id, ``cat.1.jpg.part``,
hidden files, sub-folders, a class not in ``classes``) is reported as stray with its reason, never read
and never fatal. Files are sorted by class, then by id as a number (``cat.2`` before ``cat.10``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "Labelled", "read_labelled", "read_unlabelled"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
_NAME = re.compile(r"^(?P<cls>[^.]+)\.(?P<id>\d+)(?P<ext>\.[A-Za-z]+)$")


@dataclass
class Labelled:
    """The readable files of a folder with their labels; ``classes[label]`` is a label's name."""

    paths: list[Path]
    labels: list[int]
    classes: list[str]
    ids: list[int]
    stray: list[tuple[str, str]] = field(default_factory=list)  # (file name, why it was left out)

    def per_class(self) -> dict[str, int]:
        return {c: self.labels.count(i) for i, c in enumerate(self.classes)}


def _check_folder(folder: Path, what: str) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected a folder of {what}")


def read_labelled(folder: str | Path, classes: list[str] | None = None) -> Labelled:
    """``<class>.<id>.<ext>`` files of ``folder`` (not recursive). ``classes``: the class names in label
    order (``[cat, dog]``: cat 0, dog 1); None: every class found, sorted. Raises ``FileNotFoundError`` when
    the folder is missing or holds no labelled image."""
    folder = Path(folder)
    _check_folder(folder, "images named <class>.<id>.<ext> (Kaggle Dogs vs. Cats: train/cat.0.jpg)")
    wanted = [c.lower() for c in classes] if classes else None
    found, stray = [], []
    for p in sorted(folder.iterdir()):
        name = p.name
        if name.startswith("."):
            stray.append((name, "hidden file"))
            continue
        if not p.is_file():
            stray.append((name, "not a file"))
            continue
        m = _NAME.match(name)
        if m is None:
            stray.append((name, "name is not <class>.<id>.<extension>"))
            continue
        if m["ext"].lower() not in IMAGE_SUFFIXES:
            stray.append((name, f"extension {m['ext']!r} is not an image's ({', '.join(IMAGE_SUFFIXES)})"))
            continue
        cls = m["cls"].lower()
        if wanted is not None and cls not in wanted:
            stray.append((name, f"class {cls!r} is not one of {wanted}"))
            continue
        found.append((cls, int(m["id"]), p))
    names = wanted if wanted is not None else sorted({c for c, _, _ in found})
    found.sort(key=lambda t: (names.index(t[0]), t[1], t[2].name))
    if not found:
        raise FileNotFoundError(f"{folder}: no image named <class>.<id>.<ext>"
                                + (f" of the classes {names}" if wanted else "") + f" ({len(stray)} other files)")
    return Labelled(paths=[p for _, _, p in found], labels=[names.index(c) for c, _, _ in found], classes=list(names),
                    ids=[i for _, i, _ in found], stray=stray)


def read_unlabelled(folder: str | Path) -> tuple[list[Path], list[int], list[tuple[str, str]]]:
    """``<n>.<ext>`` images of an unlabelled folder (Kaggle's ``test1/``), in number order: (paths, numbers,
    stray files with the reason). A missing folder gives no images."""
    folder = Path(folder)
    if not folder.is_dir():
        return [], [], []
    found, stray = [], []
    for p in sorted(folder.iterdir()):
        m = re.match(r"^(\d+)(\.[A-Za-z]+)$", p.name)
        if not p.is_file() or p.name.startswith(".") or m is None or m[2].lower() not in IMAGE_SUFFIXES:
            stray.append((p.name, "not an image named <number>.<ext>"))
            continue
        found.append((int(m[1]), p))
    found.sort()
    return [p for _, p in found], [n for n, _ in found], stray
