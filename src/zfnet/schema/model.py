"""Schema of the architecture (``model``, also what ``zfnet.models.build`` checks) and the Table 3 groups
(``ablation`` rows, ``table3``)."""

from __future__ import annotations

from typing import Annotated, Dict, List, Literal, Optional

from pydantic import Field, create_model

from zfnet.paper import REMOVABLE
from zfnet.schema.types import (Expect, Group, NonNegFloat, PosFloat, PosInt, Probability, Str, check, exactly)

Percent = Annotated[float, Field(ge=0, le=100)]
ModelName = Literal["zfnet", "alexnet"]


class Lrn(Group):
    """Local response normalization (Krizhevsky's constants in conf/model/*.yaml)."""

    size: Annotated[int, Field(ge=1), check(lambda n: n % 2 == 1), Expect("and odd", alone=False)]
    alpha: NonNegFloat
    beta: NonNegFloat
    k: PosFloat  # the denominator's constant: 0 divides zero activations by zero


class Model(Group):
    name: ModelName
    width: PosFloat
    conv_maps: Optional[Annotated[List[PosInt], exactly(5)]]
    fc_units: Optional[Annotated[List[PosInt], exactly(2)]]
    remove: List[Literal[REMOVABLE]]  # type: ignore[valid-type]
    dropout: Probability
    init: Literal["paper", "kaiming"]
    lrn: Optional[Lrn]


# A Table 3 row's model keys: any subset of ``model`` (each key optional, null meaning "the base's")
ModelOverrides = create_model(
    "ModelOverrides", __base__=Group, __module__=__name__,
    **{name: (Optional[Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation], None)
       for name, info in Model.model_fields.items()})


class PaperErrors(Group):
    train_top1: Optional[Percent]
    val_top1: Optional[Percent]
    val_top5: Optional[Percent]


class AblationRow(Group):
    row: Str
    base: ModelName
    paper: PaperErrors
    model: ModelOverrides  # type: ignore[valid-type]


Ablation = Dict[str, AblationRow]


class Table3(Group):
    epochs: PosInt
    width: PosFloat
    out_dir: Str
    metrics_dir: Str
    table: Str
