"""Training-loader throughput against torchvision ImageFolder on the original JPEGs (issue 3).

Baseline: ImageFolder + Resize(256), CenterCrop(256), RandomCrop(224), RandomHorizontalFlip, PILToTensor,
minus the mean image, batches of 64. Ours: the prepared WebDataset shards streamed by
ShardDataModule(in_memory=False) (and the in-memory path), crop/flip/mean as batched tensor ops after
the batch arrives. Same number of workers. Target: >= 5x samples per second.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from omegaconf import OmegaConf
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import imagenet_like_jpegs, save  # noqa: E402

from zfnet.data.datamodule import ShardDataModule  # noqa: E402
from zfnet.data.prepare import prepare  # noqa: E402

N = int(os.environ.get("BENCH_N", 480))
WORKERS = int(os.environ.get("BENCH_WORKERS", 2))


class _Training:
    training = True
    world_size = 1


def samples_per_s(loader, step) -> float:
    start, n = time.perf_counter(), 0
    for batch in loader:
        x, _ = step(batch)
        n += x.shape[0]
    return n / (time.perf_counter() - start)


def main():
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "in"
        imagenet_like_jpegs(root, N)
        (root / "val" / "n00000000").mkdir(parents=True)
        os.link(next((root / "train" / "n00000000").iterdir()), root / "val" / "n00000000" / "v.JPEG")
        out = Path(tmp) / "prepared"
        prepare(OmegaConf.create({"size": 256, "shard_size": 64, "workers": 2, "shard_index": 0, "shard_count": 1,
                                  "encoding": "npy", "quality": 95, "max_image_pixels": 89478485}), root, out, progress=False)
        mean = torch.from_numpy(np.load(out / "mean.npy")).float().permute(2, 0, 1)
        tf = T.Compose([T.Resize(256), T.CenterCrop(256), T.RandomCrop(224), T.RandomHorizontalFlip(), T.PILToTensor()])
        base = DataLoader(ImageFolder(str(root / "train"), transform=tf), batch_size=64, shuffle=True, num_workers=WORKERS)
        crop_mean = mean[:, 16:240, 16:240]
        base_rate = samples_per_s(base, lambda b: (b[0].float() - crop_mean, b[1]))

        rates = {}
        for name, in_memory in (("streaming", False), ("in_memory", True)):
            dm = ShardDataModule(out, crop=224, batch_size=64, crops="ten", num_workers=WORKERS if not in_memory else 0,
                                 in_memory=in_memory)
            dm.setup()
            dm.trainer = _Training()
            loader = dm.train_dataloader()
            rates[name] = samples_per_s(loader, lambda b: dm.on_after_batch_transfer(b, 0))
    save("loader", {
        "images": N, "workers": WORKERS,
        "imagefolder_samples_per_s": round(base_rate, 1),
        "shards_streaming_samples_per_s": round(rates["streaming"], 1),
        "shards_in_memory_samples_per_s": round(rates["in_memory"], 1),
        "ratio_streaming": round(rates["streaming"] / base_rate, 2),
        "ratio_in_memory": round(rates["in_memory"] / base_rate, 2),
    })


if __name__ == "__main__":
    main()
