"""The paper's transfer numbers (Tables 4–7; paper.md), printed beside ours in reports/tables."""

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
