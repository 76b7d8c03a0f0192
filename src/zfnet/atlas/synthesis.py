"""Per-unit synthesized images for the atlas: each map's mean activation maximized from noise
(:func:`zfnet.analysis.synthesis.maximize`, channel objectives), ``batch_size`` objectives optimized together,
with the visualize stage's regularizers (``visualize.synthesis``: lr, l2, tv, jitter, rotate, blur_every,
param, seed, threads). Each objective has its own seed, so an image does not depend on its batch."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from zfnet.analysis.synthesis import channel, maximize, threads as torch_threads

__all__ = ["OPTIONS", "synthesize_units"]

#: the keys of ``visualize.synthesis`` the atlas's synthesis uses
OPTIONS = ("lr", "l2", "tv", "jitter", "rotate", "blur_every", "param", "seed")


def synthesize_units(model: nn.Module, units: Mapping[str, Sequence[int]], *, size: int, steps: int,
                     options: Mapping, batch_size: int = 64, threads: int | None = None
                     ) -> Iterator[tuple[str, list[int], torch.Tensor]]:
    """``(layer, channels, images (len(channels), 3, size, size))`` per batch of at most ``batch_size``
    objectives, layer by layer in the order of ``units`` (``{layer: [channel, ...]}``)."""
    opts = {key: options[key] for key in OPTIONS}
    with torch_threads(threads):
        for layer, chans in units.items():
            chans = [int(c) for c in chans]
            for s in range(0, len(chans), batch_size):
                part = chans[s:s + batch_size]
                res = maximize(model, [channel(layer, c) for c in part], size=(size, size), steps=int(steps),
                               lr=float(opts["lr"]), l2=float(opts["l2"]), tv=float(opts["tv"]),
                               jitter=float(opts["jitter"]), rotate=float(opts["rotate"]),
                               blur_every=int(opts["blur_every"]), param=str(opts["param"]), seed=int(opts["seed"]))
                yield layer, part, res.images.detach()
