"""The visualize stage's library entry on a torchvision model from config (ImageFolder images, layer paths)."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from zfnet.visualize import run


@pytest.mark.usefixtures("one_thread")
def test_visualize_runs_on_a_torchvision_model(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (80, 90, 3), dtype=np.uint8)).save(tmp_path / "photos" / c / f"{i}.png")
    cfg = OmegaConf.create({
        "seed": 0, "data": {"resize": 72, "crop": 64}, "prepare": {"out_dir": str(tmp_path / "none")},
        "train": {"history_path": str(tmp_path / "history.csv")},  # our training's curves: not this model's
        "demo_data": {"out_dir": str(tmp_path / "none")},
        "visualize": {
            "out_dir": str(tmp_path / "figures"), "checkpoint": "unused", "checkpoints_dir": str(tmp_path),
            "tables_dir": str(tmp_path / "tables"), "images": 4, "deconv": {"maps_per_layer": 2, "k": 2},
            "occlusion": {"images": 1, "size": 16, "stride": 16, "layer": "conv5"}, "invariance": {"images": 2},
            "curves_dir": str(tmp_path / "curves"), "correspondence": {"class": "x", "images": 2, "size": None,
                                                                       "repeats": 1},
            "fig6": {"alexnet": "none", "zfnet": "none", "zfnet_noclip": "none"},
            "model": "torchvision:resnet18", "weights": None, "layers": ["layer2", "layer3"],
            "image_folder": str(tmp_path / "photos"),
        },
    })
    (tmp_path / "history.csv").write_text("epoch,val_loss\n0,6.9\n")
    figures = run(cfg)
    assert {"filters", "deconv", "occlusion", "invariance"} <= set(figures)
    assert "training" not in figures
    for paths in figures.values():
        for p in paths:
            with Image.open(p) as im:
                assert im.format == "PNG"
