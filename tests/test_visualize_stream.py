"""The visualize stage's searches stream the validation shards (issue 24): Fig. 2 and Fig. 4 from the stream
are byte for byte those of the old path that stacked every searched image into one tensor (kept here as the
reference), only the winners are read back, Fig. 7's correctly classified images are found by predicting until
enough are found, and ``visualize.images: all`` searches the whole split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from test_prepare import make_imagenet, settings
from zfnet.data import shards
from zfnet.data.crops import crop_offsets
from zfnet.data.prepare import prepare
from zfnet.models import build
from zfnet.stages.visualize.occlusion import correctly_classified
from zfnet.stages.visualize.stream import ValidationStream

pytestmark = pytest.mark.usefixtures("one_thread")

CROP = 64


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("visualize_stream")
    make_imagenet(root / "in", per_class=2, val_per_class=5, bad=False)  # 3 classes, 15 validation images
    prepare(settings(size=72), root / "in", root / "prepared", progress=False)  # 4 images per shard: 4 shards
    return root / "prepared"


def stacked_inputs(prepared_dir, crop: int, n: int):
    """The old ``zfnet.visualize.network_inputs``: the first n validation images stacked in one tensor."""
    mean = torch.from_numpy(np.load(prepared_dir / "mean.npy")).float().permute(2, 0, 1)
    images, labels = [], []
    for shard in shards.shards(prepared_dir, "val"):
        for _key, image, label in shards.iter_shard(shard):
            images.append(torch.from_numpy(image.copy()).permute(2, 0, 1).float())
            labels.append(label)
            if len(images) == n:
                break
        if len(images) == n:
            break
    top, left = crop_offsets(mean.shape[-1], crop)[4]
    x = torch.stack(images) - mean
    return x[..., top:top + crop, left:left + crop], torch.tensor(labels)


def models():
    torch.manual_seed(3)
    return [build("zfnet", 3, width=0.125, input_size=CROP, init="kaiming") for _ in range(2)]


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("n, batch_size", [(12, 64), (12, 5), (15, 4)])
def test_fig2_and_fig4_from_the_stream_equal_the_stacked_path_byte_for_byte(prepared, tmp_path, n, batch_size):
    from zfnet.stages.visualize.deconv import fig2_and_fig4

    final, early = models()
    kw = dict(maps_per_layer=3, k=4, layers=("conv1", "conv3", "conv5"), seed=1)
    ref, _ = stacked_inputs(prepared, CROP, n)
    fig2_and_fig4(final, ref, tmp_path / "stacked", checkpoints={"epoch 1": early, "epoch 5": final}, **kw)
    stream = ValidationStream(prepared, CROP, n, batch_size)
    fig2_and_fig4(final, stream, tmp_path / "stream", checkpoints={"epoch 1": early, "epoch 5": final}, **kw)
    old, new = files(tmp_path / "stacked"), files(tmp_path / "stream")
    assert sorted(old) == sorted(new) and len(old) == 8  # 3 + 3 PNGs, 2 index.json
    assert [name for name in old if old[name] != new[name]] == []
    index = json.loads(new["deconv/index.json"])
    assert max(u["image_index"] for e in index.values() for m in e["maps"] for u in m["units"]) < n
    assert stream.count == n


def test_take_decodes_only_the_wanted_images(prepared, monkeypatch):
    ref, _ = stacked_inputs(prepared, CROP, 15)
    decoded = []
    real = shards.decode
    monkeypatch.setattr(shards, "decode", lambda sample: decoded.append(sample["__key__"]) or real(sample))
    stream = ValidationStream(prepared, CROP, None, 4)
    got = stream.take([9, 2, 13])
    assert torch.equal(got, ref[[2, 9, 13]])
    assert len(decoded) == 3


def test_all_streams_every_validation_image_one_batch_at_a_time(prepared):
    ref, labels = stacked_inputs(prepared, CROP, 10**6)
    stream = ValidationStream(prepared, CROP, None, 4)  # visualize.images: all
    assert stream.total == 15
    batches = list(stream)
    assert [len(x) for x, _, _ in batches] == [4, 4, 4, 3]
    assert torch.equal(torch.cat([x for x, _, _ in batches]), ref)
    assert torch.equal(torch.cat([y for _, y, _ in batches]), labels)
    assert stream.count == 15


class Always(nn.Module):
    """Predicts class ``c`` of ``classes`` for every image."""

    def __init__(self, c: int, classes: int = 3):
        super().__init__()
        self.c, self.classes = c, classes
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.zeros(len(x), self.classes)
        out[:, self.c] = 1.0
        return out + 0 * self.w


def test_occlusion_images_predicted_until_enough_are_correct(prepared, monkeypatch):
    ref, labels = stacked_inputs(prepared, CROP, 15)
    want = [i for i, y in enumerate(labels.tolist()) if y == 1][:2]  # the model says 1: those are correct
    decoded = []
    real = shards.decode
    monkeypatch.setattr(shards, "decode", lambda sample: decoded.append(1) or real(sample))
    x, y, chosen, paths, note = correctly_classified(Always(1), ValidationStream(prepared, CROP, 15, 4), 2, 15)
    assert chosen == want and y.tolist() == [1, 1]
    assert torch.equal(x, ref[want])
    assert note == "the first 2 of the 15 images searched that the model classifies correctly"
    assert len(decoded) == 4 * (-(-(want[-1] + 1) // 4))  # it stopped at the batch holding the second one
    # none correct (class 3 is no image's label): the first n, said so
    x, _, chosen, _, note = correctly_classified(Always(3, classes=4), ValidationStream(prepared, CROP, 15, 4), 3, 15)
    assert chosen == [0, 1, 2] and torch.equal(x, ref[:3])
    assert note.endswith("showing the first 3, misclassified")


def test_visualize_images_accepts_a_count_or_all(tiny_cfg):
    from zfnet.schema import ConfigError, validate

    for ok in (1, 50000, "all"):
        tiny_cfg.visualize.images = ok
        validate(tiny_cfg)
    for bad in (0, "some", 2.5):
        tiny_cfg.visualize.images = bad
        with pytest.raises(ConfigError, match=r"visualize\.images=.*expected an int >= 1 or 'all'"):
            validate(tiny_cfg)
