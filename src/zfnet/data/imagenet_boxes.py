"""ILSVRC2012 validation bounding boxes, from either of the forms they ship in, for the images asked for.

Two formats, both with boxes in the original image's pixels:

- Kaggle's ``LOC_val_solution.csv``: header ``ImageId,PredictionString``; per image one row whose
  PredictionString repeats ``wnid xmin ymin xmax ymax`` once per box (the demo writes the same file);
- the validation bounding-box XMLs, one per image (PASCAL-VOC style
  ``<annotation><size><width/><height/></size><object><name>wnid</name><bndbox><xmin/>...``), as in
  ``ILSVRC2012_bbox_val_v3.tgz`` (``val/ILSVRC2012_val_00000001.xml``) or Kaggle's
  ``ILSVRC/Annotations/CLS-LOC/val/*.xml``.

The numbers are ImageNet's, the same in both forms (Kaggle's CSV copies the XMLs): 0-based inclusive pixel
indices, ``0 <= xmin <= xmax <= width - 1``; ``zfnet.data.groundtruth.boxes`` turns them into edges in
the network's input. The CSV carries no image size: it is read from the image file's header.

``find`` locates them: an explicit ``data.val_boxes`` (a CSV file, or a folder of XMLs), else the usual
places in and around ``data.imagenet_root`` (``SEARCHED``). ``read`` reads only the images asked for
(memory bounded by them, not by the 50,000 images of the split).
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zfnet.data.imagenet import DatasetError

SOLUTION = "LOC_val_solution.csv"
# relative to data.imagenet_root: Kaggle's CSV at the root or (root = ILSVRC/Data/CLS-LOC) three levels up;
# the XMLs of Kaggle's layout, or of ILSVRC2012_bbox_val_v3.tgz unpacked at the root (its val/ holds them,
# beside the images of a flat val/) or in a folder of its own
SEARCHED = (SOLUTION, "../../../" + SOLUTION, "ILSVRC/Annotations/CLS-LOC/val", "Annotations/CLS-LOC/val",
            "../../Annotations/CLS-LOC/val", "val", "bbox_val/val", "ILSVRC2012_bbox_val_v3/val")


@dataclass(frozen=True)
class ImageBoxes:
    """One image's boxes: ``wnids[i]`` and ``boxes[i]`` = (xmin, ymin, xmax, ymax), original pixels,
    inclusive; ``size`` = (width, height) when the source says it (the XMLs), else None."""
    wnids: tuple[str, ...]
    boxes: np.ndarray  # (K, 4) float
    size: tuple[int, int] | None = None

    def of_class(self, wnid: str) -> np.ndarray:
        """The boxes of ``wnid`` (K', 4)."""
        return self.boxes[[w == wnid for w in self.wnids]] if self.wnids else self.boxes


def _xml_folder(path: Path) -> bool:
    return path.is_dir() and next(path.glob("*.xml"), None) is not None


def find(root: str | Path | None, explicit: str | Path | None = None) -> Path | None:
    """The boxes' source: ``explicit`` (``data.val_boxes``: a CSV file or a folder of XMLs; an error when it
    is neither), else the first of ``SEARCHED`` under ``root`` that exists (a CSV with its columns checked by
    ``read``, a folder holding ``*.xml``), else None (also without a root)."""
    if explicit:
        path = Path(explicit)
        if path.is_file() or _xml_folder(path):
            return path
        raise DatasetError(f"data.val_boxes={explicit}: expected {SOLUTION} (ImageId,PredictionString) or a "
                           "folder of ILSVRC2012_val_*.xml bounding-box files; "
                           + ("the folder holds no *.xml" if path.is_dir() else "not found"))
    if not root:
        return None
    root = Path(root)
    for rel in SEARCHED:
        path = root / rel
        if (rel.endswith(".csv") and path.is_file()) or _xml_folder(path):
            return path
    return None


def _parse_prediction(image_id: str, text: str, where: str) -> ImageBoxes:
    fields = text.split()
    if not fields or len(fields) % 5:
        raise DatasetError(f"{where}: {image_id}: PredictionString {text!r}: expected 'wnid xmin ymin xmax ymax' "
                           "repeated once per box")
    try:
        boxes = np.array([[float(v) for v in fields[i + 1 : i + 5]] for i in range(0, len(fields), 5)])
    except ValueError:
        raise DatasetError(f"{where}: {image_id}: PredictionString {text!r}: box corners must be numbers") from None
    return ImageBoxes(tuple(fields[0::5]), boxes.reshape(-1, 4))


def read_solution(path: str | Path, image_ids=None) -> dict[str, ImageBoxes]:
    """``LOC_val_solution.csv``: ImageId -> its boxes (only the ids in ``image_ids`` when given)."""
    path, wanted = Path(path), None if image_ids is None else set(image_ids)
    out = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"ImageId", "PredictionString"} <= set(reader.fieldnames or []):
            raise DatasetError(f"{path}: expected columns ImageId,PredictionString (Kaggle's {SOLUTION})")
        for row in reader:
            if wanted is None or row["ImageId"] in wanted:
                out[row["ImageId"]] = _parse_prediction(row["ImageId"], row["PredictionString"] or "", str(path))
    return out


def read_xml(path: str | Path) -> ImageBoxes:
    """One bounding-box XML (PASCAL-VOC style, ImageNet's numbers)."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
        size = root.find("size")
        wh = (int(size.findtext("width")), int(size.findtext("height"))) if size is not None else None
        wnids, boxes = [], []
        for obj in root.iter("object"):
            box = obj.find("bndbox")
            wnids.append(obj.findtext("name").strip())
            boxes.append([float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")])
    except (ET.ParseError, AttributeError, TypeError, ValueError) as err:
        raise DatasetError(f"{path}: not an ImageNet bounding-box XML (<annotation><size><width/><height/></size>"
                           f"<object><name>wnid</name><bndbox><xmin/>...): {err}") from None
    return ImageBoxes(tuple(wnids), np.array(boxes, float).reshape(-1, 4), wh)


def read(source: str | Path, image_ids) -> dict[str, ImageBoxes]:
    """The boxes of ``image_ids`` (e.g. ``ILSVRC2012_val_00000001``) found in ``source`` (see ``find``);
    ids without boxes there are left out."""
    source = Path(source)
    if source.is_file():
        return read_solution(source, image_ids)
    out = {}
    for image_id in image_ids:
        f = source / f"{image_id}.xml"
        if f.is_file():
            out[image_id] = read_xml(f)
    return out
