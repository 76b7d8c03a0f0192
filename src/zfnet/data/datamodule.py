"""Training input over the prepared shards.

Images travel as uint8 (N, 3, 256, 256) (demo: 128); on the device, after the batch arrives, each
training sample becomes one of the paper's ten crops (4 corners + centre, × flip), drawn uniformly per
sample per epoch (``crops="ten"``), or a random crop + flip (``crops="random"``, Krizhevsky), minus the
per-pixel mean image cropped at the same place, in the paper's units (0–255 pixels, ``pixel_scale=1``).
Validation batches stay whole (mean-subtracted) so the model can score the centre crop and the
10-crop average from one batch.

The loader's work per sample is small on purpose: streamed shards are viewed in place (``decode_npy``)
and stacked in their own HWC layout into one shared-memory batch (``collate_channels_last``: a memcpy
per sample, where stacking (3, H, W) views would be a transposing copy); in-memory batches are one
``index_select``. The batch reaches the device as (B, 3, H, W) uint8, a quarter of float32's bytes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset, default_collate

from zfnet.data import shards
from zfnet.data.crops import batch_crops, random_crops, ten_crops


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

    def __init__(self, urls: list[str], shuffle_buffer: int = 2000, seed: int = 0):
        self.urls, self.shuffle_buffer, self.seed, self.epochs = urls, shuffle_buffer, seed, 0

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
        mean_path = self.prepared_dir / "mean.npy"
        if not mean_path.is_file():
            raise FileNotFoundError(f"{mean_path}: missing; run the prepare stage first")
        self.mean = torch.from_numpy(np.load(mean_path)).float().permute(2, 0, 1).contiguous()
        self._mean10 = {}
        if self.crop > self.mean.shape[-1]:
            raise ValueError(f"data.crop={self.crop} is larger than the prepared images ({self.mean.shape[-1]})")
        self.splits = {}
        if not self.in_memory:
            self.splits["train"] = StreamingShards([str(p) for p in shards.shards(self.prepared_dir, "train")])
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
            return DataLoader(data, batch_size=n, num_workers=self.num_workers, pin_memory=torch.cuda.is_available(),
                              persistent_workers=self.num_workers > 0, collate_fn=collate_channels_last)
        return DataLoader(data, batch_size=n, shuffle=True, num_workers=self.num_workers, collate_fn=_batch,
                          drop_last=len(data) > self.batch_size, pin_memory=torch.cuda.is_available(),
                          persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        # under DDP, Lightning's DistributedSampler pads the last batch by repeating samples when the
        # val set does not divide by the world size; the metrics are then over those few repeats too
        return DataLoader(self.splits["val"], batch_size=self.rank_batch_size, num_workers=self.num_workers,
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
