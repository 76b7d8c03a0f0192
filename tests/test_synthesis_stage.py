"""The visualize stage's network-centric synthesis (issue 16) on the tiny profile: a class model per class,
per layer the images of exactly the Fig. 2 grid's maps (read back from Fig. 2's own index.json) beside their
Fig. 2 rows, an inversion per (image, layer), the same images in the stage's W&B run; disabled, nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import photo_folder, user_model_config
from PIL import Image

from helpers import offline_records
from test_prepare import make_imagenet, settings
from zfnet.data.prepare import prepare
from zfnet.models import build
from zfnet.models.weights import export_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def prepared_and_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthesis_stage")
    make_imagenet(root / "in", per_class=2, val_per_class=2, bad=False)  # 3 classes, 6 validation images
    prepare(settings(size=72), root / "in", root / "prepared", progress=False)
    torch.manual_seed(0)
    model = build("zfnet", 3, width=0.125, input_size=64, init="kaiming")
    return root / "prepared", export_model(model, root / "model.pt")


def configure(cfg, prepared_and_model, **synthesis):
    prepared, model = prepared_and_model
    cfg.prepare.out_dir, cfg.train.history_path = str(prepared), "no_history.csv"  # dvc.yaml pins the latter
    v = cfg.visualize
    v.checkpoint, v.checkpoints_dir = str(model), "no_checkpoints"  # no Fig. 4, no Fig. 6 models: not needed here
    v.images, v.deconv.maps_per_layer, v.deconv.k = 6, 3, 2
    v.occlusion.images, v.occlusion.size, v.occlusion.stride, v.invariance.images = 1, 32, 32, 1
    for key, value in {"steps": 2, "inversion_steps": 2, "maps_per_layer": 4, **synthesis}.items():
        v.synthesis[key] = value
    return cfg


def test_stage_synthesizes_the_fig2_maps_every_class_and_inversions(tiny_cfg, prepared_and_model, tmp_path):
    from zfnet.stages.visualize import run
    from zfnet.stages.visualize.parts import PARTS

    cfg = configure(tiny_cfg, prepared_and_model, inversion_images=2)
    cfg.wandb.mode = "offline"
    figures = run(cfg, PARTS)
    out = Path(cfg.visualize.out_dir) / "synthesis"
    index = json.loads((out / "index.json").read_text())
    names = json.loads((Path(cfg.prepare.out_dir) / "classes.json").read_text())["names"]
    assert [c["class"] for c in index["classes"]] == [0, 1, 2] and [c["name"] for c in index["classes"]] == names
    fig2 = json.loads((Path(cfg.visualize.out_dir) / "deconv" / "index.json").read_text())
    layers = ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert list(fig2) == layers and list(index["maps"]) == layers
    for layer in layers:  # exactly the maps of the Fig. 2 grid, in its order
        assert [m["channel"] for m in index["maps"][layer]["maps"]] == [m["channel"] for m in fig2[layer]["maps"]]
        assert len(fig2[layer]["maps"]) == 3
    assert index["inversion"]["layers"] == layers
    assert all(len(errs) == 2 and all(np.isfinite(errs)) for errs in index["inversion"]["feature_error"].values())
    expected = ["classes.png"] + [f"{l}.png" for l in layers] + ["inversion.png"]
    assert [Path(p).name for p in figures["synthesis"]] == expected
    with Image.open(out / "conv3.png") as beside, Image.open(Path(cfg.visualize.out_dir) / "deconv" / "conv3.png") as row:
        assert beside.width > row.width  # Fig. 2's row, then the synthesized image
    with Image.open(out / "classes.png") as im:
        assert im.format == "PNG"
    listed = json.loads((Path(cfg.visualize.out_dir) / "index" / "synthesis.json").read_text())
    assert listed["synthesis"] == figures["synthesis"]

    # the same images in the stage's W&B run (the offline transaction log and its media files)
    (log,) = Path(tmp_path).glob("wandb/offline-run-*/run-*.wandb")
    logged = {}
    for r in offline_records(log):
        if r.WhichOneof("record_type") == "history":
            for item in r.history.item:
                logged[".".join(item.nested_key) or item.key] = json.loads(item.value_json)
    for p in figures["synthesis"]:
        key = f"synthesis/{Path(p).stem}"
        assert logged[f"{key}._type"] == "image-file", key
        assert (log.parent / "files" / logged[f"{key}.path"]).stat().st_size > 0


def test_disabled_writes_no_synthesis(tiny_cfg, prepared_and_model):
    from zfnet.stages.visualize import run
    from zfnet.stages.visualize.parts import PARTS

    cfg = configure(tiny_cfg, prepared_and_model, enabled=False)
    cfg.wandb.mode = "disabled"
    figures = run(cfg, PARTS)
    assert "synthesis" not in figures and figures["deconv"]
    assert not any((Path(cfg.visualize.out_dir) / "synthesis").iterdir())  # the stage's (empty) output folder


def test_a_user_model_synthesizes_its_outputs_up_to_the_cap_at_its_layers(tmp_path):
    """A torchvision model from config: classes are its outputs (capped by ``max_classes``), layers the
    user's ``visualize.layers`` (the Fig. 2 layers)."""
    from zfnet.stages.visualize.parts import run

    photo_folder(tmp_path, 1, (40, 40))
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None, num_classes=7).state_dict(), tmp_path / "w.pt")
    cfg = user_model_config(
        tmp_path, 36, 32, images=2, deconv={"maps_per_layer": 2, "k": 1},
        occlusion={"images": 1, "size": 16, "stride": 16}, invariance={"images": 1},
        weights=str(tmp_path / "w.pt"), layers=["layer1", "layer3"],
        synthesis={"steps": 1, "inversion_steps": 1, "inversion_images": 1, "classes": "all", "max_classes": 5})
    run(cfg)
    index = json.loads((tmp_path / "figures" / "synthesis" / "index.json").read_text())
    fig2 = json.loads((tmp_path / "figures" / "deconv" / "index.json").read_text())
    # 7 outputs capped at 5; the folder's 2 class names are not the model's 7 outputs: indices instead
    assert [(c["class"], c["name"]) for c in index["classes"]] == [(k, str(k)) for k in range(5)]
    assert {l: [m["channel"] for m in e["maps"]] for l, e in index["maps"].items()} == \
        {l: [m["channel"] for m in e["maps"]] for l, e in fig2.items()}
    assert list(index["maps"]) == ["layer1", "layer3"] == index["inversion"]["layers"]


