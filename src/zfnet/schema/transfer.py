"""Schema of the transfer experiments (Tables 4-8: ``transfer``) and the train/test ``overlap`` check."""

from __future__ import annotations

from typing import Annotated, List, Literal, Optional

from pydantic import Field, model_validator

from zfnet.schema.types import (Group, NonEmpty, NonNegFloat, PosFloat, PosInt, Probability, Seed, Str,
                                broken, given)

Split = Literal["train", "val", "trainval"]


class Overlap(Group):
    out_dir: Str
    metrics_path: Str
    datasets: List[Literal["caltech101", "caltech256"]]
    size: PosInt
    threshold: Annotated[float, Field(gt=0, le=1)]
    block: PosInt
    workers: PosInt
    remove: bool
    ground_truth: Optional[Str]


class Features(Group):
    layers: Annotated[List[Str], NonEmpty]
    grid: PosInt
    batch_size: PosInt
    chunk: PosInt  # images decoded at a time: the extraction's memory


class Solver(Group):
    C: PosFloat
    max_iter: PosInt


class Classifier(Group):
    layer: Str
    softmax: Solver
    svm: Solver


class Caltech101(Group):
    root: Str
    background: bool
    train_per_class: Annotated[List[PosInt], NonEmpty]
    test_per_class: Optional[PosInt]
    folds: PosInt


class Caltech256(Group):
    root: Str
    clutter: bool
    train_per_class: Annotated[List[PosInt], NonEmpty]
    test_per_class: Optional[PosInt]
    folds: PosInt


class Voc2012(Group):
    root: Str
    train_split: Split
    test_split: Split


class Table7(Group):
    caltech101: PosInt
    caltech256: PosInt
    classifiers: List[Literal["svm", "softmax"]]
    untrained: bool


class NonPretrained(Group):
    enabled: bool
    folds: PosInt
    epochs: PosInt
    batch_size: PosInt
    lr: NonNegFloat  # torch's own bound; 0 keeps the weights (tests compare runs at their init)
    momentum: Probability
    weight_decay: NonNegFloat


class Transfer(Group):
    checkpoint: Str
    cache_dir: Str
    tables_dir: Str
    figures_dir: Str
    metrics_path: Str
    seed: Seed
    workers: PosInt
    features: Features
    classifier: Classifier
    caltech101: Caltech101
    caltech256: Caltech256
    voc2012: Voc2012
    table7: Table7
    nonpretrained: NonPretrained

    @model_validator(mode="after")
    def _classifier_layer_extracted(self) -> "Transfer":
        layer = self.classifier.layer if given(self.classifier) else None
        layers = self.features.layers if given(self.features) else None
        if given(layer, layers) and layer is not None and layers is not None and layer not in layers:
            broken([("classifier.layer", layer, f"expected one of {{p}}features.layers={layers!r}")])
        return self


