"""The visualize stage's library entry on a torchvision model from config (ImageFolder images, layer paths)."""

from __future__ import annotations

import pytest
from helpers import photo_folder, user_model_config
from PIL import Image

from zfnet.stages.visualize.parts import run


@pytest.mark.usefixtures("one_thread")
def test_visualize_runs_on_a_torchvision_model(tmp_path):
    photo_folder(tmp_path, 2, (80, 90))
    cfg = user_model_config(  # history.csv: our training's curves, not this model's
        tmp_path, 72, 64, history="history.csv", images=4, deconv={"maps_per_layer": 2, "k": 2},
        occlusion={"images": 1, "size": 16, "stride": 16, "layer": "conv5"}, invariance={"images": 2},
        curves_dir=str(tmp_path / "curves"), weights=None, layers=["layer2", "layer3"])
    (tmp_path / "history.csv").write_text("epoch,val_loss\n0,6.9\n")
    figures = run(cfg)
    assert {"filters", "deconv", "occlusion", "invariance"} <= set(figures)
    assert "training" not in figures
    for paths in figures.values():
        for p in paths:
            with Image.open(p) as im:
                assert im.format == "PNG"
