"""Every analysis on torchvision CNNs with random weights (alexnet, vgg16, resnet18, mobilenet_v2), layers by
module path, against independent references: Captum (NeuronDeconvolution x activation, NeuronGuidedBackprop,
NeuronGradient), direct per-position occlusion loops, direct invariance / Delta computations; refusals."""

from __future__ import annotations

import warnings

import pytest
import torch
from captum.attr import NeuronDeconvolution, NeuronGradient, NeuronGuidedBackprop
from helpers import images, occlude, rel, tv_model
from torch import nn

from zfnet.analysis.hooks import ReusedLayerError
from zfnet.analysis.correspondence import delta, delta_from_eps, random_masks
from zfnet.analysis.deconvnet import UnsupportedOpError, guided_backprop, project, project_units, saliency
from zfnet.analysis.evolution import feature_evolution
from zfnet.analysis.filters import first_conv
from zfnet.analysis.invariance import invariance_sweep, transform
from zfnet.analysis.occlusion import occlusion_maps
from zfnet.analysis.topk import top_activations

pytestmark = pytest.mark.usefixtures("one_thread")

# (architecture, layer path, dtype): float64 where the model is small enough to be exact
CASES = [("alexnet", "features.12", torch.float64), ("vgg16", "features.30", torch.float32),
         ("resnet18", "layer4.1", torch.float64)]
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}
_MODELS: dict = {}


def model_for(name: str, dtype) -> nn.Module:
    if (name, dtype) not in _MODELS:
        _MODELS[(name, dtype)] = tv_model(name, dtype=dtype)
    return _MODELS[(name, dtype)]


def _output(model, x, layer):
    got = {}

    def hook(_m, _i, o):  # a copy at the call (returns None: the module's output stays as it is)
        got.setdefault("a", o.detach().clone())

    h = model.get_submodule(layer).register_forward_hook(hook)
    with torch.no_grad():
        model(x)
    h.remove()
    return got["a"]


def _unit(model, x, layer):
    a = _output(model, x, layer)
    c = int(a[0].flatten(1).amax(1).argmax())
    return c, a.shape[-2] // 2, a.shape[-1] // 2


@pytest.mark.parametrize("name,layer,dtype", CASES)
def test_gradient_family_equals_captum(name, layer, dtype):
    model, x = model_for(name, dtype), images(2, 64, dtype)
    unit = _unit(model, x, layer)
    ch, pos = torch.tensor([unit[0]] * 2), torch.tensor([unit[1:]] * 2)
    mod = model.get_submodule(layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_d = NeuronDeconvolution(model, mod).attribute(x, neuron_selector=unit)
        ref_g = NeuronGuidedBackprop(model, mod).attribute(x, neuron_selector=unit)
        ref_s = NeuronGradient(model, mod).attribute(x, neuron_selector=unit)
    proj, (_c, _y, _x, value) = project(model, x, layer, ch, pos, return_units=True)
    assert (value > 0).all()
    assert rel(proj, ref_d * value.view(-1, 1, 1, 1)) < TOL[dtype]
    assert rel(guided_backprop(model, x, layer, ch, pos), ref_g) < TOL[dtype]
    assert rel(saliency(model, x, layer, ch, pos), ref_s) < TOL[dtype]
    assert model.training is False


def test_mobilenet_relu6_is_refused_by_name_saliency_works():
    model, x = model_for("mobilenet_v2", torch.float64), images(2, 64, torch.float64)
    for fn in (project, guided_backprop):
        with pytest.raises(UnsupportedOpError, match=r"'features\.0\.2' \(ReLU6\)"):
            fn(model, x, "features.18")
    unit = _unit(model, x, "features.18")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NeuronGradient(model, model.get_submodule("features.18")).attribute(x, neuron_selector=unit)
    got = saliency(model, x, "features.18", [unit[0]] * 2, [unit[1:]] * 2)
    assert rel(got, ref) < 1e-10


@pytest.mark.parametrize("act", [nn.SiLU, nn.GELU, nn.Hardswish])
def test_smooth_nonlinearities_are_refused_naming_the_module(act):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.Conv2d(4, 4, 3), act()), nn.Conv2d(4, 2, 1)).double()
    x = images(1, 12, torch.float64)
    with pytest.raises(UnsupportedOpError, match=rf"'1\.1' \({act.__name__}\)"):
        project(net, x, "2")
    assert saliency(net, x, "2").shape == x.shape


def test_reused_relu_is_refused_or_picked_by_call():
    model, x = model_for("resnet18", torch.float64), images(2, 64, torch.float64)
    with pytest.raises(ReusedLayerError, match=r"'layer4\.1\.relu' \(ReLU\) runs 2 times"):
        project(model, x, "layer4.1.relu")
    with pytest.raises(ReusedLayerError):
        top_activations(model, x, ["layer4.1.relu"])
    # the second call of layer4.1.relu is the block's output
    assert torch.equal(project(model, x, "layer4.1.relu", call=1), project(model, x, "layer4.1"))
    t1, t2 = top_activations(model, x, ["layer4.1.relu"], call=1), top_activations(model, x, ["layer4.1"])
    assert torch.equal(t1["layer4.1.relu"].values, t2["layer4.1"].values)


