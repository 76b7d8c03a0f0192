"""Evaluation protocols of §5.2: seeded train/test folds and the scores the paper reports.

* Caltech-101 (Table 4): per class ``n_train`` training images (15 or 30) and up to ``n_test`` (50) test
  images, drawn at random per fold; 5 folds; mean per-class accuracy (the mean of the per-class recalls),
  reported as mean ± std over folds.
* Caltech-256 (Table 5, Griffin et al. 2007): per class ``n_train`` (15/30/45/60) training images and up to
  ``n_test`` (25) test images among the rest; the same score.
* VOC 2012 (Table 6): average precision per class, VOC 2010+ devkit style: the area under the precision /
  recall curve after making precision monotonically decreasing, "difficult"-only images ignored.

Folds are a pure function of (seed, fold, n_train): the same arguments give the same split on any machine.
"""

from __future__ import annotations

import numpy as np

__all__ = ["folds", "mean_per_class_accuracy", "voc_ap", "mean_std"]


def folds(labels: np.ndarray, n_train: int, n_test: int | None, n_folds: int, seed: int = 0,
          dataset: str = "dataset") -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_folds`` (train indices, test indices) pairs, per class ``n_train`` / up to ``n_test`` images.

    A class needs more than ``n_train`` images (at least one to test on); otherwise a ``ValueError`` names
    the class, its size and the setting.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    short = [(c, n) for c, n in zip(classes.tolist(), counts.tolist()) if n <= n_train]
    if short:
        c, n = short[0]
        raise ValueError(f"{dataset}: {n_train} training images per class need at least {n_train + 1} images in "
                         f"every class; class {c} has {n} ({len(short)} classes too small); lower train_per_class")
    out = []
    for fold in range(n_folds):
        rng = np.random.default_rng([seed, fold, n_train])
        train, test = [], []
        for c in classes:
            members = rng.permutation(np.flatnonzero(labels == c))
            train.append(members[:n_train])
            test.append(members[n_train : None if n_test is None else n_train + n_test])
        out.append((np.sort(np.concatenate(train)), np.sort(np.concatenate(test))))
    return out


def mean_per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over the classes present in ``y_true`` of the fraction of their images predicted correctly."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError("mean_per_class_accuracy: no test images")
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]))


def voc_ap(scores: np.ndarray, targets: np.ndarray) -> float:
    """Average precision of one class, as the VOC 2010+ devkit computes it.

    ``targets``: 1 positive, -1 negative, 0 difficult (left out). NaN when there is no positive.
    """
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    keep = targets != 0
    scores, positive = scores[keep], targets[keep] > 0
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(positive[order])
    fp = np.cumsum(~positive[order])
    # tied scores form one operating point: keep only the last position of each run of equal scores
    s = scores[order]
    last = np.r_[s[1:] != s[:-1], True]
    recall = np.r_[0.0, tp[last] / n_pos]
    precision = np.r_[1.0, tp[last] / (tp[last] + fp[last])]
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone envelope
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def mean_std(values) -> tuple[float, float]:
    """Mean and (population) standard deviation over folds, in percent."""
    v = 100 * np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std())
