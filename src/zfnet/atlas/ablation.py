"""Unit ablation: the accuracy lost when one feature map alone is zeroed (issue 28, part B).

STAND-IN: the smallest honest version of the contract's :func:`unit_ablation`, a forward hook per unit over
the first ``images`` images; the batched version replaces this file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn

from zfnet.analysis import hooks

__all__ = ["Ablation", "unit_ablation"]


class Ablation(NamedTuple):
    baseline: float
    images: int
    drop: dict[str, dict[int, float]]


@torch.no_grad()
def unit_ablation(model: nn.Module, stream, units: Mapping[str, Sequence[int]], *, images: int,
                  batch_units: int = 16) -> Ablation:
    dtype, device = hooks.dtype_device(model)
    xs, ys, n = [], [], 0
    for x, y, _ in stream:
        xs.append(x[: images - n])
        ys.append(y[: images - n])
        n += len(xs[-1])
        if n >= images:
            break
    x, y = torch.cat(xs).to(device, dtype), torch.cat(ys).to(device)

    def accuracy() -> float:
        with hooks.eval_mode(model):
            return float((model(x).argmax(1) == y).float().mean())

    base = accuracy()
    drop: dict[str, dict[int, float]] = {}
    for layer, chans in units.items():
        module = hooks.find_layer(model, layer)
        drop[layer] = {}
        for c in chans:
            def zero(_m, _i, out, c=int(c)):
                out = out.clone()
                out[:, c] = 0
                return out

            handle = module.register_forward_hook(zero)
            try:
                drop[layer][int(c)] = base - accuracy()
            finally:
                handle.remove()
    return Ablation(base, int(len(y)), drop)
