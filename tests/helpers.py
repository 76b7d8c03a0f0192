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


def photo_folder(root, per_class: int, hw: tuple[int, int], seed: int = 0):
    """An ImageFolder tree ``root/photos/{cat,dog}/<i>.png`` of random RGB images; returns the folder."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = root / "photos"
    for c in ("cat", "dog"):
        (folder / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (*hw, 3), dtype=np.uint8)).save(folder / c / f"{i}.png")
    return folder


def user_model_config(tmp_path, resize: int, crop: int, history: str = "none.csv", **visualize):
    """The visualize stage's config for a user's model (``torchvision:resnet18`` on ``tmp_path/photos``, no
    training of ours): the shared skeleton, with ``visualize`` keys given by the test over it."""
    from omegaconf import OmegaConf

    none = str(tmp_path / "none")
    return OmegaConf.create({
        "seed": 0, "data": {"resize": resize, "crop": crop}, "prepare": {"out_dir": none},
        "train": {"history_path": str(tmp_path / history)}, "demo_data": {"out_dir": none},
        "visualize": {
            "out_dir": str(tmp_path / "figures"), "checkpoint": "unused", "checkpoints_dir": str(tmp_path),
            "tables_dir": str(tmp_path / "tables"), "curves_dir": None, "batch_size": 64,
            "correspondence": {"class": "x", "images": 2, "size": None, "repeats": 1},
            "fig6": {"alexnet": "none", "zfnet": "none", "zfnet_noclip": "none"},
            "model": "torchvision:resnet18", "image_folder": str(tmp_path / "photos"),
        } | visualize,
    })


def figure_index(figures_dir) -> dict[str, list[str]]:
    """Every figure group the visualize parts listed: ``<figures_dir>/index/<part>.json`` merged (read here
    as the files are, not through the report's reader)."""
    import json
    from pathlib import Path

    merged: dict[str, list[str]] = {}
    for path in sorted((Path(figures_dir) / "index").glob("*.json")):
        groups = json.loads(path.read_text())
        assert not set(groups) & set(merged), f"{path}: a group another part lists"
        merged.update(groups)
    return merged
