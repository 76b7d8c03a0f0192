"""Filter RMS clipping (§3): after every update, each conv filter whose RMS exceeds ``radius`` is
rescaled to RMS ``radius``; filters at or below it are untouched. "Crucial, especially in the first
layer, where the input images are roughly in the [-128, 128] range." ``radius=None`` disables (Fig. 6).
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def rms_clip_(model: nn.Module, radius: float | None = 0.1) -> int:
    """Clip every Conv2d filter of ``model`` in place; returns how many filters were rescaled."""
    if radius is None:
        return 0
    clipped = 0
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            w = module.weight
            rms = w.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
            over = rms > radius
            w.mul_(torch.where(over, radius / rms, torch.ones_like(rms)))
            clipped += int(over.sum())
    return clipped


@torch.no_grad()
def filter_rms(model: nn.Module) -> dict[str, float]:
    """Largest filter RMS per conv module (what W&B plots each epoch)."""
    return {name: float(m.weight.pow(2).mean(dim=(1, 2, 3)).sqrt().max())
            for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
