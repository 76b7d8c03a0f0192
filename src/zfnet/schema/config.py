"""The composed config (``conf/config.yaml`` + a profile; ``params.yaml``): one group per ``conf/`` folder."""

from __future__ import annotations

from pydantic import model_validator

from zfnet.schema.atlas import Atlas
from zfnet.schema.claims import Claims
from zfnet.schema.data import Data, DemoData, Prepare
from zfnet.schema.finetune import Dissect, Finetune
from zfnet.schema.model import Ablation, Model, Table3
from zfnet.schema.report import Report, Wandb
from zfnet.schema.train import Train, Trainer
from zfnet.schema.transfer import Overlap, Transfer
from zfnet.schema.types import Group, Seed, Str, broken, given
from zfnet.schema.visualize import Visualize


class Config(Group):
    demo_data: DemoData
    data: Data
    prepare: Prepare
    model: Model
    train: Train
    trainer: Trainer
    visualize: Visualize
    report: Report
    wandb: Wandb
    ablation: Ablation = {}
    table3: Table3
    overlap: Overlap
    transfer: Transfer
    claims: Claims
    finetune: Finetune
    dissect: Dissect
    atlas: Atlas
    seed: Seed
    profile: Str

    @model_validator(mode="after")
    def _variant_is_a_row(self) -> "Config":
        variant = self.train.variant if given(self.train) else None
        if given(variant) and variant is not None and "ablation" in self.model_fields_set \
                and variant not in self.ablation:
            broken([("train.variant", variant, f"expected null or a Table 3 row of `ablation`: {sorted(self.ablation)}")])
        return self
