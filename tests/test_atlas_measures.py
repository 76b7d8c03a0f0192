"""The atlas's per-unit measures: statistics against a recomputation on every activation at once (numpy) and
hand-computed class selectivity on planted activations; unit ablation against a naive loop over modified
copies of the model (our model and torchvision resnet18) and on a planted one-channel model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from helpers import images as random_images
from helpers import tv_model
from zfnet.atlas.ablation import unit_ablation
from zfnet.atlas.statistics import unit_statistics
from zfnet.models import build
from zfnet.models.paper_cnn import PaperCNN

pytestmark = pytest.mark.usefixtures("one_thread")
LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build("zfnet", 10, width=0.125, input_size=64, init="kaiming").eval()


# ------------------------------------------------------------------------------------------ statistics
def numpy_stats(acts: np.ndarray, labels: np.ndarray, n_classes: int, k: int) -> dict:
    """Every statistic from all activations (N, C, H, W) at once, plain numpy and loops."""
    n, c = acts.shape[:2]
    flat = acts.reshape(n, c, -1)
    per_image = flat.mean(2)  # (N, C)
    class_mean = np.full((c, n_classes), np.nan)
    for cls in range(n_classes):
        if (labels == cls).any():
            class_mean[:, cls] = per_image[labels == cls].mean(0)
    sel = np.full(c, np.nan)
    for ch in range(c):
        seen = [v for v in class_mean[ch] if not np.isnan(v)]
        if len(seen) < 2 or min(seen) < 0:
            continue
        top = max(seen)
        rest = (sum(seen) - top) / (len(seen) - 1)
        if top + rest != 0:
            sel[ch] = (top - rest) / (top + rest)
    top_idx = np.stack([sorted(range(n), key=lambda i: (-flat[i, ch].max(), i))[:k] for ch in range(c)])
    return {"mean": flat.mean((0, 2)), "max": flat.max((0, 2)), "fire_rate": (flat > 0).mean((0, 2)),
            "class_mean": class_mean, "selectivity": sel, "top_index": top_idx, "top_labels": labels[top_idx]}


def test_statistics_equal_a_recomputation_on_every_activation(model):
    x = random_images(23, 64)
    labels = torch.tensor([i % 4 for i in range(23)])  # 4 of the 6 classes seen: two NaN columns
    stream = [(x[s:s + 5], labels[s:s + 5], [f"img{i}" for i in range(s, min(s + 5, 23))]) for s in range(0, 23, 5)]
    got = unit_statistics(model, stream, LAYERS + ["fc7"], n_classes=6, k=4)
    with torch.no_grad():  # the same batches as the stream (a batched GEMM's rounding depends on batch size)
        parts = [model.extract(x[s:s + 5], LAYERS + ["fc7"]) for s in range(0, 23, 5)]
    for layer in LAYERS + ["fc7"]:
        a = torch.cat([p[layer] for p in parts]).double().numpy()
        a = a if a.ndim == 4 else a[:, :, None, None]
        ref = numpy_stats(a, labels.numpy(), 6, 4)
        s = got[layer]
        assert s.topk.image_index.tolist() == ref["top_index"].tolist(), layer
        assert s.top_labels.tolist() == ref["top_labels"].tolist(), layer
        for field in ("mean", "max", "fire_rate", "class_mean", "selectivity"):
            np.testing.assert_allclose(getattr(s, field).double().numpy(), ref[field], rtol=1e-5, atol=1e-6,
                                       equal_nan=True, err_msg=f"{layer}.{field}")
        assert np.isnan(s.class_mean[:, 4:].numpy()).all() and not np.isnan(s.class_mean[:, :4].numpy()).any()
    assert np.isfinite(got["conv3"].selectivity.numpy()).sum() > 0  # the test compares defined values too
    assert (got["conv1"].fire_rate > 0).all() and (got["conv1"].fire_rate < 1).any()


def test_statistics_of_a_torchvision_model_and_a_tensor_pair():
    net = tv_model("resnet18")
    x, labels = random_images(6, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    got = unit_statistics(net, (x, labels), ["bn1", "layer1"], n_classes=3, k=2)
    with torch.no_grad():
        bn1 = net.bn1(net.conv1(x))  # before the in-place ReLU
        layer1 = net.layer1(net.maxpool(net.relu(bn1.clone())))
    for name, a in (("bn1", bn1), ("layer1", layer1)):
        ref = numpy_stats(a.double().numpy(), labels.numpy(), 3, 2)
        for field in ("mean", "max", "fire_rate", "class_mean", "selectivity"):
            np.testing.assert_allclose(getattr(got[name], field).double().numpy(), ref[field], rtol=1e-4, atol=1e-5,
                                       equal_nan=True, err_msg=f"{name}.{field}")
    assert torch.isnan(got["bn1"].selectivity).any()  # negative class means: the index is undefined there


class Planted(nn.Module):
    """Its layer ``out`` returns the input itself: the activations are the planted images."""

    def __init__(self):
        super().__init__()
        self.out = nn.Identity()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.out(x) * (1 + self.w)


def test_selectivity_of_planted_class_conditional_activations():
    # 3 classes, 2 images each, 2x2 maps; channel values by class (spatial mean per image shown in comments)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    x = torch.zeros(6, 5, 2, 2)
    x[labels == 0, 0] = 1.0  # only class 0: mu_max 1, mu_-max 0 -> SI 1
    x[:, 1] = 2.0  # every class alike: SI 0
    x[labels == 0, 2] = 3.0  # 3 / 1 / 1: (3 - 1) / (3 + 1) = 0.5
    x[labels != 0, 2] = 1.0
    x[:, 3] = 0.0  # dead: 0 / 0 -> NaN
    x[0, 4, 0, 0] = 4.0  # one position of one image: class 0's mean 0.5, others 0 -> SI 1; fires 1 / 24
    s = unit_statistics(Planted(), (x, labels), ["out"], n_classes=3, k=2)["out"]
    assert torch.allclose(s.selectivity[[0, 1, 2, 4]], torch.tensor([1.0, 0.0, 0.5, 1.0]))
    assert torch.isnan(s.selectivity[3])
    assert s.class_mean[2].tolist() == [3.0, 1.0, 1.0] and s.class_mean[4].tolist() == [0.5, 0.0, 0.0]
    assert s.fire_rate.tolist() == pytest.approx([8 / 24, 1.0, 1.0, 0.0, 1 / 24])
    assert s.max.tolist() == [1.0, 2.0, 3.0, 0.0, 4.0]
    assert s.top_labels[4].tolist() == [0, 0] and s.topk.image_index[4].tolist() == [0, 1]
    # one class seen: undefined; a negative class mean: undefined
    one = unit_statistics(Planted(), (x[:2], labels[:2]), ["out"], n_classes=3, k=2)["out"]
    assert torch.isnan(one.selectivity).all()
    neg = unit_statistics(Planted(), (x - 0.1, labels), ["out"], n_classes=3, k=2)["out"]
    assert torch.isnan(neg.selectivity[[0, 3]]).all()


def test_statistics_refuse_labels_outside_n_classes(model):
    with pytest.raises(ValueError, match="labels must be in 0..2"):
        unit_statistics(model, (random_images(2, 64), torch.tensor([0, 3])), ["conv1"], n_classes=3)


# ------------------------------------------------------------------------------------------ ablation
@pytest.fixture(scope="module")
def varied(model):
    """The model with kaiming fc weights and fc8's bias centring the logits of random images, so that the
    class depends on the image (a random net's logits share a common part that gives every image one class,
    and no single map changes that)."""
    m = copy.deepcopy(model)
    torch.manual_seed(1)
    with torch.no_grad():
        for name in ("fc6", "fc7", "fc8"):
            nn.init.kaiming_normal_(m.block(name).fc.weight, nonlinearity="relu")
        m.fc8.fc.bias -= m(random_images(32, 64, seed=5)).mean(0)
    return m

class ZeroMap(nn.Module):
    def __init__(self, channel: int):
        super().__init__()
        self.channel = channel

    def forward(self, x):
        x = x.clone()
        x[:, self.channel] = 0
        return x


def naive_drop(model, x, labels, layer, channel) -> float:
    """A modified copy of the model, evaluated whole: the conv's filter and bias zeroed when nothing across
    channels follows it in the block (ReLU(0) = 0, pooling 0 gives 0), else a module zeroing the block's
    output map appended to the block (LRN mixes channels: a zero filter is not a zero output)."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        base = (model(x).argmax(1) == labels).double().mean()
        target = m.get_submodule(layer)
        if isinstance(target, nn.Sequential) and not any(isinstance(c, nn.LocalResponseNorm) for c in target):
            target.conv.weight[channel] = 0
            target.conv.bias[channel] = 0
        elif isinstance(target, nn.Sequential):
            target.add_module("zero", ZeroMap(channel))
        else:  # a bias-free torchvision conv
            assert isinstance(target, nn.Conv2d) and target.bias is None
            target.weight[channel] = 0
        return float(base - (m(x).argmax(1) == labels).double().mean())


