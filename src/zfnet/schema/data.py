"""Schema of the data groups: the demo generator (``demo_data``), the data module (``data``) and ``prepare``."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from zfnet.schema.types import Group, NonNegInt, PosInt, Quality, Seed, Str, broken, given

Count = Annotated[int, Field(ge=0, le=99999)]     # images of a demo set
Side = Annotated[int, Field(ge=32, le=4096)]      # pixels of a demo image side


class ImagenetDemo(Group):
    num_classes: PosInt   # at most the classes the demo knows (zfnet.data.demo.classes; checked by the generator)
    train_per_class: PosInt
    val_per_class: PosInt


class Caltech101Demo(Group):
    num_classes: PosInt
    per_class: Annotated[int, Field(ge=1, le=9999)]
    background: Annotated[int, Field(ge=0, le=9999)]


class Caltech256Demo(Group):
    num_classes: PosInt
    per_class: Annotated[int, Field(ge=1, le=9999)]
    clutter: Annotated[int, Field(ge=0, le=9999)]


class VocDemo(Group):
    num_images: Annotated[int, Field(ge=2, le=999999)]  # a train and a val image at least


class DuplicatesDemo(Group):
    caltech101: NonNegInt
    caltech256: NonNegInt


class BrodenDemo(Group):
    images: Count
    size: Annotated[int, Field(ge=32, le=1024)]


class DogsCatsDemo(Group):
    train_per_class: Count
    test: Count


class DemoData(Group):
    out_dir: Str
    seed: Seed
    min_side: Side
    max_side: Side
    jpeg_quality: Quality
    workers: Annotated[int, Field(ge=1, le=256)]
    imagenet: ImagenetDemo
    caltech101: Caltech101Demo
    caltech256: Caltech256Demo
    voc: VocDemo
    duplicates: DuplicatesDemo
    broden: BrodenDemo
    dogscats: DogsCatsDemo

    @model_validator(mode="after")
    def _relations(self) -> "DemoData":
        bad = []
        if given(self.min_side, self.max_side) and self.min_side > self.max_side:
            bad.append(("min_side", self.min_side, f"expected <= {{p}}max_side={self.max_side!r}"))
        dup, inet = self.duplicates, self.imagenet
        if not given(dup, inet, self.caltech101, self.caltech256):
            broken(bad)
            return self
        for ds in ("caltech101", "caltech256"):  # duplicates replace images of that dataset's classes
            n, src = getattr(dup, ds), getattr(self, ds)
            if given(n, src.num_classes, src.per_class) and n > src.num_classes * src.per_class:
                bad.append((f"duplicates.{ds}", n, f"expected <= {src.num_classes * src.per_class}, the {ds} object "
                            f"images ({{p}}{ds}.num_classes x {{p}}{ds}.per_class)"))
        if given(dup.caltech101, dup.caltech256, inet.num_classes, inet.train_per_class):
            n_train = inet.num_classes * inet.train_per_class
            if dup.caltech101 + dup.caltech256 > n_train:
                bad.append(("duplicates.caltech101", dup.caltech101, f"expected duplicates.caltech101 + "
                            f"duplicates.caltech256 ({dup.caltech101 + dup.caltech256}) <= {n_train}, the ImageNet "
                            "train images they are copied from ({p}imagenet.num_classes x "
                            "{p}imagenet.train_per_class)"))
        broken(bad)
        return self


class Data(Group):
    imagenet_root: Str
    val_boxes: Optional[Str]
    resize: PosInt
    crop: PosInt
    crops: Literal["ten", "random"]
    pixel_scale: Annotated[float, Field(gt=0)]
    batch_size: PosInt
    num_workers: NonNegInt
    in_memory: bool

    @model_validator(mode="after")
    def _crop_fits(self) -> "Data":
        if given(self.crop, self.resize) and self.crop > self.resize:
            broken([("crop", self.crop, f"expected <= {{p}}resize={self.resize!r} (the crop is cut from the "
                     "resized image)")])
        return self


class Prepare(Group):
    out_dir: Str
    shard_size: PosInt
    workers: PosInt
    shard_index: NonNegInt
    shard_count: PosInt
    max_image_pixels: PosInt
    encoding: Literal["npy", "jpg"]
    quality: Quality
    fast_decode: bool = False  # optional: reduced-scale JPEG decoding (not the exact default)

    @model_validator(mode="after")
    def _shard_exists(self) -> "Prepare":
        if given(self.shard_index, self.shard_count) and self.shard_index >= self.shard_count:
            broken([("shard_index", self.shard_index, f"expected < {{p}}shard_count={self.shard_count!r} (this "
                     "machine prepares shards i, i+n, ...)")])
        return self
