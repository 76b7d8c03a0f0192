"""Schema of training: the optimisation (``train``) and Lightning's ``trainer``."""

from __future__ import annotations

from typing import Annotated, Any, List, Literal, Optional

from pydantic import Field

from zfnet.schema.types import (Expect, Group, NonNegFloat, NonNegInt, OpenUnit, PosInt, Probability, Str,
                                _is_int, check)

# Lightning's accepted ``precision`` values (lightning_fabric's _PRECISION_INPUT; a test compares them)
PRECISIONS = ("transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true",
              "bf16-mixed", "32-true", "64-true", 64, 32, 16, "64", "32", "16", "bf16")

Devices = Annotated[Any, check(
    lambda v: (_is_int(v) and (v >= 1 or v == -1)) or v == "auto"
    or (isinstance(v, str) and all(p.strip().isdigit() for p in v.split(",")))
    or (isinstance(v, list) and len(v) >= 1 and all(_is_int(x) and x >= 0 for x in v))),
    Expect("an int >= 1, -1 (all), 'auto', or a list of device indices >= 0")]
LimitBatches = Annotated[Any, check(lambda v: (_is_int(v) and v >= 1) or (isinstance(v, float) and 0 < v <= 1)),
                         Expect("an int >= 1 (batches) or a float in (0, 1] (a fraction of the epoch)")]


class Train(Group):
    out_dir: Optional[Str]  # null: the run's Hydra output dir (zfnet.training.outputs)
    metrics_path: Optional[Str]
    history_path: Optional[Str]
    epochs: PosInt
    batch_size: PosInt
    lr: NonNegFloat  # torch's own bound; 0 keeps the weights (tests compare runs at their init)
    momentum: Probability
    weight_decay: NonNegFloat
    lr_factor: OpenUnit
    lr_patience: NonNegInt
    rms_clip: Optional[Annotated[float, Field(gt=0)]]
    checkpoint_epochs: List[PosInt]
    limit_train_batches: Optional[LimitBatches]
    eval_crop_chunk: Annotated[int, Field(ge=10)]  # crops per validation forward (whole images' ten crops)
    deterministic: bool
    variant: Optional[Str]


class Trainer(Group):
    accelerator: Literal["cpu", "gpu", "cuda", "mps", "tpu", "auto"]
    devices: Devices
    num_nodes: PosInt
    strategy: Str
    precision: Literal[PRECISIONS]  # type: ignore[valid-type]
    threads: PosInt  # torch threads per rank, set per job


__all__ = ["PRECISIONS", "Train", "Trainer"]