@pytest.mark.parametrize("key,value,expected", [
    ("classes", "some", "expected 'all', an int >= 0 (the first n classes) or a list of class indices >= 0"),
    ("classes", [0, -1], "expected 'all', an int >= 0"),
    ("param", "wavelet", "expected one of ['fft', 'pixel']"),
    ("steps", 0, "expected an int >= 1"),
    ("lr", 0.0, "expected a float > 0"),
    ("threads", 0, "expected null or an int >= 1"),
    ("layers", ["conv2", "fc6"], "expected null or a subset of the Fig. 2 layers, visualize.layers=None"),
])
def test_synthesis_keys_are_range_checked_before_any_work(tiny_cfg, key, value, expected):
    from omegaconf import OmegaConf

    from zfnet.schema import ConfigError
    from zfnet.stages.visualize import run
    from zfnet.stages.visualize.parts import PARTS

    OmegaConf.update(tiny_cfg, f"visualize.synthesis.{key}", value, merge=False)
    with pytest.raises(ConfigError) as err:
        run(tiny_cfg, PARTS)  # no prepared data, no model: a run past validation would fail otherwise
    assert f"visualize.synthesis.{key}={value!r}: {expected}" in str(err.value)


@pytest.mark.parametrize("value", ["all", 0, 3, [0, 2]])
def test_synthesis_classes_accepted(tiny_cfg, value):
    from omegaconf import OmegaConf

    from zfnet.schema import validate

    OmegaConf.update(tiny_cfg, "visualize.synthesis.classes", value, merge=False)
    assert validate(tiny_cfg) is tiny_cfg
