"""Synthesis of a batch against the same objectives one at a time (issue 26), on a small seeded CNN with
random weights, 64 Adam steps with the default transformations (jitter, scale, rotation) and Fourier
parameterization. The reference is each objective run alone (a batch of one)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zfnet.analysis.synthesis import channel, invert, logit, maximize, unit


class Net(nn.Module):
    """conv-relu-pool-LRN, conv-relu-pool, conv-relu, linear (ZFNet's pattern, narrower); 48x48 input;
    seeded He-scaled random weights. Wide enough that float32 batched kernels round differently from
    single-image ones here (a batch of 8 in one forward ends 1.7% of the range apart after 64 steps)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.conv1 = nn.Sequential(nn.Conv2d(3, 32, 5, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
                                   nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0))
        self.conv2 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.conv3 = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(64 * 5 * 5, 5)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * ((2 / p[0].numel()) ** 0.5 if p.ndim > 1 else 0.05)
        self.config = {"input_size": 48}

    def forward(self, x):
        return self.fc(self.conv3(self.conv2(self.conv1(x))).flatten(1))


OBJS = [channel("conv3", 0), channel("conv3", 3), channel("conv3", 5, "centre"), unit("conv2", 2, 2, 3),
        channel("conv1", 7), logit(1), logit(4), channel("conv3", 9)]
CHECKED = [1, 2, 3, 5]  # compared with their runs alone (the others are batch-mates)


def _gap(batch: torch.Tensor, model, objs, **kw) -> float:
    """Largest |batch image - the same objective alone| over the batch, relative to the alone image's range."""
    worst = 0.0
    for j in CHECKED:
        o = objs[j]
        alone = maximize(model, [o], **kw).images[0]
        worst = max(worst, float((batch[j] - alone).abs().max() / (alone.max() - alone.min())))
    return worst


def test_batch_one_image_per_forward_equals_one_at_a_time_float32():
    # chunk=1: each image's forward and backward have the shapes of a run alone; the rest is per image
    model = Net().eval()
    kw = dict(steps=64, seed=5)
    res = maximize(model, OBJS, chunk=1, **kw)
    assert _gap(res.images, model, OBJS, **kw) <= 1e-3
    assert float(res.images.std()) > 1.0  # the images moved away from the start (sd 0.01 * scale)


def test_batch_equals_one_at_a_time_in_float64():
    # all images in one forward: the algorithm couples no images (per-image transformations, regularizers,
    # Adam state); float64 kernels round the same whatever the batch size
    model = Net().double().eval()
    kw = dict(steps=64, seed=5, blur_every=16)  # the default transformations, plus Yosinski's periodic blur
    res = maximize(model, OBJS, **kw)
    assert _gap(res.images, model, OBJS, **kw) <= 1e-3
    chunked = maximize(model, OBJS, chunk=3, **kw)  # forwards of 3, 3 and 2 images
    assert float((chunked.images - res.images).abs().max()) <= 1e-3 * float(res.images.max() - res.images.min())


def test_inversion_one_image_per_forward_equals_one_at_a_time():
    model = Net().eval()
    x0 = torch.randn(3, 3, 48, 48, generator=torch.Generator().manual_seed(4)) * 40
    kw = dict(steps=64, jitter=4.0, rotate=5.0, scale_range=(1.0, 0.95, 1.05), param="fft", seed=2)
    res = invert(model, x0, ["conv2", "conv3"], chunk=1, **kw)
    # inversions are seeded by (image index, layer): image 0 of the batch is image 0 inverted alone
    alone = invert(model, x0[:1], ["conv2", "conv3"], **kw).images[0]
    assert float((res.images[0] - alone).abs().max()) <= 1e-3 * float(alone.max() - alone.min())
    assert float((res.images[1] - alone).abs().max()) > 1e-3 * float(alone.max() - alone.min())  # not vacuous

@pytest.mark.parametrize("chunk", [0, -1, 1.5, True])
def test_chunk_must_be_a_positive_int(chunk):
    with pytest.raises(ValueError, match="chunk"):
        maximize(Net().eval(), OBJS[:1], steps=1, chunk=chunk)
