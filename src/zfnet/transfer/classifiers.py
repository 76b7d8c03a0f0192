"""Classifiers on frozen features (scikit-learn): the paper's new softmax and a linear SVM (§5.3).

Features are standardized (per dimension, fitted on the training fold) before either classifier.

* ``softmax``: multinomial logistic regression (L2, lbfgs) = a softmax layer trained to convergence.
* ``svm``: one-vs-rest linear SVM (``LinearSVC``, squared hinge, L2).
* VOC's images hold several classes: ``fit_multilabel_softmax`` trains the softmax on the label
  distribution of each image (uniform over its classes), which is cross-entropy with soft targets: each
  image appears once per class it holds, weighted 1/k. "Difficult"-only labels count as absent in training.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

__all__ = ["make", "fit_predict", "fit_multilabel_softmax"]

KINDS = ("softmax", "svm")


def make(kind: str, C: float = 1.0, max_iter: int = 2000, seed: int = 0) -> Pipeline:
    if kind == "softmax":
        clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    elif kind == "svm":
        clf = LinearSVC(C=C, max_iter=max_iter, random_state=seed)
    else:
        raise ValueError(f"transfer classifier: expected one of {KINDS}, got {kind!r}")
    return make_pipeline(StandardScaler(), clf)


def _fit(pipe: Pipeline, x: np.ndarray, y: np.ndarray, **fit_params) -> Pipeline:
    with warnings.catch_warnings():
        # a few thousand samples in thousands of dimensions: separable, so the optimum is approached
        # slowly; max_iter bounds the time and the held-out score is what is reported
        warnings.simplefilter("ignore", ConvergenceWarning)
        return pipe.fit(x, y, **fit_params)


def fit_predict(kind: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, **settings) -> np.ndarray:
    """Predicted labels of ``x_test`` from a ``kind`` classifier fitted on the training fold."""
    return _fit(make(kind, **settings), x_train, y_train).predict(x_test)


def fit_multilabel_softmax(x_train: np.ndarray, targets: np.ndarray, x_test: np.ndarray, **settings) -> np.ndarray:
    """Class scores (M, C) of a softmax trained on multi-label ``targets`` ((N, C) in {1, -1, 0})."""
    rows, cols = np.nonzero(targets > 0)
    if len(rows) == 0:
        raise ValueError("VOC training split: no positive label")
    k = (targets > 0).sum(axis=1)
    scores = np.zeros((len(x_test), targets.shape[1]))
    if len(np.unique(cols)) == 1:  # one class ever positive: nothing to discriminate, it scores 1
        scores[:, cols[0]] = 1.0
        return scores
    pipe = make("softmax", **settings)
    _fit(pipe, x_train[rows], cols, logisticregression__sample_weight=1.0 / k[rows])
    proba = pipe.predict_proba(x_test)
    scores[:, pipe.classes_] = proba  # a class never positive in training scores 0
    return scores
