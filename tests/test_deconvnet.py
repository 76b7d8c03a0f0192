"""Deconvnet (§2.1) against independent references: an explicit deconvnet written here (switch scatter-add,
ReLU, conv_transpose2d), nn.MaxUnpool2d, and Captum's NeuronDeconvolution; ReLU coverage (inplace, reused,
functional) and refusals."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zfnet.analysis.deconvnet import (
    Deconvnet,
    NotAChainError,
    UnsupportedOpError,
    project,
    project_units,
)
from zfnet.models import build

LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]
DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


# ------------------------------------------------------------------------------ explicit reference
def _chain(model: nn.Module, layer: str) -> list[nn.Module]:
    """Leaf modules in forward order up to and including ``layer`` (paper blocks or a Sequential path)."""
    if hasattr(model, "feature_layers"):
        mods = []
        for name in model.feature_layers:
            mods.extend(model.get_submodule(name).children())
            if name == layer:
                return mods
        raise KeyError(layer)
    parent, idx = layer.rsplit(".", 1)
    return list(model.get_submodule(parent).children())[: int(idx) + 1]


def explicit_deconvnet(modules, x, units, unpool="scatter"):
    """Zeiler & Fergus' deconvnet written out: forward with switches, then unpool / rectify / filter.

    units: list of (channel, y, x) per example. LRN: identity on the way down. unpool: "scatter" (sum at
    shared switches) or "maxunpool" (nn.MaxUnpool2d; only valid for non-overlapping pools).
    """
    h, shapes, switches = x, [], {}
    for i, m in enumerate(modules):
        shapes.append(h.shape)
        if isinstance(m, nn.Conv2d):
            h = F.conv2d(h, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)
        elif isinstance(m, nn.ReLU):
            h = F.relu(h)
        elif isinstance(m, nn.MaxPool2d):
            h, switches[i] = F.max_pool2d(h, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode,
                                          return_indices=True)
        elif isinstance(m, nn.LocalResponseNorm):
            h = m(h)
        elif isinstance(m, (nn.Dropout, nn.Identity)):
            pass
        else:
            raise TypeError(m)
    g = torch.zeros_like(h)
    for b, (c, yy, xx) in enumerate(units):
        g[b, c, yy, xx] = h[b, c, yy, xx]
    for i in reversed(range(len(modules))):
        m, shape = modules[i], shapes[i]
        if isinstance(m, nn.Conv2d):
            size = [(o - 1) * s - 2 * p + d * (k - 1) + 1
                    for o, s, p, d, k in zip(g.shape[-2:], m.stride, m.padding, m.dilation, m.kernel_size)]
            extra = [shape[-2] - size[0], shape[-1] - size[1]]  # trailing input rows the padding crop dropped
            assert all(0 <= e < max(s, d) for e, s, d in zip(extra, m.stride, m.dilation))
            g = F.conv_transpose2d(g, m.weight, None, m.stride, m.padding, extra, m.groups, m.dilation)
        elif isinstance(m, nn.ReLU):
            g = F.relu(g)
        elif isinstance(m, nn.MaxPool2d):
            idx = switches[i]
            if unpool == "maxunpool":
                g = nn.MaxUnpool2d(m.kernel_size, m.stride, m.padding)(g, idx, output_size=shape[-2:])
            else:
                out = torch.zeros(shape, dtype=g.dtype).flatten(2)
                out.scatter_add_(2, idx.flatten(2), g.flatten(2))
                g = out.view(shape)
    return g


def _models():
    torch.manual_seed(0)
    zf = build("zfnet", 10, width=0.125, input_size=112, init="kaiming").to(DT)
    ax = build("alexnet", 10, width=0.125, input_size=112, init="kaiming").to(DT)
    return {"zfnet": zf, "alexnet": ax}


@pytest.fixture(scope="module")
def models():
    return _models()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, 112, 112, generator=g, dtype=DT)


@pytest.mark.parametrize("arch", ["zfnet", "alexnet"])
def test_project_equals_explicit_deconvnet(models, images, arch):
    model = models[arch]
    for layer in LAYERS:
        proj, (ch, ys, xs, vals) = project(model, images, layer, return_units=True)
        units = list(zip(ch.tolist(), ys.tolist(), xs.tolist()))
        ref = explicit_deconvnet(_chain(model, layer), images, units)
        assert proj.shape == images.shape
        assert _rel(proj, ref) < 1e-12, layer
        # the strongest unit of each example was chosen and its value is the seed
        acts = model.forward_to(images, layer)
        assert torch.equal(vals, acts.flatten(1).max(1).values)


@pytest.mark.parametrize("arch", ["zfnet", "alexnet"])
def test_fast_engine_equals_explicit_deconvnet_at_every_position(models, images, arch):
    """Receptive-field cropping is exact: every position of every layer (all border cases), 2 channels."""
    model = models[arch]
    dn = Deconvnet(model, LAYERS).cache(images)
    for layer in LAYERS:
        n_img, n_ch, h, w = dn.acts[layer].shape
        rows = range(h) if h <= 8 else sorted({0, 1, 2, 3, h // 2, h - 4, h - 3, h - 2, h - 1})
        cols = range(w) if w <= 8 else sorted({0, 1, 2, 3, w // 2, w - 4, w - 3, w - 2, w - 1})
        pos = [(y, x) for y in rows for x in cols]  # every border case (clipped windows) + the interior
        units = [(b, c, y, x) for b, c in ((0, 1), (1, n_ch - 2)) for y, x in pos]
        n, c, y, x = (list(t) for t in zip(*units))
        full = dn.project_units(layer, n, c, y, x).full()
        ref = explicit_deconvnet(_chain(model, layer), images[n], list(zip(c, y, x)))  # one unit per copy
        assert (full - ref).abs().max() <= 1e-12 * ref.abs().max(), layer


def test_torchvision_model_by_module_path():
    import torchvision as tv
    torch.manual_seed(2)
    model = tv.models.alexnet(weights=None).to(DT)  # inplace ReLUs, layers addressed as features.N
    x = torch.randn(2, 3, 112, 112, dtype=DT)
    for layer in ["features.1", "features.4", "features.10", "features.12"]:
        proj, (ch, ys, xs, _v) = project(model, x, layer, return_units=True)
        ref = explicit_deconvnet(_chain(model, layer), x, list(zip(ch.tolist(), ys.tolist(), xs.tolist())))
        assert _rel(proj, ref) < 1e-12, layer
        fast = project_units(model, x, layer, [0, 1], ch, ys, xs).full()
        assert _rel(fast, ref) < 1e-12, layer
    # several layers in one engine: features.3 (a conv) is followed by ReLU(inplace=True), its cached
    # activations (the seeds) must be the conv's own output
    dn = Deconvnet(model, ["features.3", "features.10"]).cache(x)
    with torch.no_grad():
        pre = model.features[:4](x.clone())
    assert torch.equal(dn.acts["features.3"], pre) and (pre < 0).any()


# ----------------------------------------------------------------------------------------- Captum
def _captum(model, x, layer, ch, ys, xs, vals):
    import captum.attr as captum
    nd = captum.NeuronDeconvolution(model, model.get_submodule(layer))
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b in range(x.shape[0]):
            a = nd.attribute(x[b:b + 1], (int(ch[b]), int(ys[b]), int(xs[b])))
            out.append(a * vals[b])
    return torch.cat(out)


def test_equals_captum_neuron_deconvolution():
    """Captum overrides only ReLUs: equal to ours on LRN-free models (identity) and, with LRN, to lrn="gradient"."""
    torch.manual_seed(3)
    x = torch.randn(2, 3, 112, 112, dtype=DT)
    no_lrn = build("zfnet", 10, width=0.125, input_size=112, init="kaiming", lrn=None).to(DT).eval()
    with_lrn = build("alexnet", 10, width=0.125, input_size=112, init="kaiming").to(DT).eval()
    zf_lrn = build("zfnet", 10, width=0.125, input_size=112, init="kaiming").to(DT).eval()
    for model, lrn in ((no_lrn, "identity"), (with_lrn, "gradient"), (zf_lrn, "gradient")):
        dn = Deconvnet(model, ["conv2", "conv5"], lrn=lrn).cache(x)
        for layer in ("conv2", "conv5"):
            proj, (ch, ys, xs, vals) = project(model, x, layer, lrn=lrn, return_units=True)
            ref = _captum(model, x, layer, ch, ys, xs, vals)
            assert _rel(proj, ref) < 1e-12, (lrn, layer)
            assert _rel(dn.project_units(layer, [0, 1], ch, ys, xs).full(), ref) < 1e-12, (lrn, layer)
    # the documented difference: the paper's deconvnet passes LRN through, Captum differentiates it
    proj = project(with_lrn, x, "conv2", lrn="identity")
    ref = project(with_lrn, x, "conv2", lrn="gradient")
    assert _rel(proj, ref) > 1e-3


# ------------------------------------------------------------------------------ non-overlapping pool
class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2, 2)

    def forward(self, x):
        return self.pool2(self.relu2(self.conv2(self.pool1(self.relu1(self.conv1(x))))))


def test_non_overlapping_pools_equal_max_unpool():
    torch.manual_seed(4)
    model = SmallCNN().to(DT)
    x = torch.randn(4, 3, 32, 32, dtype=DT)
    mods = list(model.children())
    proj, (ch, ys, xs, _v) = project(model, x, "pool2", return_units=True)
    units = list(zip(ch.tolist(), ys.tolist(), xs.tolist()))
    ref = explicit_deconvnet(mods, x, units, unpool="maxunpool")
    assert _rel(proj, ref) < 1e-12
    assert _rel(project_units(model, x, "pool2", range(4), ch, ys, xs).full(), ref) < 1e-12


# ------------------------------------------------------------------------------------ ReLU coverage
class Net(nn.Module):
    """conv-relu-pool-conv-relu with the ReLU written in one of several ways."""

    def __init__(self, style: str):
        super().__init__()
        self.style = style
        self.c1 = nn.Conv2d(3, 6, 5, stride=2, padding=1)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.c2 = nn.Conv2d(6, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)
        if style == "separate":
            self.r1, self.r2, self.r3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        elif style == "inplace":
            self.r1, self.r2, self.r3 = nn.ReLU(inplace=True), nn.ReLU(inplace=True), nn.ReLU(inplace=True)
        elif style == "reused":
            self.r = nn.ReLU()
            self.r1 = self.r2 = self.r3 = self.r  # one module called at three places

    def act(self, i, x):
        s = self.style
        if s in ("separate", "inplace", "reused"):
            return getattr(self, f"r{i}")(x)
        if s == "F.relu":
            return F.relu(x)
        if s == "torch.relu":
            return torch.relu(x)
        if s == "relu_":
            x.relu_()  # result ignored: relies on the in-place mutation
            return x
        if s == "clamp":
            return x.clamp(min=0)
        if s == "leaky":
            return F.leaky_relu(x, 0.1)
        if s == "relu6":
            return F.relu6(x)
        if s == "scripted":
            return _scripted_relu(x)
        raise ValueError(s)

    def forward(self, x):
        x = self.pool(self.act(1, self.c1(x)))
        x = self.act(2, self.c2(x))
        return self.act(3, self.c3(x))


def _scripted_relu(x: torch.Tensor) -> torch.Tensor:
    global _SCRIPTED
    if _SCRIPTED is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.script is deprecated, still the way to hide an op
            _SCRIPTED = torch.jit.script(_relu_for_script)
    return _SCRIPTED(x)


def _relu_for_script(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x)


_SCRIPTED = None


def _net(style):
    torch.manual_seed(5)
    net = Net(style).to(DT)
    return net


def test_inplace_reused_and_functional_relus_are_covered():
    x = torch.randn(3, 3, 40, 40, dtype=DT, generator=torch.Generator().manual_seed(11))
    base, (ch, ys, xs, _v) = project(_net("separate"), x, "c3", return_units=True)
    ref = explicit_deconvnet([_net("separate").c1, nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
                              _net("separate").c2, nn.ReLU(), _net("separate").c3], x,
                             list(zip(ch.tolist(), ys.tolist(), xs.tolist())))
    assert _rel(base, ref) < 1e-12
    for style in ("inplace", "reused", "F.relu", "torch.relu", "relu_", "clamp"):
        net = _net(style)
        # the net has no ReLU after c3 as a module output, so seed at the ReLU'd output: use the model output
        got = project(net, x, "c3", channels=ch, positions=torch.stack([ys, xs], 1))
        assert _rel(got, base) < 1e-12, style
        fast = project_units(net, x, "c3", range(3), ch, ys, xs).full()
        assert _rel(fast, base) < 1e-12, style
    # sanity: the override is active (the plain gradient differs)
    net = _net("separate")
    xx = x.clone().requires_grad_(True)
    out = net.c3(net.r2(net.c2(net.pool(net.r1(net.c1(xx))))))
    seed = torch.zeros_like(out)
    seed[range(3), ch, ys, xs] = out[range(3), ch, ys, xs].detach()
    (plain,) = torch.autograd.grad(out, xx, seed)
    assert _rel(plain, base) > 1e-3


@pytest.mark.parametrize("style", ["leaky", "relu6", "scripted"])
def test_other_rectifiers_are_refused(style):
    x = torch.randn(1, 3, 40, 40, dtype=DT, generator=torch.Generator().manual_seed(12))
    with pytest.raises(UnsupportedOpError):
        project(_net(style), x, "c3")
    with pytest.raises(UnsupportedOpError):
        Deconvnet(_net(style), ["c3"]).cache(x)


def test_eval_mode_is_used_and_restored(models, images):
    model = build("zfnet", 10, width=0.125, input_size=112, init="kaiming").to(DT)
    model.load_state_dict(models["zfnet"].state_dict())
    model.train()
    model.conv2.eval()  # a mixed state must come back as it was
    got = project(model, images, "conv5")
    assert model.training and model.fc6.drop.training and not model.conv2.training
    assert torch.equal(got, project(models["zfnet"], images, "conv5"))


def test_batch_equals_single_examples_and_unit_choice(models, images):
    model = models["zfnet"]
    chans = torch.tensor([3, 0, 5])
    batch = project(model, images, "conv4", channels=chans)
    for b in range(3):
        single = project(model, images[b:b + 1], "conv4", channels=chans[b:b + 1])
        assert _rel(batch[b:b + 1], single) < 1e-14
    acts = model.forward_to(images, "conv4")
    _, (ch, ys, xs, vals) = project(model, images, "conv4", channels=chans, return_units=True)
    for b in range(3):
        amap = acts[b, chans[b]]
        assert vals[b] == amap.max() and amap[ys[b], xs[b]] == amap.max()
    with pytest.raises(ValueError, match="channels"):
        project(model, images, "conv4", channels=[1, 2])
    with pytest.raises(KeyError, match="conv9"):
        project(model, images, "conv9")
    with pytest.raises(ValueError, match="lrn"):
        project(model, images, "conv4", lrn="inverse")


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.out = nn.ReLU()

    def forward(self, x):
        h = self.relu(self.c1(x))
        return self.out(self.c2(h) + h)


def test_fast_engine_refuses_non_chains_project_still_works():
    torch.manual_seed(6)
    net = Residual().to(DT)
    x = torch.randn(2, 3, 16, 16, dtype=DT)
    with pytest.raises(NotAChainError):
        Deconvnet(net, ["out"]).cache(x)
    out, (ch, ys, xs, vals) = project(net, x, "out", return_units=True)
    # Captum overrides the same two ReLUs (the skip path's gradient joins before the inner one's rule)
    ref = _captum(net, x, "out", ch, ys, xs, vals)
    assert ref.abs().max() > 0 and _rel(out, ref) < 1e-12
    fallback = project_units(net, x, "out", [0, 1], ch, ys, xs)  # "auto" falls back to autograd here
    assert _rel(fallback.full(), ref) < 1e-12


def test_projection_frames_and_crops(models, images):
    model = models["zfnet"]
    dn = Deconvnet(model, ["conv3"]).cache(images)
    p = dn.project_units("conv3", [0, 1, 2], [0, 1, 2], [0, 3, 5], [0, 3, 5])
    assert p.values.shape == (3, 3, 75, 75)  # conv3's receptive field at 224-style arithmetic
    crops = p.crop(images)
    full = p.full()
    for i in range(3):
        t, l = int(p.top[i]), int(p.left[i])
        y0, x0 = max(t, 0), max(l, 0)
        assert torch.equal(crops[i, :, y0 - t:y0 - t + 10, x0 - l:x0 - l + 10], images[i, :, y0:y0 + 10, x0:x0 + 10])
        # nothing of the projection lies outside its frame
        mask = torch.zeros(112, 112, dtype=torch.bool)
        mask[y0:t + 75, x0:l + 75] = True
        assert full[i][:, ~mask].abs().max() == 0


def test_fast_engine_exotic_geometry():
    """Dilation, groups, padded and dilated pools, asymmetric kernels, stride 3, RGB-sized polyphase path."""
    net = _exotic_net()  # seeds torch's generator; x is drawn after it, as before
    x = torch.randn(2, 3, 45, 38, dtype=DT)
    dn = Deconvnet(net, ["6"]).cache(x)
    _, c, h, w = dn.acts["6"].shape
    units = [(b, (b + y) % c, y, xx) for b in range(2) for y in range(h) for xx in range(w)]
    n, ch, ys, xs = (list(t) for t in zip(*units))
    fast = dn.project_units("6", n, ch, ys, xs).full()
    ref = project(net, x[n], "6", channels=ch, positions=list(zip(ys, xs)))
    assert _rel(fast, ref) < 1e-12


def test_fast_engine_pool_window_wider_than_its_map():
    """Padded pools whose window is wider than the map they slide on (3 and 5 wide on a 2-wide map, the
    channels-last pool kernel on the CPU): the switches land where autograd's max-pool backward puts them."""
    torch.manual_seed(9)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.ReLU(), nn.MaxPool2d(3, 1, padding=1),
                        nn.MaxPool2d(5, 1, padding=2), nn.Conv2d(4, 5, 1)).to(DT)
    x = torch.randn(2, 3, 13, 9, dtype=DT)  # a 3 x 2 map after the conv
    dn = Deconvnet(net, ["4"]).cache(x)
    _, c, h, w = dn.acts["4"].shape
    units = [(b, (b + y + xx) % c, y, xx) for b in range(2) for y in range(h) for xx in range(w)]
    n, ch, ys, xs = (list(t) for t in zip(*units))
    fast = dn.project_units("4", n, ch, ys, xs).full()
    ref = project(net, x[n], "4", channels=ch, positions=list(zip(ys, xs)))
    assert _rel(fast, ref) < 1e-12 and ref.abs().amax() > 0


