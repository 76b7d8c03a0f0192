"""Schema of the visualize stage: its searches (deconv, occlusion, invariance, correspondence), Fig. 6 and the
network-centric synthesis."""

from __future__ import annotations

from typing import Annotated, Any, List, Literal, Optional

from pydantic import Field, model_validator

from zfnet.paper import CONV_LAYERS
from zfnet.schema.types import (Expect, Group, NonNegFloat, NonNegInt, PosFloat, PosInt, Seed, Str, _is_int, broken,
                                check, given)


class Deconv(Group):
    maps_per_layer: PosInt
    k: PosInt


class Occlusion(Group):
    images: PosInt
    size: Optional[PosInt]
    stride: Optional[PosInt]
    layer: Str


class Invariance(Group):
    images: PosInt


class Correspondence(Group):
    class_: Str = Field(alias="class")
    images: PosInt
    size: Optional[PosInt]
    repeats: PosInt


class Fig6(Group):
    alexnet: Str
    zfnet: Str
    zfnet_noclip: Str


SynthesisClasses = Annotated[Any, check(lambda v: v == "all" or (_is_int(v) and v >= 0)
                                        or (isinstance(v, list) and all(_is_int(x) and x >= 0 for x in v))),
                             Expect("'all', an int >= 0 (the first n classes) or a list of class indices >= 0")]


class Synthesis(Group):
    """Network-centric synthesis in the visualize stage (zfnet.figures.synthesis.export_synthesis)."""

    enabled: bool
    steps: PosInt
    lr: PosFloat
    l2: NonNegFloat
    tv: NonNegFloat
    jitter: NonNegInt
    rotate: NonNegFloat
    blur_every: NonNegInt
    param: Literal["fft", "pixel"]
    classes: SynthesisClasses
    max_classes: PosInt
    maps_per_layer: PosInt
    inversion_images: NonNegInt
    inversion_steps: PosInt
    inversion_tv: NonNegFloat
    layers: Optional[List[Str]]
    seed: Seed
    threads: Optional[PosInt]


Images = Annotated[Any, check(lambda v: v == "all" or (_is_int(v) and v >= 1)), Expect("an int >= 1 or 'all'")]


class Visualize(Group):
    out_dir: Str
    checkpoint: Str
    checkpoints_dir: Str
    tables_dir: Str
    images: Images       # the validation images searched (streamed): a count or 'all'
    batch_size: PosInt   # images per forward of the searches: the stage's memory
    deconv: Deconv
    occlusion: Occlusion
    invariance: Invariance
    curves_dir: Optional[Str]
    correspondence: Correspondence
    fig6: Fig6
    model: Optional[Str]         # a registered model or torchvision:<arch>; null: the checkpoint's own
    weights: Optional[Str]       # a state-dict file for `model`
    layers: Optional[List[Str]]  # layer paths to analyse; null: the model's paper layers
    image_folder: Optional[Str]  # an ImageFolder-style folder; null: the prepared validation shards
    ground_truth: Optional[Str]  # folder of ground truth the dataset lacks (landmarks.csv for Table 1)
    synthesis: Synthesis

    @model_validator(mode="after")
    def _synthesis_layers(self) -> "Visualize":
        syn = self.synthesis.layers if given(self.synthesis) else None
        if given(syn, self.layers) and syn is not None and not set(syn) <= set(self.layers or CONV_LAYERS):
            broken([("synthesis.layers", syn, "expected null or a subset of the Fig. 2 layers, "
                     f"{{p}}layers={self.layers!r} (null: conv1..conv5)")])
        return self
