"""Network-centric synthesis (issue 16): regularizers against finite differences and scipy, the Fourier
parameterization against numpy's FFT, activation maximization against a known optimum and the dataset's
strongest images, batched against one at a time, inversion of invertible layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from zfnet.analysis.synthesis import regularizers as R
from zfnet.analysis.synthesis.parameterization import COLOR_SQRT, Parameterization, random_affine
from zfnet.analysis.synthesis import channel, invert, logit, maximize, parse, unit
from zfnet.analysis.topk import top_activations


def _fd_grad(f, x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """Central finite differences of a scalar function, element by element (no autograd)."""
    g = torch.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + h
        up = float(f(x))
        flat[i] = old - h
        down = float(f(x))
        flat[i] = old
        gf[i] = (up - down) / (2 * h)
    return g


@pytest.mark.parametrize("name,fn", [
    ("l2", lambda x: R.l2(x, scale=3.0)),
    ("tv beta=2", lambda x: R.tv(x, beta=2.0, scale=3.0)),
    ("tv beta=1", lambda x: R.tv(x, beta=1.0, scale=3.0)),
    ("tv beta=1.5", lambda x: R.tv(x, beta=1.5, scale=1.0)),
    ("alpha-norm 6", lambda x: R.alpha_norm(x, alpha=6.0, scale=2.0)),
])
def test_regularizer_gradient_equals_finite_differences(name, fn):
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    w = torch.tensor([1.0, -0.7], dtype=torch.float64)  # per-image weights: images must stay independent
    xa = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad((fn(xa) * w).sum(), xa)
    fd = _fd_grad(lambda z: (fn(z) * w).sum(), x.clone())
    assert torch.allclose(auto, fd, rtol=1e-5, atol=1e-8), (name, (auto - fd).abs().max())
    assert auto.abs().max() > 1e-3  # the check is not vacuous


def test_regularizer_values_by_hand():
    x = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    x[0, 0, 0, 1] = 2.0  # one right-neighbour difference of 2 at (0, 0); (H-1)x(W-1) = 1 position
    assert float(R.tv(x, beta=2.0, eps=0)) == pytest.approx(4.0)
    assert float(R.tv(x, beta=1.0, eps=0)) == pytest.approx(2.0)
    assert float(R.l2(x, scale=2.0)) == pytest.approx(0.25)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.7])
def test_blur_equals_scipy_gaussian_filter(sigma):
    x = torch.randn(2, 3, 17, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ours = R.gaussian_blur(x, sigma).numpy()
    ref = np.stack([np.stack([ndimage.gaussian_filter(x[b, c].numpy(), sigma, mode="mirror", truncate=3.0)
                              for c in range(3)]) for b in range(2)])
    # scipy's radius is int(3 sigma + 0.5), ours ceil(3 sigma): compare where both kernels agree
    assert np.abs(ours - ref).max() < 2e-3 * np.abs(x.numpy()).max()


@pytest.mark.parametrize("kind", ["pixel", "fft"])
@pytest.mark.parametrize("hw", [(16, 16), (15, 12)])
def test_parameterization_round_trips_an_image(kind, hw):
    P = Parameterization(kind, *hw, scale=50.0, dtype=torch.float64)
    img = torch.randn(3, 3, *hw, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 50
    back = P.image(P.to_param(img))
    assert torch.allclose(back, img, atol=1e-9 * 50)


def test_fft_parameterization_against_numpy():
    h, w = 8, 10
    P = Parameterization("fft", h, w, scale=2.0, decorrelate=True, dtype=torch.float64)
    p = torch.randn(1, *P.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    spec = p[0, ..., 0].numpy() + 1j * p[0, ..., 1].numpy()
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    spec = spec / np.maximum(np.sqrt(fx**2 + fy**2), 1.0 / max(h, w))
    img = np.fft.irfft2(spec, s=(h, w), norm="ortho") / 4.0
    c = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
    c = c / np.linalg.norm(c, axis=0).max()
    ref = 2.0 * np.einsum("ij,jhw->ihw", c, img)
    assert np.allclose(P.image(p)[0].numpy(), ref, atol=1e-12)
    assert np.allclose(COLOR_SQRT.numpy(), c)


def test_random_affine_integer_jitter_is_a_shift_with_zero_fill():
    x = torch.randn(3, 3, 12, 14, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    gens = [torch.Generator().manual_seed(10 + i) for i in range(3)]
    out = random_affine(x, gens, jitter=3, scale=(1.0,), rotate=0.0)
    for i in range(3):
        d = torch.rand(4, generator=torch.Generator().manual_seed(10 + i), dtype=torch.float64)
        tx, ty = int(round(float((2 * d[2] - 1) * 3))), int(round(float((2 * d[3] - 1) * 3)))
        ref = torch.zeros_like(x[i])
        ys, xs = slice(max(0, ty), 12 + min(0, ty)), slice(max(0, tx), 14 + min(0, tx))
        ref[:, ys, xs] = x[i][:, max(0, -ty):12 - max(0, ty), max(0, -tx):14 - max(0, tx)]
        assert torch.allclose(out[i], ref, atol=1e-9), i
    assert not torch.equal(out, x)


def test_parse():
    assert parse("logit:3") == logit(3)
    assert parse("conv5:12") == channel("conv5", 12)
    assert parse("features.28:7:centre") == channel("features.28", 7, "centre")
    assert parse("conv5:12@3,4") == unit("conv5", 12, 3, 4)
    with pytest.raises(ValueError, match="objective"):
        parse("conv5:x")


# ------------------------------------------------------------------------------------- small models
class Small(nn.Module):
    """conv-relu-pool-LRN-conv-relu-linear, 16x16 input; per-sample in eval mode."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.LocalResponseNorm(3))
        self.conv2 = nn.Sequential(nn.Conv2d(8, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6 * 8 * 8, 4)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * (0.3 if p.ndim > 1 else 0.1)
        self.config = {"input_size": 16}

    def forward(self, x):
        return self.fc(self.conv2(self.conv1(x)).flatten(1))


def test_class_model_of_a_linear_model_reaches_the_known_optimum():
    # S_c(I) = <w_c, I> + b: arg max S_c(I) - l2 * mean((I / s)^2) is I* = w_c s^2 N / (2 l2), N pixels
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 3)).double()
    lam, s, n = 0.5, 4.0, 3 * 6 * 6
    res = maximize(lin, [logit(1)], size=6, steps=1500, lr=0.1, l2=lam, param="pixel", decorrelate=False,
                   jitter=0, scale_range=(1.0,), rotate=0, scale=s)
    best = (lin[1].weight[1] * s * s * n / (2 * lam)).detach().reshape(3, 6, 6)
    assert torch.allclose(res.images[0], best, rtol=0, atol=2e-2 * float(best.abs().max()))
    assert res.history.shape == (1500, 1)


