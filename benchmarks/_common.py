"""Shared bits of the benchmarks: timing, natural-looking JPEGs of ImageNet sizes, results as JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results"


def best_of(fn, repeats: int = 3) -> float:
    """Smallest wall time of ``repeats`` calls (the least disturbed run)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def imagenet_like_jpegs(folder: Path, n: int, classes: int = 4, seed: int = 0) -> list[Path]:
    """JPEGs at ImageNet's typical sizes (most 500x375 / 375x500 / 500x333, one in six larger), in
    train/<wnid>/ folders, with smooth content and edges so they compress like photographs."""
    rng = np.random.default_rng(seed)
    sizes = [(500, 375), (375, 500), (500, 333), (500, 375), (500, 400), (1024, 768)]
    paths = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        base = rng.integers(0, 256, (h // 24 + 2, w // 24 + 2, 3), dtype=np.uint8)
        arr = np.asarray(Image.fromarray(base).resize((w, h), Image.BICUBIC)).copy()
        for _ in range(8):
            y, x = rng.integers(0, h - 30), rng.integers(0, w - 30)
            arr[y : y + rng.integers(10, h // 3), x : x + rng.integers(10, w // 3)] = rng.integers(0, 256, 3)
        arr = np.clip(arr.astype(int) + rng.normal(0, 6, arr.shape), 0, 255).astype(np.uint8)
        path = folder / "train" / f"n{i % classes:08d}" / f"img_{i:05d}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path, quality=90)
        paths.append(path)
    return paths


def save(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return path
