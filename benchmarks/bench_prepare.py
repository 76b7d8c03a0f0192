"""Prepare throughput against the obvious baseline (issue 3).

Baseline: PIL open + convert("RGB") + torchvision Resize(256) + CenterCrop(256), one process.
Ours: zfnet.data.preprocess.center_crop per image (per core), and the whole prepare stage (decode, crop,
WebDataset shards, mean image) with 1 and 2 worker processes. Targets: >= 1.5x per core, >= 1.7x from 1
to 2 workers. Ratios are measured in the same run on the same files.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torchvision.transforms as T
from omegaconf import OmegaConf
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, imagenet_like_jpegs, save  # noqa: E402

from zfnet.data.prepare import prepare  # noqa: E402
from zfnet.data.preprocess import center_crop  # noqa: E402

N = int(os.environ.get("BENCH_N", 480))


def baseline(paths):
    tf = T.Compose([T.Resize(256), T.CenterCrop(256)])
    for p in paths:
        np.asarray(tf(Image.open(p).convert("RGB")))


def ours(paths):
    for p in paths:
        center_crop(p, 256)


def stage(root: Path, out: Path, workers: int):
    cfg = OmegaConf.create({"size": 256, "shard_size": 32, "workers": workers, "shard_index": 0, "shard_count": 1,
                            "encoding": "npy", "quality": 95, "max_image_pixels": 89478485})
    prepare(cfg, root, out, progress=False)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "in"
        paths = imagenet_like_jpegs(root, N)
        (root / "val").mkdir()
        (root / "val" / "n00000000").mkdir()
        os.link(paths[0], root / "val" / "n00000000" / "v.JPEG")
        t_base = best_of(lambda: baseline(paths))
        t_ours = best_of(lambda: ours(paths))
        diffs = [np.abs(center_crop(p, 256).astype(int) - np.asarray(T.CenterCrop(256)(T.Resize(256)(Image.open(p).convert("RGB")))).astype(int)).mean()
                 for p in paths[:24]]
        import shutil

        def run_stage(workers):
            out = Path(tmp) / f"out{workers}"
            shutil.rmtree(out, ignore_errors=True)
            stage(root, out, workers)

        t1 = best_of(lambda: run_stage(1), repeats=2)
        t2 = best_of(lambda: run_stage(2), repeats=2)
    save("prepare", {
        "images": N, "cpu_count": os.cpu_count(),
        "baseline_img_per_s": round(N / t_base, 1), "center_crop_img_per_s": round(N / t_ours, 1),
        "per_core_ratio": round(t_base / t_ours, 2),
        "mean_abs_diff_vs_torchvision": round(float(np.mean(diffs)), 3),
        "stage_1_worker_img_per_s": round(N / t1, 1), "stage_2_workers_img_per_s": round(N / t2, 1),
        "scaling_1_to_2_workers": round(t1 / t2, 2),
    })


if __name__ == "__main__":
    main()
