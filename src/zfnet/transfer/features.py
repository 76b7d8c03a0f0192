"""Frozen ImageNet features of layers 1–7 (§5.2, §5.3), extracted once per checkpoint and cached.

An image reaches the network as in ImageNet evaluation: smallest side -> ``resize``, centre crop
``resize``², the centre ``crop``² of that, minus the same crop of the ImageNet mean image (the paper's
units). Features are the layer blocks' outputs (conv layers after their ReLU / pool / normalization, fc6
and fc7 after ReLU); conv maps are max-pooled to a ``grid``×``grid`` spatial grid (at 224 input,
``grid=6`` leaves layer 5 exactly as the network's own pool5) so lower layers stay a usable size.

Cache: ``<cache_dir>/<dataset>/<key>/`` with ``<layer>.npy`` (float16, (N, D)) and ``index.json``; ``key``
hashes the checkpoint's bytes, the image list and every setting, so a retrained model or another image
set gets its own entry and an existing one is never recomputed. Entries are written to a temp folder and
renamed: an interrupted extraction leaves no half entry. Images that cannot be decoded are reported and
left out (their indices are in ``index.json``).

Memory: the images are decoded ``chunk`` at a time and their features computed before the next chunk is
decoded, so only the features (N x D, the output) grow with the dataset; the network sees the same batches
of ``batch_size`` readable images as if the whole set had been decoded at once (same features, bit for bit).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zfnet.analysis import hooks
from zfnet.data.crops import crop_offsets
from zfnet.data.preprocess import BadImage, center_crop
from zfnet.paper import FEATURE_LAYERS
from zfnet.parallel import process_map, readable
from zfnet.progress import bar

__all__ = ["LAYERS", "load_images", "image_chunks", "extract", "cached_features", "checkpoint_digest"]

log = logging.getLogger(__name__)

LAYERS = FEATURE_LAYERS  # the features a transfer reads


def _decode(args: tuple[str, int]) -> np.ndarray | str:
    path, resize = args
    try:
        return center_crop(path, resize)
    except BadImage as err:
        return err.reason


def load_images(paths: Sequence[str | Path], resize: int, workers: int = 1, desc: str = "images",
                progress: bool = True) -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
    """(uint8 (M, 3, resize, resize) centre crops of the readable images, their indices into ``paths``,
    [(path, reason)] of the unreadable ones). Decoding runs in ``workers`` processes."""
    jobs = [(str(p), int(resize)) for p in paths]
    arrays, keep, bad = readable(paths, process_map(_decode, jobs, workers, desc=desc, progress=progress))
    images = np.stack(arrays) if arrays else np.zeros((0, resize, resize, 3), np.uint8)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), keep, bad


def image_chunks(paths: Sequence[str | Path], resize: int, chunk: int, workers: int = 1,
                 keep: list[int] | None = None, bad: list[tuple[str, str]] | None = None):
    """``load_images`` ``chunk`` paths at a time: yields each chunk's uint8 (M, 3, resize, resize) readable
    images; their indices into ``paths`` are appended to ``keep`` and the unreadable ones to ``bad``."""
    if chunk < 1:
        raise ValueError(f"chunk: expected an int >= 1, got {chunk!r}")
    for start in range(0, len(paths), chunk):
        images, k, b = load_images(paths[start:start + chunk], resize, workers, progress=False)
        if keep is not None:
            keep += [start + i for i in k]
        if bad is not None:
            bad += b
        yield images


def _rebatch(chunks, batch_size: int):
    """Batches of exactly ``batch_size`` images (the last one smaller) out of chunks of any size."""
    pending = None
    for c in chunks:
        pending = c if pending is None or not len(pending) else torch.cat([pending, c])
        while len(pending) >= batch_size:
            yield pending[:batch_size]
            pending = pending[batch_size:]
    if pending is not None and len(pending):
        yield pending


@torch.no_grad()
def extract(model: torch.nn.Module, images, mean: torch.Tensor, layers: Sequence[str] = LAYERS,
            grid: int = 6, batch_size: int = 64, progress: bool = False, call: int | None = None,
            total: int | None = None) -> dict[str, np.ndarray]:
    """Features of ``layers`` for uint8 images (N, 3, s, s) minus ``mean`` (3, s, s): layer -> (N, D) float32.

    ``images``: one uint8 tensor, or an iterable of uint8 tensors (chunks, e.g. :func:`image_chunks`), run in
    batches of ``batch_size`` images across chunk boundaries (the batches of the whole set at once); ``total``:
    the number of images, for the progress line. ``layers``: module paths of any model (ours:
    ``conv1``..``fc7``; vgg16: ``features.29``, ``classifier.4``); the forward stops at the deepest. Spatial
    maps are max-pooled to at most ``grid`` x ``grid``. Images larger than ``mean`` are centre-cropped to its
    size first."""
    from zfnet.progress import bar

    crop = mean.shape[-1]
    if isinstance(images, torch.Tensor):
        images, total = [images], len(images)
    layers = list(layers)

    def pooled(_p, value):  # reduced inside the hook: later in-place ops cannot change it
        if value.dim() == 4:
            value = F.adaptive_max_pool2d(value, min(grid, value.shape[-1]))
        return value.detach().flatten(1).float().cpu().numpy().copy()

    out: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    with hooks.eval_mode(model), bar(total=total, desc="features", unit="img", disable=not progress) as shown:
        which = None
        for batch in _rebatch(images, batch_size):
            top, left = crop_offsets(batch.shape[-1], crop)[4]
            x = batch[:, :, top : top + crop, left : left + crop].float() - mean
            if which is None:
                which = hooks.calls(model, x, layers, call)
            for name, value in hooks.run(model, x, layers, reduce=pooled, call=which)[0].items():
                out[name].append(value)
            shown.update(len(batch))
    return {name: np.concatenate(v) if v else np.zeros((0, 0), np.float32) for name, v in out.items()}


def checkpoint_digest(path: str | Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_features(checkpoint: str | Path, mean_path: str | Path, paths: Sequence[str | Path], cache_dir: str | Path,
                    dataset: str, resize: int, crop: int, layers: Sequence[str] = LAYERS, grid: int = 6,
                    batch_size: int = 64, workers: int = 1, progress: bool = True,
                    images: Callable[[], tuple[torch.Tensor, list[int], list]] | None = None, chunk: int = 1024,
                    untrained_seed: int | None = None) -> tuple[dict[str, np.ndarray], list[int], list]:
    """(layer -> float32 (M, D) features, indices into ``paths`` of the M readable images, unreadable list).

    Computed once per (checkpoint, images, settings); later calls read the cache. The images are decoded
    ``chunk`` at a time (memory: one chunk, not the dataset); ``images``: instead, a callable returning
    ``load_images(paths, resize)``'s result, for a caller that holds every image anyway. ``untrained_seed``:
    the features of the checkpoint's untrained control instead (its architecture with the weights the train
    stage started from with that seed, ``zfnet.untrained``); give it its own ``dataset`` name (an entry
    replaces the other entries of its dataset).
    """
    from zfnet.models.weights import load_model

    settings = {"checkpoint": checkpoint_digest(checkpoint), "mean": checkpoint_digest(mean_path),
                "files": hashlib.sha1("\n".join(map(str, paths)).encode()).hexdigest(),
                "resize": int(resize), "crop": int(crop), "layers": list(layers), "grid": int(grid)}
    if untrained_seed is not None:
        settings["untrained_seed"] = int(untrained_seed)
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    entry = Path(cache_dir) / dataset / key
    index_file = entry / "index.json"
    if index_file.is_file():
        index = json.loads(index_file.read_text())
        feats = {name: np.load(entry / f"{name}.npy").astype(np.float32) for name in layers}
        log.info("%s: features from cache %s", dataset, entry)
        return feats, index["keep"], [tuple(b) for b in index["unreadable"]]

    mean_full = torch.from_numpy(np.load(mean_path)).float().permute(2, 0, 1)
    if mean_full.shape[-1] != resize:
        raise ValueError(f"{mean_path}: mean image is {tuple(mean_full.shape[1:])}, expected {resize}×{resize} "
                         "(data.resize); run the prepare stage with the same data.resize")
    top, left = crop_offsets(resize, crop)[4]
    mean = mean_full[:, top : top + crop, left : left + crop]
    model = load_model(checkpoint)
    if untrained_seed is not None:
        from zfnet.untrained import untrained_like

        model = untrained_like(model, int(untrained_seed))[0]
    if images is None:
        keep, bad = [], []
        pixels = image_chunks(paths, resize, chunk, workers, keep, bad)
    else:
        pixels, keep, bad = images()
    feats = extract(model, pixels, mean, layers, grid, batch_size, progress=progress, total=len(paths))
    for path, reason in bad:
        log.warning("%s: %s; left out of %s", path, reason, dataset)

    tmp = entry.with_name(entry.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, value in feats.items():
        small = value.size == 0 or float(np.abs(value).max()) < 6e4  # float16 halves the cache; never overflow it
        np.save(tmp / f"{name}.npy", value.astype(np.float16 if small else np.float32))
    (tmp / "index.json").write_text(json.dumps({"settings": settings, "keep": keep, "unreadable": bad}))
    shutil.rmtree(entry, ignore_errors=True)
    tmp.rename(entry)
    # other entries of this dataset belong to older checkpoints or settings: drop them
    for stale in (Path(cache_dir) / dataset).iterdir():
        if stale != entry:
            shutil.rmtree(stale, ignore_errors=True)
    feats = {name: np.load(entry / f"{name}.npy").astype(np.float32) for name in layers}  # as a cache hit sees them
    return feats, keep, bad