def _exotic_net():
    torch.manual_seed(8)
    return nn.Sequential(
        nn.Conv2d(3, 6, (5, 3), stride=3, padding=(2, 1)),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, padding=1),
        nn.Conv2d(6, 8, 3, padding=2, dilation=2, groups=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, 1, dilation=2, ceil_mode=True),
        nn.Conv2d(8, 4, 1),
    ).to(DT)


class _NoEmptyBatch(nn.Sequential):
    def forward(self, x):
        if x.shape[0] == 0:
            raise RuntimeError("empty batch")
        return super().forward(x)


@pytest.mark.parametrize("case", ["zfnet", "alexnet_lrn_gradient", "exotic", "exotic_no_empty_batch"])
def test_forward_on_receptive_field_windows(models, images, case):
    """cache(units=...) runs the forward only on each image's receptive-field boxes: projections (and seeds)
    equal autograd's deconvnet on the whole images, for units at borders, corners and inside, several per
    image, one image without units; a unit outside the boxes is refused. A model that cannot run the empty
    batch the chain is recorded from is recorded from its first image's whole forward."""
    lrn = "identity"
    if case.startswith("exotic"):
        model, layer = _exotic_net(), "6"
        if case.endswith("no_empty_batch"):
            model = _NoEmptyBatch(*model)
        x = torch.randn(3, 3, 45, 38, dtype=DT, generator=torch.Generator().manual_seed(13))
    else:
        model, layer, x = models[case.split("_")[0]], "conv5" if case == "zfnet" else "conv3", images
        lrn = "gradient" if "lrn" in case else "identity"
    _, c, h, w = Deconvnet(model, [layer]).cache(x[:1]).acts[layer].shape
    # image 0: two corners (its box is the whole map); image 2: a border unit and one inside; image 1: none
    n = [0, 0, 2, 2]
    ys = [0, h - 1, h // 2, h - 1]
    xs = [0, w - 1, 0, w // 2]
    ch = [1 % c, 2 % c, 3 % c, 0]
    dn = Deconvnet(model, [layer], lrn=lrn).cache(x, units=(layer, n, ys, xs))
    with torch.no_grad():
        acts = Deconvnet(model, [layer]).cache(x).acts[layer]
    got = dn.project_units(layer, n, ch, ys, xs)
    assert _rel(got.units["value"], acts[n, ch, ys, xs]) < 1e-13
    ref = project(model, x[n], layer, channels=ch, positions=list(zip(ys, xs)), lrn=lrn)
    assert ref.abs().amax() > 0 and _rel(got.full(), ref) < 1e-12
    assert _rel(project_units(model, x, layer, n, ch, ys, xs, lrn=lrn).full(), ref) < 1e-12
    # image 2's box does not reach row 0 (h > 2 on every case here); image 1 was not run at all
    for img, y in ((2, 0), (1, h // 2)):
        with pytest.raises(ValueError, match="outside the windows"):
            dn.project_units(layer, [img], [0], [y], [w // 2])
