"""Image files read in batches, decoded when a batch needs them: memory is a few batches, never the image set.

* :class:`ImageFiles`: a map-style Dataset of ``(uint8 (3, resize, resize) centre crop, label)``, the crop
  being the pipeline's (:func:`zfnet.data.preprocess.center_crop`: smallest side -> ``resize``, centre crop);
* :func:`loader`: a DataLoader over one, ``workers`` decode processes (1: in this process). Shuffling draws
  from torch's global generator exactly as a DataLoader over a TensorDataset of the same images does, so a
  run seeded with ``pl.seed_everything`` sees the same batches in the same order as when every image was
  held in memory, whatever the worker count (workers are started anew each pass: a persistent pool would
  skip the per-pass seed draw and shift the global generator);
* :func:`side_loader`: the same in file order, drawing nothing from the global generator;
* :class:`FileStream`: ``transform(uint8 batch)`` batch after batch in file order, re-iterable, with
  ``take(indices)`` that decodes only the given images (the few winners of a top-k search,
  :func:`zfnet.analysis.topk.pick`);
* :func:`check`: which files decode, in one pass holding nothing (the reasons of those that do not).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from zfnet.data.preprocess import BadImage, center_crop
from zfnet.parallel import process_map, readable

__all__ = ["FileStream", "ImageFiles", "check", "decode", "loader", "side_loader"]


def decode(path: str | Path, resize: int) -> torch.Tensor:
    """uint8 (3, resize, resize): the pipeline's centre crop of one file; ``BadImage`` names the file."""
    return torch.from_numpy(center_crop(str(path), int(resize))).permute(2, 0, 1).contiguous()


class ImageFiles(Dataset):
    """``(uint8 (3, resize, resize) centre crop, label)`` of each file, decoded on access."""

    def __init__(self, paths: Sequence[str | Path], labels: Sequence[int] | None, resize: int):
        self.paths = [str(p) for p in paths]
        self.labels = [int(y) for y in labels] if labels is not None else [0] * len(self.paths)
        if len(self.labels) != len(self.paths):
            raise ValueError(f"ImageFiles: {len(self.paths)} paths but {len(self.labels)} labels")
        self.resize = int(resize)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return decode(self.paths[i], self.resize), self.labels[i]


def loader(data: Dataset, batch_size: int, workers: int = 1, shuffle: bool = False, drop_last: bool = False,
           generator: torch.Generator | None = None) -> DataLoader:
    """Batches of ``data`` (uint8 images, int64 labels); ``workers`` > 1: that many decode processes.
    ``generator``: where the order (``shuffle``) and each pass's worker seed are drawn; None: torch's global
    generator, as a plain DataLoader (every pass draws from it, shuffled or not)."""
    n = int(workers) if int(workers) > 1 else 0
    return DataLoader(data, batch_size=int(batch_size), shuffle=shuffle, drop_last=drop_last, num_workers=n,
                      generator=generator)


def side_loader(data: Dataset, batch_size: int, workers: int = 1) -> DataLoader:
    """``loader`` in file order drawing nothing from torch's global generator: a pass that is not part of
    a seeded training run (a mean, predictions, a search) leaves that run's random numbers as they were."""
    return loader(data, batch_size, workers, generator=torch.Generator().manual_seed(0))


class FileStream:
    """``transform(uint8 (B, 3, resize, resize))`` for the files in order, ``batch_size`` at a time.

    Each pass decodes the files again (``workers`` processes); ``take(indices)`` decodes only those files,
    in the order given; ``batched(n)`` iterates in batches of ``n``. ``len``: the number of files."""

    def __init__(self, paths: Sequence[str | Path], resize: int, batch_size: int, workers: int = 1,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.files = ImageFiles(paths, None, resize)
        self.batch_size, self.workers = int(batch_size), int(workers)
        self.transform = transform or (lambda x: x)

    def __len__(self) -> int:
        return len(self.files)

    def batched(self, batch_size: int):
        for x, _ in side_loader(self.files, batch_size, self.workers):
            yield self.transform(x)

    def __iter__(self):
        return self.batched(self.batch_size)

    def take(self, indices) -> torch.Tensor:
        idx = [int(i) for i in indices]
        if not idx:
            r = self.files.resize
            return self.transform(torch.zeros(0, 3, r, r, dtype=torch.uint8))
        return self.transform(torch.stack([self.files[i][0] for i in idx]))


def _probe(job: tuple[str, int]) -> None | str:
    path, resize = job
    try:
        center_crop(path, resize)
    except BadImage as err:
        return err.reason
    return None


def check(paths: Sequence[str | Path], resize: int, workers: int = 1, desc: str = "images",
          progress: bool = True) -> tuple[list[int], list[tuple[str, str]]]:
    """(indices into ``paths`` of the files that decode, [(path, reason)] of the others): every file is
    decoded once, as :class:`ImageFiles` will, and dropped at once."""
    results = process_map(_probe, [(str(p), int(resize)) for p in paths], int(workers), desc=desc, progress=progress)
    _, keep, bad = readable(paths, results)  # None: decoded; a string: the reason it did not
    return keep, bad
