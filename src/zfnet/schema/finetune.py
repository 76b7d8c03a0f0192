"""Schema of the stages that take a trained network further: ``finetune`` (Fig. 9-style learning curves on a
new dataset) and ``dissect`` (NetDissect's unit labels)."""

from __future__ import annotations

from typing import Annotated, Any, Dict, List, Literal, Optional

from pydantic import Field, model_validator

from zfnet.schema.types import (Expect, Group, NonEmpty, NonNegFloat, OpenUnit, PosFloat, PosInt, Probability, Seed,
                                Str, broken, check, exactly, given)

Std = Optional[Annotated[List[PosFloat], exactly(3)]]


class FinetuneStrategy(Group):
    trainable: Literal["last", "fc", "all"]
    pretrained: bool
    lr: NonNegFloat
    pretrained_lr: Optional[NonNegFloat] = None


class FinetuneAnalysis(Group):
    layer: Optional[Str]
    maps: PosInt
    k: PosInt


class Finetune(Group):
    """The finetune stage (zfnet.finetune): data, source network, learning curve, strategies."""

    root: Str
    classes: Optional[Annotated[List[Str], check(lambda c: len(c) >= 2 and len(set(c)) == len(c)),
                                Expect("a list of at least 2 distinct class names")]]
    ground_truth: Optional[Str]
    checkpoint: Str
    model: Optional[Str]
    weights: Optional[Str]
    mean: Any
    std: Std
    val_per_class: PosInt
    train_per_class: Annotated[List[PosInt], NonEmpty]
    epochs: PosInt
    batch_size: PosInt
    momentum: Probability
    weight_decay: NonNegFloat
    seed: Seed
    workers: PosInt
    analysis: FinetuneAnalysis
    only: Optional[Str]
    out_dir: Str
    metrics_dir: Str
    models_dir: Str
    table: Str
    strategies: Dict[str, FinetuneStrategy] = {}

    @model_validator(mode="after")
    def _only_a_strategy(self) -> "Finetune":
        if given(self.only) and self.only is not None and "strategies" in self.model_fields_set \
                and self.only not in self.strategies:
            broken([("only", self.only, f"expected null or a strategy of `{{p}}strategies`: {sorted(self.strategies)}")])
        return self


class Dissect(Group):
    """The dissect stage (zfnet.stages.dissect): probe set, model and layers, NetDissect's thresholds."""

    probe_dir: Str
    categories: Optional[Annotated[List[Str], NonEmpty]]
    max_images: Optional[PosInt]
    checkpoint: Str
    model: Optional[Str]
    weights: Optional[Str]
    layers: Optional[Annotated[List[Str], NonEmpty]]
    input_size: Optional[Annotated[int, Field(ge=8)]]
    mean: Any
    std: Std
    scale: PosFloat
    quantile: OpenUnit
    iou_threshold: Probability
    top_units: PosInt
    top_images: PosInt
    batch_size: PosInt
    device: Optional[Str]
    figures_dir: Str
    tables_dir: Str
    metrics_path: Str
