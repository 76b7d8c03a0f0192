"""Schema of the claims stage (zfnet.claims): where the pipeline's outputs are and the tolerances of each
verdict."""

from __future__ import annotations

from typing import Annotated, List, Optional

from pydantic import Field

from zfnet.schema.types import Fraction, Group, NonEmpty, NonNegFloat, PosFloat, PosInt, Str, exactly

AtLeastOne = Annotated[float, Field(ge=1)]


class ClaimsEvolution(Group):
    fraction: PosFloat
    early: Annotated[List[Str], NonEmpty]
    late: Str


class ClaimsInvariance(Group):
    images: PosInt
    margin: NonNegFloat
    control_z: NonNegFloat
    linear_r2: Fraction
    linear_z: NonNegFloat
    rotation_drop: Fraction
    min_over_uniform: NonNegFloat


class ClaimsFilters(Group):
    rms_limit: Optional[PosFloat]
    rms_tolerance: NonNegFloat
    dominance_ratio: AtLeastOne
    dominance_over_control: AtLeastOne
    dead_fraction: Fraction
    dead_over_control: Fraction
    bands: Annotated[List[Fraction], exactly(2)]
    mid_over_control: NonNegFloat


class ClaimsOcclusion(Group):
    min_images: PosInt
    alpha: Annotated[float, Field(gt=0, le=1)]
    permutations: PosInt
    z: NonNegFloat


class ClaimsCorrespondence(Group):
    z: NonNegFloat


class ClaimsTable3(Group):
    little: NonNegFloat
    much_more: NonNegFloat
    chance_margin: NonNegFloat
    z: NonNegFloat


class ClaimsTransfer(Group):
    depth_rho: Annotated[float, Field(ge=-1, le=1)]
    z: NonNegFloat
    depth_z: NonNegFloat


class ClaimsGrouping(Group):
    layers: Annotated[List[Str], NonEmpty]
    high_layers: Annotated[List[Str], NonEmpty]
    maps_per_layer: PosInt
    k: Annotated[int, Field(ge=2)]
    images: Annotated[int, Field(ge=2)]
    draws: PosInt
    z: NonNegFloat


class Claims(Group):
    """The claims stage (zfnet.claims): where the pipeline's outputs are and the tolerances of each verdict."""

    metrics_path: Str
    table: Str
    checkpoints_dir: Str
    model: Str
    prepared_dir: Str
    curves_dir: Str
    occlusion_boxes: Str
    tables_dir: Str
    train_metrics: Str
    ablation_metrics: Str
    alexnet: Str
    zfnet: Str
    zfnet_noclip: Str
    ablation_models: Str
    bootstrap: Annotated[int, Field(ge=2)]
    evolution: ClaimsEvolution
    invariance: ClaimsInvariance
    filters: ClaimsFilters
    occlusion: ClaimsOcclusion
    correspondence: ClaimsCorrespondence
    table3: ClaimsTable3
    transfer: ClaimsTransfer
    grouping: ClaimsGrouping
