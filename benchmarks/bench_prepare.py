"""Prepare throughput and agreement against the obvious baseline (issues 3 and 13).

Baseline: PIL open + convert("RGB") + torchvision Resize(256) + CenterCrop(256) + np.asarray, one process.
Ours: ``zfnet.data.preprocess.center_crop`` per image in both modes (per core: one torch thread, like the
baseline's one PIL thread): ``exact`` (the default: PIL's own resize, the baseline's pixels) and
``fast_decode`` (opt-in: reduced-scale JPEG decoding + torch's uint8 resize); and the whole prepare stage
(decode, crop, WebDataset shards, sidecars, mean image, default exact mode) with 1 and 2 worker
processes. Targets: exact within 0.05 levels (mean absolute difference) of the baseline on every image;
>= 1.7x from 1 to 2 workers. (The earlier per-core target, 1.5x the baseline, was met only by the
approximate path, now ``fast_decode``.)

Agreement is measured per image, on the timing set and on ``BENCH_LARGE`` photo-like JPEGs (smooth areas,
edges, fine texture, noise) with short sides 512..1536, where the reduced-scale decode is used.

Every ratio is measured in the same run on the same files, baseline and candidate alternating within each
of ``BENCH_ROUNDS`` rounds (the machine is shared); the JSON has each round's times and the medians.

    .venv/bin/python benchmarks/bench_prepare.py      # BENCH_N=960 images, BENCH_ROUNDS=3, BENCH_LARGE=24

960 images = 30 shards of 32, so two workers split them evenly, as on a real dataset (ImageNet: ~40,000
shards). With 480 (15 shards) one process does 8 of 15, which alone caps the 1 -> 2 worker scaling at 1.875x
and measured 1.69x; at 960, 1.84x (both with the same code).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from omegaconf import OmegaConf
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import LOG, imagenet_like_jpegs, interleaved, machine, median_ratio, save  # noqa: E402

from zfnet.data.prepare import prepare  # noqa: E402
from zfnet.data.preprocess import center_crop  # noqa: E402

N = int(os.environ.get("BENCH_N", 960))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
LARGE = int(os.environ.get("BENCH_LARGE", 24))
LARGE_SIZES = [(683, 512), (512, 683), (1024, 768), (768, 1024), (1365, 1024), (1536, 1152), (2048, 1536), (1536, 2048)]


def baseline(paths):
    tf = T.Compose([T.Resize(256), T.CenterCrop(256)])
    for p in paths:
        np.asarray(tf(Image.open(p).convert("RGB")))


def exact(paths):
    for p in paths:
        center_crop(p, 256)


def fast(paths):
    for p in paths:
        center_crop(p, 256, fast_decode=True)


def large_photos(folder: Path, n: int, seed: int = 1) -> list[Path]:
    """Photo-like JPEGs with short sides 512..1536: smooth regions, sharp edges, a fine texture near the
    sampling rate and sensor-like noise (what a reduced-scale DCT decode gets wrong)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        w, h = LARGE_SIZES[i % len(LARGE_SIZES)]
        base = rng.integers(0, 256, (h // 24 + 2, w // 24 + 2, 3), dtype=np.uint8)
        arr = np.asarray(Image.fromarray(base).resize((w, h), Image.BICUBIC)).astype(np.float32)
        for _ in range(8):
            y, x = rng.integers(0, h - 30), rng.integers(0, w - 30)
            arr[y : y + rng.integers(10, h // 3), x : x + rng.integers(10, w // 3)] = rng.integers(0, 256, 3)
        yy, xx = np.mgrid[0:h, 0:w]
        arr += (40 * np.sin(rng.uniform(0.5, 1.2) * xx + rng.uniform(0.2, 0.6) * yy) * (xx > w // 2))[..., None]
        arr += rng.normal(0, 8, arr.shape)
        path = folder / f"large_{i:03d}.JPEG"
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def agreement(paths) -> dict:
    """Per image, each mode's (mean, max) absolute difference from the baseline's pixels; summarized as
    the mean over images, the worst image's mean, and the largest single-pixel difference. Two numbers per
    image: holding the arrays would grow this process by 1.5 GB, and forking the stage's workers from a
    process that large costs tens of milliseconds more."""
    diffs = {"exact": [], "fast_decode": []}
    for p in paths:
        ref = np.asarray(T.CenterCrop(256)(T.Resize(256)(Image.open(p).convert("RGB")))).astype(int)
        for mode, fast_decode in (("exact", False), ("fast_decode", True)):
            d = np.abs(center_crop(p, 256, fast_decode=fast_decode).astype(int) - ref)
            diffs[mode].append((float(d.mean()), int(d.max())))
    return {mode: {"mean_abs_diff": round(float(np.mean([m for m, _ in v])), 4),
                   "worst_image_mean_abs_diff": round(max(m for m, _ in v), 4),
                   "max_abs_diff": max(x for _, x in v), "images": len(v)} for mode, v in diffs.items()}


def stage(root: Path, out: Path, workers: int):
    shutil.rmtree(out, ignore_errors=True)
    cfg = OmegaConf.create({"size": 256, "shard_size": 32, "workers": workers, "shard_index": 0, "shard_count": 1,
                            "encoding": "npy", "quality": 95, "max_image_pixels": 89478485})
    prepare(cfg, root, out, progress=False)


def main():
    before = machine()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "in"
        paths = imagenet_like_jpegs(root, N)
        (root / "val" / "n00000000").mkdir(parents=True)
        os.link(paths[0], root / "val" / "n00000000" / "v.JPEG")
        large = large_photos(Path(tmp) / "large", LARGE)
        agree = {"imagenet_like": agreement(paths), "large_photos": agreement(large)}
        torch.set_num_threads(1)  # per core: the baseline's PIL runs on one thread
        exact(paths[:8]), fast(paths[:8])  # warm-up (decoder library, allocator)
        core = interleaved({"baseline": lambda: baseline(paths), "exact": lambda: exact(paths),
                            "fast_decode": lambda: fast(paths)}, ROUNDS)
        large_core = interleaved({"baseline": lambda: baseline(large), "exact": lambda: exact(large),
                                  "fast_decode": lambda: fast(large)}, ROUNDS)
        torch.set_num_threads(os.cpu_count() or 1)
        stage(root, Path(tmp) / "warm", 1)
        staged = interleaved({"1_worker": lambda: stage(root, Path(tmp) / "out1", 1),
                              "2_workers": lambda: stage(root, Path(tmp) / "out2", 2)}, ROUNDS)
    rate = lambda times, n=N: round(n / statistics.median(times), 1)  # noqa: E731
    save("prepare", {
        "images": N, "large_images": LARGE, "rounds": ROUNDS, "machine_before": before, "machine_after": machine(),
        "what": "per core: center_crop (exact default, and fast_decode) vs PIL+torchvision Resize/CenterCrop, "
                "1 torch thread, on ImageNet-like JPEGs (1 in 6 at 1024x768) and on large photo-like JPEGs (short "
                "side 512..1536); agreement: per-image absolute difference from that baseline; stage: prepare() "
                "end to end (decode, crop, shards, sidecars, mean image; exact) with 1 and 2 worker processes",
        "agreement_vs_torchvision": agree,
        "agreement_target_worst_image_mean": 0.05,
        "baseline_img_per_s": rate(core["baseline"]),
        "exact_img_per_s": rate(core["exact"]), "fast_decode_img_per_s": rate(core["fast_decode"]),
        "per_core_ratio_exact": round(median_ratio(core["baseline"], core["exact"]), 2),
        "per_core_ratio_fast_decode": round(median_ratio(core["baseline"], core["fast_decode"]), 2),
        "large_baseline_img_per_s": rate(large_core["baseline"], LARGE),
        "large_exact_img_per_s": rate(large_core["exact"], LARGE),
        "large_fast_decode_img_per_s": rate(large_core["fast_decode"], LARGE),
        "stage_1_worker_img_per_s": rate(staged["1_worker"]), "stage_2_workers_img_per_s": rate(staged["2_workers"]),
        "scaling_1_to_2_workers": round(median_ratio(staged["1_worker"], staged["2_workers"]), 2),
        "scaling_target": 1.7,
        "seconds": {**{f"per_core_{k}": [round(t, 4) for t in v] for k, v in core.items()},
                    **{f"large_{k}": [round(t, 4) for t in v] for k, v in large_core.items()},
                    **{f"stage_{k}": [round(t, 4) for t in v] for k, v in staged.items()}},
        "cores_per_timing": LOG,  # our_cores: CPU seconds of this run per wall second; other_cores: everyone else's
    })


if __name__ == "__main__":
    main()
