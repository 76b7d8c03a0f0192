"""The images the visualize parts read, as the network sees them, streamed ``visualize.batch_size`` at a time.

Memory is set by config, not by ``visualize.images`` (a count or ``all``): :class:`ValidationStream` (the
prepared validation shards) or :class:`FolderStream` (``visualize.image_folder``) hold one batch at a time;
a search is one pass, and afterwards only the images a figure shows are read back by stream index.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from zfnet.data import shards
from zfnet.data.crops import crop_offsets
from zfnet.data.mean_image import read_mean_image


def centre(x: torch.Tensor, crop: int) -> torch.Tensor:
    """The central ``crop`` x ``crop`` square of ``x`` (..., H, W)."""
    top, left = crop_offsets(x.shape[-1], crop)[4]
    return x[..., top : top + crop, left : left + crop]


def mean_image(prepared_dir: str | Path) -> torch.Tensor:
    """The prepare stage's mean image (``<prepare.out_dir>/mean.npy``) as a (3, H, W) float tensor."""
    return read_mean_image(Path(prepared_dir) / "mean.npy", "prepare.out_dir")


class _Stream:
    """Images as the network sees them, streamed ``batch_size`` at a time (one batch held at a time).

    Iterating yields ``(images (B, 3, crop, crop) float, labels (B,) int64, source paths)`` in stream order;
    every pass starts anew (a search per checkpoint reads the images again). ``take(indices)`` reads only
    the images at the given ascending stream indices (the figures' few winners); ``head(n)`` the first n with
    their labels. ``count``: images in the stream, known once a pass has reached its end (``size()``: known
without a pass when the stream can tell). Subclasses give
    ``_samples(wanted)`` ((index, raw, label, path) in stream order) and ``_frame(raws)`` (the batch tensor)."""

    batch_size: int
    crop: int
    total: int | None = None  # for the progress line, when known in advance
    desc = "visualize: images"

    def __init__(self):
        self.count: int | None = None

    def __iter__(self):
        from zfnet.progress import bar

        n, buf = 0, []
        with bar(total=self.total, desc=self.desc, unit="img") as progress:
            for item in self._samples(None):
                buf.append(item)
                if len(buf) == self.batch_size:
                    yield self._batch(buf)
                    progress.update(len(buf))
                    n, buf = n + len(buf), []
            if buf:
                yield self._batch(buf)
                progress.update(len(buf))
                n += len(buf)
        self.count = n

    def _batch(self, items):
        return (self._frame([raw for _, raw, _, _ in items]), torch.tensor([label for _, _, label, _ in items]),
                [path for _, _, _, path in items])

    def size(self) -> int:
        """Images in the stream: ``total`` when known in advance (the same number whether or not a part ran a
        pass before), else counted by a pass."""
        if self.total is None and self.count is None:
            self.count = sum(1 for _ in self._samples(None))
        return self.total if self.total is not None else self.count

    def take(self, indices) -> torch.Tensor:
        items = list(self._samples(sorted(int(i) for i in indices))) if len(indices) else []
        return self._batch(items)[0] if items else torch.zeros(0, 3, self.crop, self.crop)

    def head(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        items = list(self._samples(range(n))) if n > 0 else []
        if not items:
            return torch.zeros(0, 3, self.crop, self.crop), torch.zeros(0, dtype=torch.long)
        x, labels, _ = self._batch(items)
        return x, labels


class ValidationStream(_Stream):
    """The prepared validation shards as the network sees them: the centre ``crop`` of each 256-image minus
    the mean image, in shard order (the stream index counts from 0); ``limit``: the first n (None: all)."""

    def __init__(self, prepared_dir: str | Path, crop: int, limit: int | None, batch_size: int):
        super().__init__()
        self.dir, self.crop, self.limit, self.batch_size = Path(prepared_dir), int(crop), limit, int(batch_size)
        self.mean_full = mean_image(self.dir)
        self.mean = centre(self.mean_full, self.crop)
        shards.shards(self.dir, "val")  # no shards: the error names the folder now, not at the first pass
        stats = self.dir / "stats.json"
        written = json.loads(stats.read_text()).get("val", {}).get("written") if stats.is_file() else None
        known = [x for x in (limit, written) if x is not None]
        self.total = min(known) if known else None

    def _samples(self, wanted):
        for i, image, label, meta in shards.iter_split(self.dir, "val", limit=self.limit, wanted=wanted):
            yield i, image, label, meta["path"]

    def _frame(self, images):
        pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # a copy: the shards' bytes are read-only
        x = pixels.float() - self.mean_full
        return centre(x, self.crop)


class FolderStream(_Stream):
    """An ImageFolder tree's first ``limit`` images (None: all), preprocessed as the pipeline does (minus
    the prepared mean image when there is one); ``names``: its class names."""

    def __init__(self, cfg, folder, limit: int | None, batch_size: int):
        from zfnet.analysis.inputs import _mean, image_folder

        super().__init__()
        paths, labels, self.names = image_folder(folder)
        self.paths, self.labels = paths[:limit], labels[:limit]
        mean_file = Path(cfg.prepare.out_dir) / "mean.npy"
        self.mean_path = str(mean_file) if mean_file.is_file() else None
        self.resize, self.crop, self.batch_size = int(cfg.data.resize), int(cfg.data.crop), int(batch_size)
        self.mean = _mean(self.mean_path, self.resize, self.crop).expand(3, self.crop, self.crop)
        self.total = len(self.paths)

    def _samples(self, wanted):
        for i in range(len(self.paths)) if wanted is None else [i for i in wanted if i < len(self.paths)]:
            yield i, self.paths[i], self.labels[i], str(self.paths[i])

    def _frame(self, paths):
        from zfnet.analysis.inputs import load_images

        return load_images(paths, self.resize, self.crop, mean=self.mean_path)


def image_limit(value) -> int | None:
    """``visualize.images``: a count, or ``all`` (None: every image)."""
    return None if value == "all" else int(value)
