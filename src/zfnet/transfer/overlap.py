"""Overlap removal (§5.2): Caltech images that are (near-)copies of ImageNet training images.

Every image becomes a small grey thumbnail (``size``×``size``, the whole image, antialiased), made zero-mean
and unit-norm, so the dot product of two thumbnails *is* their normalized (Pearson) correlation. All
Caltech thumbnails stay in memory; the ImageNet training set streams past them in blocks, each block one
matrix product (torch, multi-threaded BLAS) and one threshold. Pairs at or above ``threshold`` are
overlaps; their ImageNet images are removed from the training list the retrained model uses.

Thumbnails decode JPEGs at a reduced DCT scale (``Image.draft``: 1/8 of the pixels' work for a 500×375
photo), which the 32×32 target hides entirely. Unreadable images are listed, never fatal.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from zfnet.data.preprocess import BadImage, open_rgb
from zfnet.parallel import process_map, readable
from zfnet.progress import bar

__all__ = ["thumbnail", "thumbnails", "normalize", "correlate", "Overlaps", "find_overlaps", "score", "run"]

log = logging.getLogger(__name__)


def thumbnail(path: str | Path, size: int = 32) -> np.ndarray:
    """Grey ``size``×``size`` float32 thumbnail of the whole image (0–255), or ``BadImage``."""
    grey = _open_small(path, size).convert("L").resize((size, size), Image.BILINEAR, reducing_gap=2.0)
    return np.asarray(grey, dtype=np.float32)


def _open_small(path: str | Path, size: int) -> Image.Image:
    """Plain RGB/grey JPEGs decode straight to grey at the smallest DCT scale still >= 4x the thumbnail;
    anything else (CMYK, PNG, palette, 16-bit, broken files) goes through ``open_rgb``, which decodes it
    or raises ``BadImage`` with the reason (decompression bombs included)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            if img.format == "JPEG" and img.mode in ("L", "RGB"):
                img.draft("L", (4 * size, 4 * size))
                img.load()
                return img
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        pass
    return open_rgb(str(path))


def _thumb_or_reason(args: tuple[str, int]) -> np.ndarray | str:
    path, size = args
    try:
        return thumbnail(path, size)
    except BadImage as err:
        return err.reason
    except (OSError, SyntaxError, ValueError) as err:
        return f"corrupt ({type(err).__name__})"


def normalize(thumbs: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, ...) -> (N, D) float32, each row zero-mean and unit-norm (constant images: all zeros)."""
    x = torch.as_tensor(thumbs, dtype=torch.float32).reshape(len(thumbs), -1)
    x = x - x.mean(dim=1, keepdim=True)
    norm = x.norm(dim=1, keepdim=True)
    return torch.where(norm > 1e-6, x / norm.clamp_min(1e-6), torch.zeros_like(x))


def thumbnails(paths: Sequence[str | Path], size: int = 32, workers: int = 1, desc: str = "thumbnails",
               progress: bool = True) -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
    """(normalized (M, size²) thumbnails of the readable images, their indices into ``paths``,
    [(path, reason)] of the unreadable ones). Decoding runs in ``workers`` processes."""
    jobs = [(str(p), int(size)) for p in paths]
    results = process_map(_thumb_or_reason, jobs, workers, desc=desc, progress=progress, chunksize=16)
    arrays, keep, bad = readable(paths, results)
    stack = np.stack(arrays) if arrays else np.zeros((0, size, size), np.float32)
    return normalize(stack), keep, bad


def correlate(queries: torch.Tensor, gallery: Iterable[torch.Tensor], threshold: float
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blocked search of normalized rows: every (query, gallery row) pair with correlation >= threshold.

    ``gallery`` yields (B, D) blocks (streamed: the gallery never needs to fit in memory).
    Returns (query index, gallery index, score) of the hits, sorted by query then gallery index, and
    each query's best score over the whole gallery (-inf when the gallery is empty).
    """
    qi, gi, sc = [], [], []
    best = torch.full((len(queries),), float("-inf"))
    offset = 0
    for block in gallery:
        scores = queries @ block.T  # (Q, B) correlations
        if scores.numel():
            best = torch.maximum(best, scores.max(dim=1).values)
        hit = (scores >= threshold).nonzero()
        qi.append(hit[:, 0])
        gi.append(hit[:, 1] + offset)
        sc.append(scores[hit[:, 0], hit[:, 1]])
        offset += len(block)
    if not qi:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, torch.zeros(0), best
    q, g, s = torch.cat(qi), torch.cat(gi), torch.cat(sc)
    order = torch.argsort(q * (offset + 1) + g)
    return q[order], g[order], s[order], best


@dataclass
class Overlaps:
    """The search's result: the pairs, every query's best match, and what could not be read."""

    pairs: list[dict]          # {dataset, caltech_path, imagenet_path, score}
    best: dict[str, float]     # caltech path -> best correlation with any ImageNet training image
    unreadable: list[tuple[str, str]]
    gallery_size: int


