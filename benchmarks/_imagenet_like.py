"""A generated ImageNet-shaped prepared set for the scale benchmarks: the prepare stage's outputs
(WebDataset shards of 256 x 256 uint8 images, ``mean.npy``, ``classes.json``, ``stats.json``) written
directly, so a benchmark can measure the stages that read them at N and 10 N images without a real
ImageNet (never shipped: made in a temporary folder and deleted by the caller).

Images are smooth random colour fields (low-resolution noise upsampled, plus a little pixel noise), so their
statistics are closer to photos than white noise, and the .npy encoding's size is that of real shards.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from zfnet.data import shards
from zfnet.data.shards import encode, shard_name, write_shard


def _image(rng: np.random.Generator, size: int) -> np.ndarray:
    low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(low).resize((size, size), Image.BILINEAR), dtype=np.int16)
    img = img + rng.integers(-8, 9, img.shape, dtype=np.int16)
    return img.clip(0, 255).astype(np.uint8)


def make_prepared(out_dir: str | Path, val: int, train: int = 0, classes: int = 1000, size: int = 256,
                  shard_size: int = 1000, seed: int = 0) -> Path:
    """Write ``val`` (and ``train``) images of ``classes`` classes at ``size`` as prepared shards under
    ``out_dir``; returns ``out_dir``. Labels cycle over the classes; same arguments, same bytes."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    stats, total, count = {}, np.zeros((size, size, 3), np.float64), 0
    for split, n in (("train", train), ("val", val)):
        if n <= 0:
            continue
        for s, start in enumerate(range(0, n, shard_size)):
            samples = []
            for i in range(start, min(n, start + shard_size)):
                image = _image(rng, size)
                if split == "train":
                    total += image
                    count += 1
                ext, data = encode(image, "npy")
                samples.append({"__key__": f"{split}_{i:08d}", ext: data, "cls": str(i % classes).encode(),
                                "json": json.dumps({"path": f"{split}/{i:08d}.JPEG"}).encode()})
            write_shard(out / shard_name(split, s), samples)
        stats[split] = {"seen": n, "written": n, "rejected": 0, "shards": len(shards.shards(out, split))}
    mean = total / count if count else np.full((size, size, 3), 118.0)
    np.save(out / "mean.npy", mean.astype(np.float32))
    wnids = [f"n{c:08d}" for c in range(classes)]
    (out / "classes.json").write_text(json.dumps({"wnids": wnids, "names": wnids}))
    (out / "stats.json").write_text(json.dumps(stats))
    return out
