"""Training input over the prepared shards.

Images travel as uint8 (N, 3, 256, 256) (demo: 128); on the device, after the batch arrives, each
training sample becomes one of the paper's ten crops (4 corners + centre, × flip), drawn uniformly per
sample per epoch (``crops="ten"``), or a random crop + flip (``crops="random"``, Krizhevsky), minus the
per-pixel mean image cropped at the same place, in the paper's units (0–255 pixels, ``pixel_scale=1``).
Validation batches stay whole (mean-subtracted) so the model can score the centre crop and the
10-crop average from one batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from zfnet.data import shards
from zfnet.data.crops import batch_crops, random_crops, ten_crops


class StreamingShards(IterableDataset):
    """The training split streamed from its shards (for sets larger than memory): shards shuffled per
    epoch and split over nodes and workers, a shuffle buffer within, uint8 (3, H, W) + label out."""

    def __init__(self, urls: list[str], shuffle_buffer: int = 2000, seed: int = 0):
        self.urls, self.shuffle_buffer, self.seed, self.epochs = urls, shuffle_buffer, seed, 0

    def __iter__(self):
        import webdataset as wds

        # the shard order must be the same in every worker (they split it after shuffling) and new each
        # epoch: the DataLoader's base seed (drawn per epoch from the seeded RNG) is both
        info = torch.utils.data.get_worker_info()
        if info is not None:
            epoch_seed = info.seed - info.id
        else:
            self.epochs += 1
            epoch_seed = self.seed + self.epochs
        pipeline = wds.WebDataset(self.urls, shardshuffle=len(self.urls), seed=epoch_seed,
                                  nodesplitter=wds.split_by_node, workersplitter=wds.split_by_worker,
                                  empty_check=False)
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

    @property
    def num_classes(self) -> int:
        import json

        return len(json.loads((self.prepared_dir / "classes.json").read_text())["wnids"])

    def setup(self, stage: str | None = None) -> None:
        mean_path = self.prepared_dir / "mean.npy"
        if not mean_path.is_file():
            raise FileNotFoundError(f"{mean_path}: missing; run the prepare stage first")
        self.mean = torch.from_numpy(np.load(mean_path)).float().permute(2, 0, 1).contiguous()
        if self.crop > self.mean.shape[-1]:
            raise ValueError(f"data.crop={self.crop} is larger than the prepared images ({self.mean.shape[-1]})")
        self.splits = {}
        if not self.in_memory:
            self.splits["train"] = StreamingShards([str(p) for p in shards.shards(self.prepared_dir, "train")])
        for split in ("train", "val"):
            if split in self.splits:
                continue
            images, labels = shards.load_split(self.prepared_dir, split)
            self.splits[split] = TensorDataset(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
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
                              persistent_workers=False)
        return DataLoader(data, batch_size=n, shuffle=True, num_workers=self.num_workers,
                          drop_last=len(data) > self.batch_size, pin_memory=torch.cuda.is_available())

    def val_dataloader(self) -> DataLoader:
        # under DDP, Lightning's DistributedSampler pads the last batch by repeating samples when the
        # val set does not divide by the world size; the metrics are then over those few repeats too
        return DataLoader(self.splits["val"], batch_size=self.rank_batch_size, num_workers=self.num_workers)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float, minus the mean image, times pixel_scale."""
        mean = self.mean.to(images.device)
        return (images.float() - mean) * self.pixel_scale

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        if self.trainer is not None and self.trainer.training:
            if self.crops == "ten":
                # crop the uint8 images first, then subtract the same crop of the mean: 1.3x fewer pixels
                index = torch.randint(0, 10, (images.shape[0],), device=images.device)
                mean10 = ten_crops(self.mean.to(images.device), self.crop)  # (10, 3, s, s)
                x = (batch_crops(images, index, self.crop).float() - mean10[index]) * self.pixel_scale
            else:
                x = random_crops(self.normalize(images), self.crop)
            return x, labels
        return self.normalize(images), labels
