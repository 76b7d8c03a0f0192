"""Embedded demo data: deterministic synthetic ImageNet / Caltech-101 / Caltech-256 / VOC 2012.

One module per dataset written (:mod:`.imagenet`, :mod:`.caltech`, :mod:`.voc`, :mod:`.dogscats`), shared
drawing in :mod:`.shapes` (objects), :mod:`.canvas` (colours, background, noise) and :mod:`.render` (scenes,
process pool), class tables in :mod:`.classes`,
config in :mod:`.config`, the entry point :func:`generate` in :mod:`.build`.

:func:`generate` writes real JPEG files in the exact on-disk layouts of the real datasets, so the
adapters that read real data read these too. The same ``cfg`` always produces byte-identical files
(every image has its own RNG derived from ``seed`` + dataset + class + index).

Config: the ``demo_data`` group, its values in ``conf/demo_data/demo.yaml``, their types, ranges and relations
in :class:`zfnet.schema.data.DemoData` (``out_dir``: where the stage writes)::

    seed                  every image's RNG derives from it
    min_side, max_side    image sides drawn uniformly in [min_side, max_side], independent w/h
    jpeg_quality
    workers               processes used for drawing (1: in-process)
    imagenet              {num_classes, train_per_class, val_per_class}
    caltech101            {num_classes, per_class, background}     # + BACKGROUND_Google
    caltech256            {num_classes, per_class, clutter}        # + 257.clutter
    voc                   {num_images}
    duplicates            {caltech101, caltech256}: ImageNet-train copies planted in Caltech classes
    broden                {images, size}: probe set for network dissection (absent or 0 images: none)
    dogscats              {train_per_class, test}: Kaggle Dogs vs. Cats layout for fine-tuning (absent or 0: none)

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
    broden/index.csv, category.csv, label.csv, c_<category>.csv, images/demo/NNNN{.jpg,_<category>.png}
                                                            Broden layout (:mod:`zfnet.data.demo.broden`)
    dogscats/train/{cat,dog}.<i>.jpg, dogscats/test1/<n>.jpg   Kaggle "Dogs vs. Cats" (:mod:`zfnet.data.demo.dogscats`)
    ground_truth/dogscats.csv                               its labels (test1 included) and boxes
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
  ``family`` / ``texture`` name the drawn object (see :mod:`zfnet.data.demo.shapes`).
* Planted duplicates (``ground_truth/duplicates.csv``) are ImageNet-train images copied into Caltech
  class folders (replacing generated images there, so counts stay ``per_class``), resized by
  ``scale`` in [0.6, 0.95] and re-encoded at a different JPEG quality. Their sides are therefore
  ``round(scale * source side)`` and may fall below ``min_side``; every other image has sides in
  [min_side, max_side].
"""

from zfnet.data.demo.build import generate
from zfnet.data.demo.classes import (
    _CALTECH101_ALL, CALTECH101_CLASSES, CALTECH256_CLASSES, FACE_WNID, GT_COLUMNS_CALTECH, GT_COLUMNS_DUPLICATES,
    GT_COLUMNS_IMAGENET, IMAGENET_CLASSES, VOC_CLASSES,
)  # fmt: skip

__all__ = ["generate", "VOC_CLASSES", "FACE_WNID"]
