"""Shared test helpers (imported by tests as ``from helpers import ...``; tests never import each other)."""

from __future__ import annotations

import torch
import torchvision
from torch import nn


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to the largest magnitude of the reference ``b``."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def tv_model(name: str, seed: int = 0, dtype=torch.float32, num_classes: int = 10) -> nn.Module:
    """A torchvision architecture with random weights (eval mode); fc biases random so classes differ."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.bias, 0.0, 0.1)
            if isinstance(m, nn.BatchNorm2d):  # non-trivial running statistics in eval mode
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.to(dtype).eval()


def images(n: int, hw: int, dtype=torch.float32, seed: int = 1, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, hw, hw, generator=g) * scale).to(dtype)


def occlude(x: torch.Tensor, y: int, x0: int, size: int, fill: float = 0.0) -> torch.Tensor:
    c = x.clone()
    c[..., y : y + size, x0 : x0 + size] = fill
    return c