def test_ablation_of_every_unit_equals_a_naive_loop(varied):
    model = varied
    x = random_images(14, 64)
    with torch.no_grad():
        labels = model(x).argmax(1)
    assert len(set(labels.tolist())) >= 3
    labels[::3] = (labels[::3] + 1) % 10  # a baseline below 1: drops and gains both possible
    stream = [(x[s:s + 4], labels[s:s + 4], []) for s in range(0, 14, 4)]
    units = {layer: list(range(model.block(layer).conv.out_channels)) for layer in LAYERS}
    units["conv2"] = units["conv2"][::-1]  # any order
    got = unit_ablation(model, stream, units, images=12, batch_units=5, batch_size=13, progress=False)
    assert got.images == 12
    assert got.baseline == pytest.approx(float((model(x[:12]).argmax(1) == labels[:12]).double().mean()))
    assert list(got.drop) == LAYERS and all(list(got.drop[l]) == units[l] for l in LAYERS)
    ref = {layer: {c: naive_drop(model, x[:12], labels[:12], layer, c) for c in units[layer]} for layer in LAYERS}
    for layer in LAYERS:
        for c in units[layer]:
            assert got.drop[layer][c] == pytest.approx(ref[layer][c], abs=1e-9), (layer, c)
    assert sum(v != 0 for d in ref.values() for v in d.values()) >= 5  # some units matter: the test can fail


