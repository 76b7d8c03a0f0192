"""``PaperCNN``: the module whose top-level children are the paper's layers (naming scheme: :mod:`zfnet.models.zfnet`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from zfnet.models.shapes import _parse_input_size, _spatial_after


class PaperCNN(nn.Module):
    """Eight-layer convnet whose top-level children are the paper's layers (see module docstring)."""

    def __init__(self, arch: str, blocks: Mapping[str, nn.Sequential], config: dict[str, Any]):
        super().__init__()
        self.arch = arch
        self.feature_layers: list[str] = list(blocks)
        for name, block in blocks.items():
            self.add_module(name, block)
        first_fc = [n for n in self.feature_layers if n.startswith("fc")]
        self._flatten_before = first_fc[0]
        #: everything needed to rebuild this architecture: ``build(**model.config)``
        self.config: dict[str, Any] = config
        # the (H, W) of the map the first fc layer was sized for (checked in forward: a map of another
        # size either fails deep inside the matmul or, when only H and W swap, runs with scrambled features)
        hw = _parse_input_size(config["input_size"])
        for name in self.conv_layers:
            for module in getattr(self, name).children():
                hw = _spatial_after(module, hw)
        self._classifier_hw: tuple[int, int] = hw

    # -- addressing
    def block(self, name: str) -> nn.Sequential:
        """The block of paper layer ``name``; its output is "the output of layer ``name``"."""
        if name not in self.feature_layers:
            raise KeyError(f"layer {name!r} is not in this model; present: {self.feature_layers}")
        return getattr(self, name)

    def weight_layer(self, name: str) -> nn.Conv2d | nn.Linear:
        """The ``nn.Conv2d`` (``<name>.conv``) or ``nn.Linear`` (``<name>.fc``) of paper layer ``name``."""
        block = self.block(name)
        return block.conv if name.startswith("conv") else block.fc

    @property
    def conv_layers(self) -> list[str]:
        return [n for n in self.feature_layers if n.startswith("conv")]

    @property
    def fc_layers(self) -> list[str]:
        return [n for n in self.feature_layers if n.startswith("fc")]

    # -- forward
    def _run(self, x: torch.Tensor, stop_at: str | None, keep: Iterable[str] | None, start_after: str | None = None):
        wanted = set(keep) if keep is not None else set()
        out: dict[str, torch.Tensor] = {}
        arrived = x.shape
        first = 0 if start_after is None else self.feature_layers.index(start_after) + 1
        for name in self.feature_layers[first:]:
            if name == self._flatten_before:
                if x.shape[-2:] != self._classifier_hw:
                    raise self._input_size_error(arrived)
                x = torch.flatten(x, 1)
            x = getattr(self, name)(x)
            if name in wanted:
                out[name] = x
            if name == stop_at:
                break
        return x, out

    def _input_size_error(self, arrived: torch.Size) -> ValueError:
        """The classifier's input dim is fixed by ``input_size`` at build time; convolutions (and so
        ``forward_to`` / ``extract`` below the first fc layer) take any size that fits."""
        built = self.config.get("input_size")
        h, w = (int(arrived[-2]), int(arrived[-1])) if len(arrived) >= 2 else (None, None)
        got = f"{h}×{w} input" if h is not None else f"input of shape {tuple(arrived)}"
        wanted = h if h == w else [h, w]
        return ValueError(
            f"{self.arch} built for input_size={built} got {got}; build it with input_size={wanted} or resize"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, None, None)[0]

    def forward_to(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """Output of block ``layer``; layers above it are not computed."""
        self.block(layer)
        return self._run(x, layer, None)[0]

    def forward_from(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """The model's output when block ``layer``'s output is ``x``: only the layers above it run."""
        self.block(layer)
        return self._run(x, None, None, start_after=layer)[0]

    def extract(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Outputs of the blocks ``layers``, stopping the forward at the deepest one requested."""
        layers = list(layers)
        if not layers:
            return {}
        for name in layers:
            self.block(name)
        deepest = max(layers, key=self.feature_layers.index)
        return self._run(x, deepest, layers)[1]

