"""Training input over the prepared shards.

Images travel as uint8 (N, 3, 256, 256) (demo: 128); on the device, after the batch arrives, each
training sample becomes one of the paper's ten crops (4 corners + centre, × flip), drawn uniformly per
sample per epoch (``crops="ten"``), or a random crop + flip (``crops="random"``, Krizhevsky), minus the
per-pixel mean image cropped at the same place, in the paper's units (0–255 pixels, ``pixel_scale=1``).
Validation batches stay whole (mean-subtracted) so the model can score the centre crop and the
10-crop average from one batch.

``in_memory: true`` (the demo) holds both splits as tensors. ``in_memory: false`` streams both from the shards,
so memory is bounded by the batch size, never by the number of images:
- training: ``StreamingShards`` (shards split over ranks, then workers; its length, and the loader's, are
  the samples and batches this rank will produce, so the progress bar has a total);
- validation: ``EvalShards`` over a ``SampleIndex`` (each image's byte range in its shard, read from the tar
  headers at setup: ~50 bytes per image, 2.4 MB for ImageNet's 50,000): images in shard order, each read once
  by one process. Under DDP rank r takes the contiguous slice [r N / W, (r+1) N / W) of the N images (no
  padding, no repeats) in the same number of batches on every rank (at most the rank batch size each), so the
  metrics, reduced across ranks at the epoch's end, count every image exactly once.

The loader's work per sample is small on purpose: streamed shards are viewed in place (``decode_npy``)
and stacked in their own HWC layout into one shared-memory batch (``collate_channels_last``: a memcpy
per sample, where stacking (3, H, W) views would be a transposing copy); in-memory batches are one
``index_select``. The batch reaches the device as (B, 3, H, W) uint8, a quarter of float32's bytes.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset, default_collate

from zfnet.data import shards
from zfnet.data.crops import batch_crops, random_crops, ten_crops

# Lightning warns about every IterableDataset with a length, that workers may duplicate data; ours split
# their data between workers, and their lengths are what an epoch yields (tests/test_eval_streaming.py)
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")


def collate_channels_last(samples: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch (3, H, W) uint8 images whose memory is HWC (as decoded): stacked in that layout (in a worker,
    straight into shared memory, by ``default_collate``), returned as a (B, 3, H, W) channels-last view."""
    images, labels = zip(*samples)
    batch = default_collate([img.permute(1, 2, 0) for img in images])
    return batch.permute(0, 3, 1, 2), torch.as_tensor(labels, dtype=torch.int64)


def _batch(batch):
    return batch