def test_ablation_of_a_torchvision_resnet_equals_a_naive_loop():
    net = tv_model("resnet18")
    x = random_images(6, 32)
    with torch.no_grad():
        labels = net(x).argmax(1)
    units = {"conv1": list(range(0, 64, 3)), "layer2.0.conv2": list(range(0, 128, 9))}
    got = unit_ablation(net, (x, labels), units, images=6, batch_units=4, batch_size=8, progress=False)
    assert got.baseline == 1.0
    for layer, chans in units.items():
        for c in chans:
            assert got.drop[layer][c] == pytest.approx(naive_drop(net, x, labels, layer, c), abs=1e-9), (layer, c)
    assert any(v > 0 for d in got.drop.values() for v in d.values())


def planted_blocks() -> dict[str, nn.Sequential]:
    """conv1 (1x1, 4 maps): map 2 = ReLU(red channel); fc6 reads map 2 only: class 1 iff the red channel is > 0."""
    conv = nn.Conv2d(3, 4, 1)
    fc = nn.Linear(4 * 8 * 8, 2)
    with torch.no_grad():
        conv.weight.normal_(generator=torch.Generator().manual_seed(0))
        conv.weight[2] = 0
        conv.weight[2, 0] = 1
        conv.bias.fill_(0.5)
        conv.bias[2] = 0
        fc.weight.zero_()
        fc.bias.copy_(torch.tensor([0.0, -32.0]))
        fc.weight.view(2, 4, 64)[1, 2] = 1.0
    return {"conv1": nn.Sequential(conv, nn.ReLU()), "fc6": nn.Sequential(fc)}


@pytest.mark.parametrize("ours", [True, False])
def test_a_planted_unit_alone_drops_accuracy_to_chance(ours):
    blocks = planted_blocks()
    model = (PaperCNN("planted", blocks, {"input_size": 8}) if ours
             else nn.Sequential(blocks["conv1"], nn.Flatten(), blocks["fc6"]))
    labels = torch.tensor([0, 1] * 10)
    x = torch.randn(20, 3, 8, 8, generator=torch.Generator().manual_seed(3)).abs()
    x[labels == 0, 0] *= -1  # red < 0: class 0
    layer = "conv1" if ours else "0"
    got = unit_ablation(model, (x, labels), {layer: [0, 1, 2, 3]}, images=20, batch_units=3, progress=False)
    assert got.baseline == 1.0
    assert got.drop[layer] == {0: 0.0, 1: 0.0, 2: 0.5, 3: 0.0}  # chance: every image called class 0


class HeadStream:
    """A visualize-like stream: batches of (images, labels, paths), and ``head(n)``, which the ablation reads."""

    def __init__(self, x, labels):
        self.x, self.labels, self.heads = x, labels, []

    def __iter__(self):
        raise AssertionError("the first images come from head(n), not from a pass over the stream")

    def head(self, n):
        self.heads.append(n)
        return self.x[:n], self.labels[:n]


def test_ablation_reads_only_the_head_of_a_visualize_stream():
    model = PaperCNN("planted", planted_blocks(), {"input_size": 8})
    labels = torch.tensor([0, 1] * 10)
    x = torch.randn(20, 3, 8, 8, generator=torch.Generator().manual_seed(3)).abs()
    x[labels == 0, 0] *= -1
    x[:4, 0] *= -1  # the first 4 images cross to the other class: wrongly called
    stream = HeadStream(x, labels)
    got = unit_ablation(model, stream, {"conv1": [2]}, images=8, progress=False)
    assert stream.heads == [8] and got.images == 8
    assert got.baseline == 0.5  # images 0..3 flipped
    assert got.drop == {"conv1": {2: 0.0}}  # ablated: every image class 0, right for 0, 2, 4, 6: still 0.5


def test_ablation_errors_name_the_layer_and_channels(model):
    x = random_images(2, 64)
    with pytest.raises(ValueError, match=r"units\['conv1'\]: channels \[99\]"):
        unit_ablation(model, (x, torch.tensor([0, 1])), {"conv1": [99]}, images=2, progress=False)
    with pytest.raises(KeyError, match="conv9"):
        unit_ablation(model, (x, torch.tensor([0, 1])), {"conv9": [0]}, images=2, progress=False)