def test_project_units_fast_on_chains_autograd_elsewhere():
    for name, layer in (("alexnet", "features.10"), ("resnet18", "layer3")):  # a chain (fast engine); autograd
        dtype = torch.float64
        model, x = model_for(name, dtype), images(3, 64, dtype)
        a = _output(model, x, layer)
        n, c = torch.tensor([0, 2, 1]), torch.tensor([1, 5, 7])
        y, xx = torch.tensor([0, 1, 1]), torch.tensor([1, 0, 1])
        p = project_units(model, x, layer, n, c, y, xx)
        ref = torch.cat([project(model, x[n[j]:n[j] + 1], layer, c[j:j + 1], [[int(y[j]), int(xx[j])]])
                         for j in range(3)])
        assert rel(p.full(), ref) < 1e-10
        # seeds: the units' activations; the fast engine's forward on receptive-field boxes may sum in another
        # order than the whole forward (small windows), so equal to float rounding
        assert rel(p.units["value"], a[n, c, y, xx].cpu()) < 1e-13
        assert (p.values.shape[-1] != 64) == (name == "alexnet")  # receptive-field frames from the fast engine


def _direct_occlusion(model, x, layer, size, stride, channel):
    feats, probs = [], []
    for y in range(0, x.shape[-2] - size + 1, stride):
        for x0 in range(0, x.shape[-1] - size + 1, stride):
            c = occlude(x, y, x0, size)[None]
            feats.append(_output(model, c, layer)[0, channel].sum())
            with torch.no_grad():
                probs.append(torch.softmax(model(c), 1)[0])
    return torch.stack(feats), torch.stack(probs)


@pytest.mark.parametrize("name,layer,dtype,method", [("alexnet", "features.10", torch.float64, "incremental"),
                                                     ("vgg16", "features.28", torch.float32, "incremental"),
                                                     ("resnet18", "layer3", torch.float64, "full")])
def test_occlusion_maps_equal_a_direct_loop(name, layer, dtype, method):
    model, x = model_for(name, dtype), images(1, 64, dtype, seed=3, scale=2.0)[0]
    got = occlusion_maps(model, x, 4, 16, 12, layer=layer, keep_probs=True, chunk=5)
    assert got["method"] == method
    feat, probs = _direct_occlusion(model, x, layer, 16, 12, got["channel"])
    n = got["feature"].shape
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=2e-4, atol=1e-4)
    torch.testing.assert_close(got["feature"], feat.reshape(n), **tol)
    torch.testing.assert_close(got["probs"], probs.reshape(*n, -1), **tol)
    torch.testing.assert_close(got["prob"], probs[:, 4].reshape(n), **tol)
    assert torch.equal(got["top_class"], probs.argmax(1).reshape(n))
    if method == "incremental":
        full = occlusion_maps(model, x, 4, 16, 12, layer=layer, method="full")
        torch.testing.assert_close(full["prob"], got["prob"], **tol)
    else:
        with pytest.raises(ValueError, match="incremental"):
            occlusion_maps(model, x, 4, 16, 12, layer=layer, method="incremental")


def test_invariance_and_delta_equal_direct_computations():
    model, x = model_for("resnet18", torch.float64), images(3, 64, torch.float64)
    layers = ["layer1", "avgpool"]
    df = invariance_sweep(model, x, [1, 2, 3], {"rotate": [0.0, 30.0], "scale": [1.2]}, layers=layers)
    for row in df.itertuples(index=False):
        xi = x[row.image]
        xt = transform(xi, row.transform, row.amount)[None]
        for layer in layers:
            d = (_output(model, xt, layer) - _output(model, xi[None], layer)).flatten().norm()
            assert getattr(row, f"distance_{layer}") == pytest.approx(float(d), rel=1e-9, abs=1e-12)
        with torch.no_grad():
            assert row.p_true == pytest.approx(float(torch.softmax(model(xt), 1)[0, row.label]), rel=1e-9)
    masks = random_masks(3, 16, (64, 64), generator=torch.Generator().manual_seed(0))
    occluded = torch.where(masks[:, None], torch.zeros(()).double(), x)
    eps = (_output(model, x, "layer3") - _output(model, occluded, "layer3")).flatten(1)
    signs = torch.sign(eps)
    pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
    ref = sum(float((signs[i] != signs[j]).double().mean()) for i, j in pairs) / len(pairs)
    assert delta(model, x, masks, "layer3") == pytest.approx(ref, rel=1e-12)
    assert delta_from_eps(eps) == pytest.approx(ref, rel=1e-12)


def test_first_conv_evolution_and_topk_on_torchvision():
    assert first_conv(model_for("resnet18", torch.float64))[0] == "conv1"
    assert first_conv(model_for("alexnet", torch.float64))[0] == "features.0"
    models = {"a": model_for("alexnet", torch.float64), "b": tv_model("alexnet", seed=5, dtype=torch.float64)}
    x = images(4, 64, torch.float64)
    evo = feature_evolution(models, x, {"features.10": [0, 3]})
    r = evo["features.10"]
    assert r["labels"] == ["a", "b"] and r["projections"].shape[:2] == (2, 2)
    for e, (label, m) in enumerate(models.items()):
        t = top_activations(m, x, ["features.10"], k=1)["features.10"]
        for i, c in enumerate([0, 3]):
            unit = r["units"][i][e]
            assert (unit["image_index"], unit["y"], unit["x"]) == (int(t.image_index[c, 0]), int(t.y[c, 0]),
                                                                   int(t.x[c, 0]))
            ref = project(m, x[unit["image_index"]][None], "features.10", [c], [[unit["y"], unit["x"]]])
            assert rel(project_units(m, x, "features.10", [unit["image_index"]], [c], [unit["y"]],
                                     [unit["x"]]).full(), ref) < 1e-10