@pytest.fixture(scope="module")
def small():
    return Small().eval()


@pytest.fixture(scope="module")
def dataset():
    return torch.randn(256, 3, 16, 16, generator=torch.Generator().manual_seed(7)) * 40


@pytest.mark.parametrize("param", ["fft", "pixel"])
def test_maximize_rises_and_beats_the_reference_images(small, dataset, param):
    objs = [logit(2), channel("conv2", 1), channel("conv2", 4, "centre"), unit("conv1", 3, 2, 5)]
    runs = [maximize(small, objs, steps=200, lr=0.05, l2=1e-3, tv=1e-3, param=param, seed=sd)
            for sd in (3, 4, 5)]
    res = runs[0]
    h = np.mean([r.total.numpy() for r in runs], axis=0)  # the regularized objective (the one ascended), over seeds
    # rises in expectation: each quarter of the run is on average above the one before, up to 1% of the
    # whole rise (a converged unit's plateau is flat up to the jitter's noise)
    quarters = h.reshape(4, 50, len(objs)).mean(1)
    rise = quarters[-1] - quarters[0]
    assert (rise > 0).all() and (np.diff(quarters, axis=0) > -0.01 * rise).all(), quarters


@pytest.mark.parametrize("param", ["fft", "pixel"])
def test_maximize_ends_above_every_reference_image(small, dataset, param):
    # Simonyan's setting (no transformation robustness: the objective is of the image itself), from noise
    objs = [logit(2), channel("conv2", 1), channel("conv2", 4, "centre"), unit("conv2", 3, 2, 5)]
    res = maximize(small, objs, steps=200, lr=0.05, l2=1e-4, tv=1e-4, param=param, jitter=0, rotate=0,
                   scale_range=(1.0,), blur_every=50, seed=3)
    with torch.no_grad():
        out = small(dataset)
        acts1, acts2 = small.conv1(dataset), small.conv2(small.conv1(dataset))
    ref = [out[:, 2].max(), acts2[:, 1].mean((1, 2)).max(), acts2[:, 4, 4, 4].max(), acts2[:, 3, 2, 5].max()]
    for j, r in enumerate(ref):
        assert float(res.objective[j]) > float(r), (objs[j], float(res.objective[j]), float(r))


