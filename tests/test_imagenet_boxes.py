"""ImageNet validation boxes: Kaggle's LOC_val_solution.csv and the bounding-box XMLs, found in a root's usual
places, read for the images asked for, and carried into the network's input."""

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F

from zfnet.data import imagenet_boxes
from zfnet.data.groundtruth import input_boxes
from zfnet.data.imagenet import DatasetError

CSV = """ImageId,PredictionString
ILSVRC2012_val_00000002,n01440764 10 20 110 220 n01440764 5 6 7 8 n09999999 0 0 499 374 
ILSVRC2012_val_00000001,n01751748 111 108 441 336 
"""

XML = """<annotation>
  <folder>val</folder><filename>ILSVRC2012_val_00000003</filename>
  <source><database>ILSVRC_2012</database></source>
  <size><width>500</width><height>333</height><depth>3</depth></size>
  <segmented>0</segmented>
  <object><name>n02105855</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>0</xmin><ymin>12</ymin><xmax>251</xmax><ymax>332</ymax></bndbox></object>
  <object><name>n02105855</name><pose>Unspecified</pose><truncated>1</truncated><difficult>0</difficult>
    <bndbox><xmin>300</xmin><ymin>40</ymin><xmax>499</xmax><ymax>200</ymax></bndbox></object>
</annotation>
"""


def test_solution_csv_gives_every_box_of_the_images_asked_for(tmp_path):
    (tmp_path / "LOC_val_solution.csv").write_text(CSV)
    got = imagenet_boxes.read(tmp_path / "LOC_val_solution.csv", ["ILSVRC2012_val_00000002", "ILSVRC2012_val_00000009"])
    assert list(got) == ["ILSVRC2012_val_00000002"]  # only those asked for, and only those with boxes
    two = got["ILSVRC2012_val_00000002"]
    assert two.wnids == ("n01440764", "n01440764", "n09999999") and two.size is None
    np.testing.assert_array_equal(two.boxes, [[10, 20, 110, 220], [5, 6, 7, 8], [0, 0, 499, 374]])
    np.testing.assert_array_equal(two.of_class("n01440764"), [[10, 20, 110, 220], [5, 6, 7, 8]])
    assert two.of_class("n00000000").shape == (0, 4)
    one = imagenet_boxes.read_solution(tmp_path / "LOC_val_solution.csv")["ILSVRC2012_val_00000001"]
    np.testing.assert_array_equal(one.boxes, [[111, 108, 441, 336]])


def test_bounding_box_xml_gives_size_and_every_box(tmp_path):
    (tmp_path / "ILSVRC2012_val_00000003.xml").write_text(XML)
    got = imagenet_boxes.read(tmp_path, ["ILSVRC2012_val_00000003", "ILSVRC2012_val_00000004"])
    assert list(got) == ["ILSVRC2012_val_00000003"]
    b = got["ILSVRC2012_val_00000003"]
    assert b.size == (500, 333) and b.wnids == ("n02105855", "n02105855")
    np.testing.assert_array_equal(b.boxes, [[0, 12, 251, 332], [300, 40, 499, 200]])


@pytest.mark.parametrize("text,match", [
    ("ImageId,Label\nx,n1 1 2 3 4\n", "expected columns ImageId,PredictionString"),
    ("ImageId,PredictionString\nILSVRC2012_val_00000001,n1 1 2 3\n", "wnid xmin ymin xmax ymax"),
    ("ImageId,PredictionString\nILSVRC2012_val_00000001,n1 1 2 3 four\n", "must be numbers"),
])
def test_a_malformed_solution_csv_is_named(tmp_path, text, match):
    (tmp_path / "s.csv").write_text(text)
    with pytest.raises(DatasetError, match=match) as err:
        imagenet_boxes.read(tmp_path / "s.csv", ["ILSVRC2012_val_00000001"])
    assert "s.csv" in str(err.value)


def test_a_malformed_xml_is_named(tmp_path):
    (tmp_path / "ILSVRC2012_val_00000001.xml").write_text("<annotation><object><name>n1</name></object></annotation>")
    with pytest.raises(DatasetError, match="ILSVRC2012_val_00000001.xml: not an ImageNet bounding-box XML"):
        imagenet_boxes.read(tmp_path, ["ILSVRC2012_val_00000001"])


def test_found_in_the_usual_places_or_where_config_says(tmp_path):
    # Kaggle's download, data.imagenet_root = ILSVRC/Data/CLS-LOC: the CSV three levels up wins over the XMLs
    kaggle = tmp_path / "kaggle"
    root = kaggle / "ILSVRC/Data/CLS-LOC"
    (root / "val").mkdir(parents=True)
    (kaggle / "ILSVRC/Annotations/CLS-LOC/val").mkdir(parents=True)
    (kaggle / "ILSVRC/Annotations/CLS-LOC/val/ILSVRC2012_val_00000003.xml").write_text(XML)
    assert imagenet_boxes.find(root) == root / "../../Annotations/CLS-LOC/val"
    (kaggle / "LOC_val_solution.csv").write_text(CSV)
    assert imagenet_boxes.find(root) == root / "../../../LOC_val_solution.csv"
    # ILSVRC2012_bbox_val_v3.tgz unpacked at the root: its val/*.xml beside the flat val images
    plain = tmp_path / "plain"
    (plain / "val").mkdir(parents=True)
    (plain / "val/ILSVRC2012_val_00000003.JPEG").write_bytes(b"")
    assert imagenet_boxes.find(plain) is None
    (plain / "val/ILSVRC2012_val_00000003.xml").write_text(XML)
    assert imagenet_boxes.find(plain) == plain / "val"
    # data.val_boxes: that file or folder, whatever the root holds; a wrong one is an error naming the key
    assert imagenet_boxes.find(plain, kaggle / "LOC_val_solution.csv") == kaggle / "LOC_val_solution.csv"
    assert imagenet_boxes.find(tmp_path / "none", plain / "val") == plain / "val"
    with pytest.raises(DatasetError, match=r"data.val_boxes=.*missing.csv: .*not found"):
        imagenet_boxes.find(plain, tmp_path / "missing.csv")
    with pytest.raises(DatasetError, match="data.val_boxes=.*holds no \\*.xml"):
        imagenet_boxes.find(plain, kaggle)


@pytest.mark.parametrize("size", [(500, 375), (333, 500), (120, 120)])
def test_boxes_land_where_torchvision_puts_their_pixels(size):
    """A box painted into the original, resized and centre-cropped twice by torchvision: its edges in the
    network's input are where input_boxes says, within a pixel."""
    w, h = size
    corners = np.array([[0.3 * w, 0.2 * h, 0.8 * w, 0.7 * h], [0.35 * w, 0.5 * h, 0.45 * w, 0.9 * h]]).round()
    got = input_boxes(corners, w, h, 128, 112)
    for (x0, y0, x1, y1), box in zip(corners.astype(int), got):
        img = torch.zeros(1, h, w)
        img[0, y0 : y1 + 1, x0 : x1 + 1] = 1.0  # inclusive pixel indices
        seen = F.center_crop(F.center_crop(F.resize(img, 128, antialias=True), 128), 112)[0]
        cols, rows = np.flatnonzero(seen.max(0).values >= 0.5), np.flatnonzero(seen.max(1).values >= 0.5)
        edges = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]  # first covered pixel, one past the last
        expected = np.clip(box, 0, 112)  # a box beyond the crop is cut off in the picture
        assert np.abs(np.array(edges) - expected).max() <= 1.0, (size, edges, box)
