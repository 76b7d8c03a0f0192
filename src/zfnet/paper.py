"""The paper's facts, written once and torch-free: its layer names, the layers Table 3 removes, its
experimental setting (§3, §4, §5) and its tables' numbers (docs/paper.md is the digest they come from).

``SETTING`` is what a run is compared against to say whether it is a reduced one: ``profile=paper``
(conf/profile/paper.yaml) sets these values; tests/test_paper_profile.py checks the two agree.

"The survey" cited across the code is I. Hadji and R. P. Wildes, "What Do We Understand About Convolutional
Networks?", arXiv:1803.08834, 2018 (§4.1.1: understanding ConvNets via visualization; §4.1.2: via ablation).
"""

from __future__ import annotations

# Fig. 3: the network's layers, by the paper's names (conv1..conv5, fc6, fc7, then the C-way softmax fc8)
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
CONV_LAYERS = LAYERS[:5]    # the layers Figs. 2, 4 and 6 visualize
FEATURE_LAYERS = LAYERS[:7]  # the layers whose features Table 7 and the claims read (fc8 is the classifier)
REMOVABLE = ("conv3", "conv4", "fc6", "fc7")  # Table 3 removes these (and only these)

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


# ------------------------------------------------------------------------------------------- the tables
# Table 1: occlusion -> layer -> (mean, std) of the Δ sign-disagreement (lower = more consistent)
TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "Right eye": {"layer5": (0.067, 0.007), "layer7": (0.069, 0.015)},
    "Left eye": {"layer5": (0.069, 0.007), "layer7": (0.068, 0.013)},
    "Nose": {"layer5": (0.079, 0.017), "layer7": (0.069, 0.011)},
    "Random": {"layer5": (0.107, 0.017), "layer7": (0.073, 0.014)},
}

# Table 2: ImageNet 2012 val error (%) of one convnet
TABLE2 = {
    "zfnet": {"model": "1 convnet as per Fig. 3", "val_top1": 38.4, "val_top5": 16.5},
    "alexnet": {"model": "Replication of Krizhevsky, 1 convnet", "val_top1": 40.5, "val_top5": 18.1},
}

# Table 4, Caltech-101: mean per-class accuracy % (± std over 5 folds) by training images per class
TABLE4 = {
    "Bo et al. 2013": {30: "81.4 ± 0.33"},
    "Jianchao et al. 2009": {15: "73.2", 30: "84.3"},
    "Non-pretrained convnet": {15: "22.8 ± 1.5", 30: "46.5 ± 1.7"},
    "ImageNet-pretrained convnet": {15: "83.8 ± 0.5", 30: "86.5 ± 0.5"},
}

# Table 5, Caltech-256
TABLE5 = {
    "Sohn et al. 2011": {15: "35.1", 30: "42.1", 45: "45.7", 60: "47.9"},
    "Bo et al. 2013": {15: "40.5 ± 0.4", 30: "48.0 ± 0.2", 45: "51.9 ± 0.2", 60: "55.2 ± 0.3"},
    "Non-pretrained convnet": {15: "9.0 ± 1.4", 30: "22.5 ± 0.7", 45: "31.2 ± 0.5", 60: "38.8 ± 1.4"},
    "ImageNet-pretrained convnet": {15: "65.7 ± 0.2", 30: "70.6 ± 0.2", 45: "72.7 ± 0.4", 60: "74.2 ± 0.3"},
}

# Table 6, PASCAL VOC 2012 test: AP % per class (the paper's model), mean 79.0
TABLE6 = {
    "aeroplane": 96.0, "bicycle": 77.1, "bird": 88.4, "boat": 85.5, "bottle": 55.8, "bus": 85.8, "car": 78.6,
    "cat": 91.2, "chair": 65.0, "cow": 74.4, "diningtable": 67.7, "dog": 87.8, "horse": 86.0, "motorbike": 85.1,
    "person": 90.9, "pottedplant": 52.2, "sheep": 83.6, "sofa": 61.1, "train": 91.8, "tvmonitor": 76.1,
}
TABLE6_MEAN = 79.0

# Table 7: one layer's features + linear SVM or softmax; Caltech-101 (30/class), Caltech-256 (60/class)
TABLE7 = {
    ("svm", 1): ("44.8 ± 0.7", "24.6 ± 0.4"),
    ("svm", 2): ("66.2 ± 0.5", "39.6 ± 0.3"),
    ("svm", 3): ("72.3 ± 0.4", "46.0 ± 0.3"),
    ("svm", 4): ("76.6 ± 0.4", "51.3 ± 0.1"),
    ("svm", 5): ("86.2 ± 0.8", "65.6 ± 0.3"),
    ("svm", 7): ("85.5 ± 0.4", "71.7 ± 0.2"),
    ("softmax", 5): ("82.9 ± 0.4", "65.7 ± 0.5"),
    ("softmax", 7): ("85.4 ± 0.4", "72.6 ± 0.1"),
}
TABLE7_SIZES = {"caltech101": 30, "caltech256": 60}