def find_overlaps(queries: dict[str, Sequence[str | Path]], gallery: Sequence[str | Path], size: int = 32,
                  threshold: float = 0.95, block: int = 4096, workers: int = 1, progress: bool = True) -> Overlaps:
    """Every (query dataset image, gallery image) pair whose thumbnails correlate at >= ``threshold``.

    ``queries``: dataset name -> paths (Caltech-101, Caltech-256); ``gallery``: ImageNet training paths,
    thumbnailed ``block`` images at a time (memory stays at one block).
    """
    names, q_paths = [], []
    for name, paths in queries.items():
        names += [name] * len(paths)
        q_paths += [str(p) for p in paths]
    q, q_keep, bad = thumbnails(q_paths, size, workers, desc="thumbnails (queries)", progress=progress)
    gallery = [str(p) for p in gallery]
    kept_gallery: list[int] = []

    def blocks():
        with bar(total=len(gallery), desc="overlap search", unit="img", disable=not progress) as shown:
            for start in range(0, len(gallery), block):
                g, keep, g_bad = thumbnails(gallery[start : start + block], size, workers, progress=False)
                kept_gallery.extend(start + k for k in keep)
                bad.extend(g_bad)
                shown.update(min(block, len(gallery) - start))
                yield g

    qi, gi, scores, best = correlate(q, blocks(), threshold)
    pairs = [{"dataset": names[q_keep[a]], "caltech_path": q_paths[q_keep[a]],
              "imagenet_path": gallery[kept_gallery[b]], "score": round(float(s), 6)}
             for a, b, s in zip(qi.tolist(), gi.tolist(), scores.tolist())]
    best_by_path = {q_paths[k]: float(v) for k, v in zip(q_keep, best.tolist())}
    return Overlaps(pairs, best_by_path, bad, len(gallery))


def score(pairs: Sequence[dict], ground_truth: str | Path) -> dict:
    """Precision / recall of the found pairs against planted duplicates (``duplicates.csv``: dataset,
    caltech_path, imagenet_path, relative to the folder above the CSV's folder)."""
    import pandas as pd

    ground_truth = Path(ground_truth)
    gt = pd.read_csv(ground_truth)
    missing = {"caltech_path", "imagenet_path"} - set(gt.columns)
    if missing:
        raise ValueError(f"{ground_truth}: missing columns {sorted(missing)}; expected caltech_path, imagenet_path")
    base = ground_truth.parent.parent
    truth = {((base / c).resolve(), (base / i).resolve()) for c, i in zip(gt.caltech_path, gt.imagenet_path)}
    found = {(Path(p["caltech_path"]).resolve(), Path(p["imagenet_path"]).resolve()) for p in pairs}
    hits = len(found & truth)
    return {"planted": len(truth), "found": len(found), "true_positives": hits,
            "false_positives": len(found - truth), "missed": len(truth - found),
            "precision": hits / len(found) if found else 1.0, "recall": hits / len(truth) if truth else 1.0}


def run(cfg) -> dict:
    """The overlap stage: search, then write ``pairs.csv``, ``removed.txt`` (ImageNet training images to
    drop), ``imagenet_train_filtered.txt`` (the rest), ``unreadable.csv`` and the metrics JSON."""
    import json

    import pandas as pd

    from zfnet.data import imagenet
    from zfnet.io import write_json, write_text
    from zfnet.transfer import datasets

    o = cfg.overlap
    readers = {"caltech101": lambda root: datasets.caltech101(root, background=True),  # every image, background /
               "caltech256": lambda root: datasets.caltech256(root, clutter=True)}    # clutter included
    unknown = [name for name in o.datasets if name not in readers]
    if unknown:
        raise ValueError(f"overlap.datasets: {unknown[0]!r} is not a Caltech dataset (caltech101, caltech256)")
    queries = {name: readers[name](cfg.transfer[name].root).paths for name in o.datasets}
    train = imagenet.train_split(cfg.data.imagenet_root)
    found = find_overlaps(queries, train.paths, int(o.size), float(o.threshold), int(o.block), int(o.workers))

    out = Path(o.out_dir)
    pairs = pd.DataFrame(found.pairs, columns=["dataset", "caltech_path", "imagenet_path", "score"])
    write_text(out / "pairs.csv", pairs.to_csv(index=False))
    removed = sorted(set(pairs.imagenet_path))
    write_text(out / "removed.txt", "".join(f"{p}\n" for p in removed))
    drop = set(removed)
    write_text(out / "imagenet_train_filtered.txt", "".join(f"{p}\n" for p in map(str, train.paths) if p not in drop))
    write_text(out / "unreadable.csv", pd.DataFrame(found.unreadable, columns=["path", "reason"]).to_csv(index=False))

    overlapping = set(pairs.caltech_path)
    distinct = [v for k, v in found.best.items() if k not in overlapping]
    metrics = {"threshold": float(o.threshold), "imagenet_train": found.gallery_size,
               "imagenet_removed": len(removed), "unreadable": len(found.unreadable),
               "closest_distinct_score": round(max(distinct), 6) if distinct else None}
    for name, paths in queries.items():
        mine = pairs[pairs.dataset == name]
        per_class = mine.caltech_path.map(lambda p: Path(p).parent.name).value_counts()
        metrics[name] = {"images": len(paths), "overlapping": int(mine.caltech_path.nunique()),
                         "max_in_one_class": int(per_class.max()) if len(per_class) else 0}
    if o.get("ground_truth"):
        gt = Path(o.ground_truth)
        if gt.is_file():
            metrics["vs_ground_truth"] = score(found.pairs, gt)
        else:
            log.warning("overlap.ground_truth=%s: no such file; precision / recall not measured", gt)
    write_json(Path(o.metrics_path), metrics)
    log.info("overlap: %s", json.dumps(metrics))
    return metrics
