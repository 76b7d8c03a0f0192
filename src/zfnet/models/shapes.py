"""Shape arithmetic of the paper's models: the (H, W) after a conv or pool (torch's formulas), the
``input_size`` argument, and ``feature_shapes`` (every paper layer's output shape, by a dry run)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn


def _is_seq(v: Any) -> bool:
    return isinstance(v, Sequence) and not isinstance(v, (str, bytes))



def _parse_input_size(value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not _is_seq(value)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
    ):
        raise ValueError(f"model override 'input_size': expected a positive int or a pair (H, W), got {value!r}")
    return int(value[0]), int(value[1])



def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv_out(n: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _pool_out(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    # torch's pooling_output_shape
    num = n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)
    out = num // s + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def _spatial_after(module: nn.Module, hw: tuple[int, int]) -> tuple[int, int]:
    if isinstance(module, nn.Conv2d):
        k, s, p, d = (_pair(module.kernel_size), _pair(module.stride), _pair(module.padding), _pair(module.dilation))
        return tuple(_conv_out(hw[i], k[i], s[i], p[i], d[i]) for i in range(2))  # type: ignore[return-value]
    if isinstance(module, nn.MaxPool2d):
        k, s, p, d = (_pair(module.kernel_size), _pair(module.stride or module.kernel_size),
                      _pair(module.padding), _pair(module.dilation))
        return tuple(_pool_out(hw[i], k[i], s[i], p[i], d[i], module.ceil_mode) for i in range(2))  # type: ignore[return-value]
    return hw



@torch.no_grad()
def feature_shapes(
    model: nn.Module, input_size: int | Sequence[int] = 224, submodules: bool = False
) -> dict[str, tuple[int, ...]]:
    """Per-example output shapes (batch dim dropped) of each paper layer, by a dry run with hooks.

    Keys are ``model.feature_layers`` (e.g. ``{"conv1": (96, 55, 55), ..., "fc8": (1000,)}``); with
    ``submodules=True`` also every child of each block, by dotted name (``"conv1.conv": (96, 110, 110)``).
    Works for any model with a ``feature_layers`` list of top-level module names.
    """
    h, w = _parse_input_size(input_size if not _is_seq(input_size) else tuple(input_size))
    layers = list(getattr(model, "feature_layers"))
    targets: dict[str, nn.Module] = {}
    for name in layers:
        block = model.get_submodule(name)
        targets[name] = block
        if submodules:
            for child_name, child in block.named_children():
                targets[f"{name}.{child_name}"] = child
    shapes: dict[str, tuple[int, ...]] = {}

    def hook_for(key: str) -> Callable:
        def hook(_m, _inp, out):
            shapes[key] = tuple(out.shape[1:])

        return hook

    handles = [m.register_forward_hook(hook_for(k)) for k, m in targets.items()]
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(1, 3, h, w, device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    # a module may be called more than once (shared); report in a stable order: blocks then children
    return {k: shapes[k] for k in targets if k in shapes}