class InMemory(TensorDataset):
    """A TensorDataset whose DataLoader batches are one ``index_select`` per tensor (``__getitems__``),
    not a stack of B single-sample copies; pair with ``collate_fn=_batch``."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.int64)
        return tuple(t.index_select(0, index) for t in self.tensors)


class StreamingShards(IterableDataset):
    """The training split streamed from its shards (for sets larger than memory): shards shuffled per
    epoch and split over nodes and workers, a shuffle buffer within, uint8 (3, H, W) + label out (a view
    of the shard's HWC bytes: batch with ``collate_channels_last``)."""

    def __init__(self, urls: list[str], shuffle_buffer: int = 2000, seed: int = 0, sizes: list[int] | None = None):
        self.urls, self.shuffle_buffer, self.seed, self.epochs = urls, shuffle_buffer, seed, 0
        self.sizes = list(sizes) if sizes is not None else shards.shard_sizes([Path(u) for u in urls])
        if len(self.sizes) != len(self.urls):
            raise ValueError(f"StreamingShards: {len(self.sizes)} shard sizes for {len(self.urls)} shards")

    def shares(self, workers: int = 0) -> list[int]:
        """Samples each DataLoader worker of this process streams (one entry without workers): the shards
        are split as webdataset's ``split_by_node`` then ``split_by_worker`` split them (shards rank::world,
        then worker::workers; rank and world read the same way), before any shuffle."""
        from webdataset.utils import pytorch_worker_info

        rank, world, _, _ = pytorch_worker_info()
        mine = self.sizes[rank::world] if world > 1 else self.sizes
        n = max(1, int(workers))
        return [sum(mine[w::n]) for w in range(n)]

    def __len__(self) -> int:
        """The number of samples this process (rank) streams per epoch."""
        return sum(self.shares())

    def batches(self, batch_size: int, workers: int = 0) -> int:
        """Batches per epoch of a DataLoader with ``workers`` workers: each worker batches its own stream, so
        each ends with its own partial batch."""
        return sum(math.ceil(n / batch_size) for n in self.shares(workers))

    def __iter__(self):
        import webdataset as wds

        # the shard order is new each epoch: the DataLoader's base seed (drawn from the seeded RNG when the
        # workers start, the same in all of them) plus this copy's epoch count (persistent workers keep
        # their copy, and their seed, across epochs)
        self.epochs += 1
        info = torch.utils.data.get_worker_info()
        epoch_seed = (info.seed - info.id if info is not None else self.seed) + self.epochs
        pipeline = wds.WebDataset(self.urls, shardshuffle=len(self.urls), seed=epoch_seed,
                                  nodesplitter=wds.split_by_node, workersplitter=wds.split_by_worker,
                                  empty_check=False)
        with warnings.catch_warnings():
            # the image views the sample's immutable bytes; nothing writes to it (collation copies it)
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            for sample in pipeline.shuffle(self.shuffle_buffer):
                yield torch.from_numpy(shards.decode(sample)).permute(2, 0, 1), int(sample["cls"])


class StreamLoader(DataLoader):
    """A DataLoader over ``StreamingShards`` whose length is the number of batches it will yield (the
    torch default, ceil(samples / batch), misses the partial batch each worker ends with)."""

    def __len__(self) -> int:
        return self.dataset.batches(self.batch_size, self.num_workers)


class SampleIndex:
    """Where each image of a split lies in its shards (byte ranges read from the tar headers), in shard
    order; ``read(start, stop)`` reads a slice of images as one uint8 (n, 3, H, W) batch (channels-last
    memory) and its labels. Small and picklable (no open files): copied to each DataLoader worker."""

    def __init__(self, paths: list[Path]):
        self.paths = [str(p) for p in paths]
        rows = []
        for s, path in enumerate(self.paths):
            for key, members in shards.index_shard(path):
                kind = "npy" if "npy" in members else "jpg" if "jpg" in members else None
                if kind is None or "cls" not in members:
                    raise ValueError(f"{path}: sample {key} has {sorted(members)}; expected npy or jpg, and cls")
                rows.append((s, *members[kind], kind == "jpg", *members["cls"]))
        table = np.asarray(rows, dtype=np.int64).reshape(-1, 6)
        self.shard, self.offset, self.size, self.jpg, self.cls_offset, self.cls_size = table.T.copy()

    def __len__(self) -> int:
        return len(self.shard)

    def read(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = stop - start
        images, labels, fd, current = None, np.empty(n, np.int64), None, -1
        try:
            for i, k in enumerate(range(start, stop)):
                if self.shard[k] != current:  # one open shard at a time (images are in shard order)
                    if fd is not None:
                        os.close(fd)
                    current = int(self.shard[k])
                    fd = os.open(self.paths[current], os.O_RDONLY)
                data = shards.read_member(fd, int(self.offset[k]), int(self.size[k]))
                image = shards.decode({"jpg" if self.jpg[k] else "npy": data})
                if images is None:
                    images = np.empty((n, *image.shape), np.uint8)
                images[i] = image
                labels[i] = int(shards.read_member(fd, int(self.cls_offset[k]), int(self.cls_size[k])))
        finally:
            if fd is not None:
                os.close(fd)
        return torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(labels)


class EvalShards(IterableDataset):
    """A split read once, in order, in batches (use with ``DataLoader(batch_size=None)``), never held whole.

    This process (``rank`` of ``world``) takes the contiguous slice [rank N / world, (rank+1) N / world) of the
    N images and reads it in ``len(self)`` batches of at most ``batch_size`` images and near-equal sizes; every
    rank has the same number of batches (ranks' slices differ by at most one image), so no rank waits on a
    collective another never enters. DataLoader workers take batches j, j + workers, ... which the loader
    yields round-robin: the order of batches is the same with any number of workers."""

    def __init__(self, index: SampleIndex, batch_size: int, rank: int = 0, world: int = 1):
        n = len(index)
        if n < world:
            raise ValueError(f"{Path(index.paths[0]).parent if index.paths else '?'}: {n} images to evaluate on "
                             f"{world} processes; each process needs at least one")
        lo, hi = rank * n // world, (rank + 1) * n // world
        # the same count on every rank; fewer only if batch_size = 1 and this rank has one image less
        k = min(math.ceil(math.ceil(n / world) / batch_size), hi - lo)
        self.index, self.bounds = index, [lo + j * (hi - lo) // k for j in range(k + 1)]

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for j in range(worker, len(self), workers):
            yield self.index.read(self.bounds[j], self.bounds[j + 1])


class ShardDataModule(pl.LightningDataModule):
    def __init__(self, prepared_dir: str | Path, crop: int, batch_size: int, crops: str = "ten",
                 pixel_scale: float = 1.0, num_workers: int = 0, in_memory: bool = True):
        super().__init__()
        if crops not in ("ten", "random"):
            raise ValueError(f"data.crops: expected 'ten' or 'random', got {crops!r}")
        self.prepared_dir = Path(prepared_dir)
        self.crop, self.batch_size, self.crops = int(crop), int(batch_size), crops
        self.pixel_scale, self.num_workers, self.in_memory = float(pixel_scale), int(num_workers), bool(in_memory)
        self.mean: torch.Tensor | None = None
        self._mean10: dict[torch.device, torch.Tensor] = {}

    @property
    def num_classes(self) -> int:
        import json

        return len(json.loads((self.prepared_dir / "classes.json").read_text())["wnids"])

    def setup(self, stage: str | None = None) -> None:
        from zfnet.data.mean_image import read_mean_image

        self.mean = read_mean_image(self.prepared_dir / "mean.npy", "prepare.out_dir").contiguous()
        self._mean10 = {}
        if self.crop > self.mean.shape[-1]:
            raise ValueError(f"data.crop={self.crop} is larger than the prepared images ({self.mean.shape[-1]})")
        self.splits = {}
        if not self.in_memory:  # both splits stream: memory bounded by the batch, not by the split's size
            self.splits["train"] = StreamingShards([str(p) for p in shards.shards(self.prepared_dir, "train")])
            self.splits["val"] = SampleIndex(shards.shards(self.prepared_dir, "val"))
        for split in ("train", "val"):
            if split in self.splits:
                continue
            images, labels = shards.load_split(self.prepared_dir, split)
            self.splits[split] = InMemory(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
                                          torch.from_numpy(labels))

    @property
    def rank_batch_size(self) -> int:
        """The global batch split by world size: N GPUs step on the same global batch as one."""
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world:
            raise ValueError(f"train.batch_size={self.batch_size} is not divisible by the world size {world}")
        return self.batch_size // world

    def train_dataloader(self) -> DataLoader:
        n = self.rank_batch_size
        data = self.splits["train"]
        if isinstance(data, StreamingShards):
            return StreamLoader(data, batch_size=n, num_workers=self.num_workers, pin_memory=torch.cuda.is_available(),
                              persistent_workers=self.num_workers > 0, collate_fn=collate_channels_last)
        return DataLoader(data, batch_size=n, shuffle=True, num_workers=self.num_workers, collate_fn=_batch,
                          drop_last=len(data) > self.batch_size, pin_memory=torch.cuda.is_available(),
                          persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        data = self.splits["val"]
        if isinstance(data, SampleIndex):  # streamed: this rank's slice, each image once (see EvalShards)
            rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
            return DataLoader(EvalShards(data, self.rank_batch_size, rank, world), batch_size=None,
                              num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
        # in memory: under DDP, Lightning's DistributedSampler pads the last batch by repeating samples when
        # the val set does not divide by the world size; the metrics are then over those few repeats too
        return DataLoader(data, batch_size=self.rank_batch_size, num_workers=self.num_workers,
                          collate_fn=_batch, persistent_workers=self.num_workers > 0)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float, minus the mean image, times pixel_scale."""
        mean = self.mean.to(images.device)
        return (images.float() - mean) * self.pixel_scale

    def mean10(self, device: torch.device) -> torch.Tensor:
        """The ten crops of the mean image, (10, 3, crop, crop), made once per device."""
        if device not in self._mean10:
            self._mean10[device] = ten_crops(self.mean.to(device), self.crop).contiguous()
        return self._mean10[device]

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        if self.trainer is not None and self.trainer.training:
            if self.crops == "ten":
                # crop the uint8 images first, then subtract the same crop of the mean: 1.3x fewer pixels
                index = torch.randint(0, 10, (images.shape[0],), device=images.device)
                x = batch_crops(images, index, self.crop, minus=self.mean10(images.device))
                if self.pixel_scale != 1.0:
                    x.mul_(self.pixel_scale)
            else:
                x = random_crops(self.normalize(images), self.crop)
            return x, labels
        return self.normalize(images), labels
