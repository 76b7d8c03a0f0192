"""Schema of the atlas stage (conf/atlas/default.yaml): layers, images, top-k, memory and the budgets."""

from __future__ import annotations

from typing import List, Optional

from zfnet.schema.types import Group, NonNegInt, PosInt, Str
from zfnet.schema.visualize import Images


class AtlasSynthesis(Group):
    units_per_layer: Optional[NonNegInt]  # null: every unit
    steps: PosInt
    size: Optional[PosInt]                # null: data.crop


class AtlasEvolution(Group):
    enabled: bool
    units_per_layer: Optional[NonNegInt]


class AtlasAblation(Group):
    images: PosInt
    units_per_layer: Optional[NonNegInt]


class Atlas(Group):
    layers: Optional[List[Str]]  # null: conv1..conv5 of our model
    images: Images               # a count or 'all'
    k: PosInt
    batch_size: PosInt
    max_units: PosInt
    out_dir: Str
    synthesis: AtlasSynthesis
    evolution: AtlasEvolution
    ablation: AtlasAblation
