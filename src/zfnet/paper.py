"""The paper's experimental setting (§3, §4, §5; ``docs``-level facts, torch-free): what a run is compared
against to say whether it is a reduced one. ``profile=paper`` (conf/profile/paper.yaml) sets these values;
tests/test_paper_profile.py checks the two agree.
"""

from __future__ import annotations

# ImageNet 2012 (§3): 1.3M training images, 50k validation images, 1000 classes
IMAGENET_CLASSES = 1000
IMAGENET_TRAIN_IMAGES = 1_281_167
IMAGENET_VAL_IMAGES = 50_000

# Table 3's rows: Krizhevsky's model and ours with layers removed or resized
TABLE3_ROWS = ("alexnet", "alexnet_no_3_4", "alexnet_no_7", "alexnet_no_6_7", "alexnet_no_3_4_6_7", "alexnet_fc2048",
               "alexnet_fc8192", "zfnet", "zfnet_fc2048", "zfnet_fc8192", "zfnet_conv512_1024_512",
               "zfnet_fc8192_conv512_1024_512")

# config key -> (the paper's value, what it is). A run whose value differs is a reduced (or changed) run.
SETTING: dict[str, tuple[object, str]] = {
    "data.resize": (256, "smallest side resized to"),
    "data.crop": (224, "input crop"),
    "model.width": (1.0, "width multiplier (conv maps and fc units)"),
    "model.dropout": (0.5, "dropout in fc6, fc7"),
    "model.init": ("paper", "weight initialization (N(0, 0.01²))"),
    "train.epochs": (70, "training epochs"),
    "train.batch_size": (128, "minibatch"),
    "train.lr": (0.01, "learning rate"),
    "train.momentum": (0.9, "momentum"),
    "train.rms_clip": (0.1, "filter RMS clip"),
    "table3.epochs": (70, "Table 3: epochs per row"),
    "table3.width": (1.0, "Table 3: width multiplier"),
    "visualize.images": ("all", "Fig. 2: validation images searched for the top 9"),
    "transfer.caltech101.train_per_class": ([15, 30], "Table 4: training images per class"),
    "transfer.caltech256.train_per_class": ([15, 30, 45, 60], "Table 5: training images per class"),
    "transfer.table7.caltech101": (30, "Table 7: Caltech-101 training images per class"),
    "transfer.table7.caltech256": (60, "Table 7: Caltech-256 training images per class"),
}
