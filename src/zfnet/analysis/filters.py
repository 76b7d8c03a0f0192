"""Filters (Fig. 6): the first convolution of any model, found by forward order of its modules."""

from __future__ import annotations

from torch import nn

__all__ = ["first_conv"]


def first_conv(model: nn.Module, layer: str | None = None) -> tuple[str, nn.Conv2d]:
    """``(module path, nn.Conv2d)``: the module at ``layer`` (a conv, or a block holding one), else the first
    ``nn.Conv2d`` in the model's module order (``conv1.conv`` for ours, ``features.0`` for vgg, ``conv1`` for
    resnet)."""
    root = model.get_submodule(layer) if layer else model
    for name, m in root.named_modules():
        if isinstance(m, nn.Conv2d):
            return (f"{layer}.{name}" if layer and name else layer or name), m
    raise ValueError(f"{type(model).__name__}{' ' + layer if layer else ''}: no nn.Conv2d found")