def test_unit_beats_its_top1_dataset_activation(small, dataset):
    top = top_activations(small, dataset, ["conv2"], k=1)["conv2"]
    c = 5
    y, x = int(top.y[c, 0]), int(top.x[c, 0])
    res = maximize(small, [unit("conv2", c, y, x)], steps=100, seed=1)
    assert float(res.objective[0]) > float(top.values[c, 0]) > 0


def test_batched_equals_one_at_a_time(small):
    model = Small().double().eval()
    objs = [logit(0), channel("conv2", 2), channel("conv1", 5, "centre"), unit("conv2", 0, 3, 3)]
    kw = dict(steps=40, jitter=2, rotate=10, scale_range=(1.0, 0.9, 1.1), blur_every=7, tv=1e-2, patience=6, tol=0.05, seed=11)
    batch = maximize(model, objs, **kw)
    for j, o in enumerate(objs):
        one = maximize(model, [o], **kw)
        assert torch.allclose(one.images[0], batch.images[j], rtol=1e-6, atol=1e-6 * float(batch.images.abs().max()))
        assert int(one.steps[0]) == int(batch.steps[j])
        assert torch.allclose(one.history[:, 0], batch.history[: one.history.shape[0], j], equal_nan=True)
    assert len(set(batch.steps.tolist())) > 1  # the plateau stop froze images at different steps
    assert not torch.allclose(batch.images[0], maximize(model, objs[:1], **{**kw, "seed": 12}).images[0])  # seed matters


class Identity(nn.Module):
    def __init__(self, conv: nn.Module | None = None):
        super().__init__()
        self.layer = conv if conv is not None else nn.Identity()
        self.head = nn.Linear(1, 1)

    def forward(self, x):
        return self.layer(x)


@pytest.mark.parametrize("which", ["identity", "conv1x1", "conv3x3 delta"])
def test_inversion_of_an_invertible_layer_recovers_the_input(which):
    g = torch.Generator().manual_seed(8)
    if which == "identity":
        model = Identity()
    elif which == "conv1x1":
        conv = nn.Conv2d(3, 3, 1)
        conv.weight.data = (torch.eye(3) + 0.3 * torch.randn(3, 3, generator=g)).reshape(3, 3, 1, 1)
        conv.bias.data = torch.randn(3, generator=g)
        model = Identity(conv)
    else:  # a 3x3 conv whose kernels are shifted deltas: a channel permutation with shifts, invertible inside
        conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        conv.weight.data.zero_()
        for c in range(3):
            conv.weight.data[c, c, 1, 1] = 1.0
            conv.weight.data[3 + c, (c + 1) % 3, 0, 2] = 0.5
        model = Identity(conv)
    model = model.eval()
    x0 = torch.nn.functional.avg_pool2d(torch.randn(2, 3, 16, 16, generator=g), 3, 1, 1) * 60
    res = invert(model, x0, ["layer"], steps=300, lr=0.05, tv=1e-4, alpha_weight=0.0, seed=0)
    assert res.images.shape == (2, 1, 3, 16, 16)
    err = (res.images[:, 0] - x0).norm() / x0.norm()
    assert err < 0.03, float(err)
    assert (res.objective > -1e-3).all()
    start = res.history[0].mean()
    assert start < -0.5  # started from noise: far from the target


def test_invert_batches_layers(small):
    x0 = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(9)) * 40
    res = invert(small, x0, ["conv1", "conv2"], steps=60)
    assert res.images.shape == (2, 2, 3, 16, 16) and res.objective.shape == (2, 2)
    assert (res.history[-5:].mean(0) > res.history[:5].mean(0)).all()


def test_model_flags_restored(small):
    m = Small().train()
    m.conv1[0].weight.requires_grad_(True)
    maximize(m, [logit(0)], steps=2)
    assert m.training and m.conv1[0].weight.requires_grad
    with pytest.raises(KeyError, match="nope"):
        maximize(m, ["nope:1"], steps=1)
