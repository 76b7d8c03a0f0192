"""Top-k activations against a brute-force search; receptive fields against a gradient's support; the
figure writers (Fig. 2, 4, 6) write what their JSON index says."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from zfnet.analysis.topk import receptive_field, top_activations
from zfnet.models import build

LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build("zfnet", 10, width=0.125, input_size=64, init="kaiming").eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(23, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def brute_force_topk(acts: torch.Tensor, k: int):
    """Python loops: for each map, every image's max (first in row-major order), sorted by (-value, image)."""
    n, c = acts.shape[:2]
    out = []
    for ch in range(c):
        cands = []
        for i in range(n):
            flat = acts[i, ch].flatten().tolist()
            m = max(flat)
            p = flat.index(m)
            cands.append((-m, i, p // acts.shape[3], p % acts.shape[3]))
        cands.sort()
        out.append(cands[:k])
    return out


def test_top_activations_equals_brute_force(model, images):
    got = top_activations(model, images, LAYERS + ["fc6"], k=4, batch_size=5)  # streaming over 5 batches
    with torch.no_grad():  # same batches as the stream (a batched GEMM's rounding depends on batch size)
        parts = [model.extract(images[s:s + 5], LAYERS + ["fc6"]) for s in range(0, 23, 5)]
        acts = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    for layer in LAYERS + ["fc6"]:
        a = acts[layer] if acts[layer].ndim == 4 else acts[layer][:, :, None, None]
        ref = brute_force_topk(a, 4)
        t = got[layer]
        assert t.values.shape == (a.shape[1], 4)
        for ch, rows in enumerate(ref):
            assert t.values[ch].tolist() == [-r[0] for r in rows], (layer, ch)
            assert t.image_index[ch].tolist() == [r[1] for r in rows], (layer, ch)
            assert t.y[ch].tolist() == [r[2] for r in rows] and t.x[ch].tolist() == [r[3] for r in rows]


def test_ties_go_to_the_lower_image_index(model, images):
    dup = torch.cat([images[:3], images[:3], images[:3]])  # every value appears three times
    for bs in (2, 9):
        t = top_activations(model, dup, ["conv3"], k=9, batch_size=bs)["conv3"]
        for ch in range(t.values.shape[0]):
            idx = t.image_index[ch].tolist()
            vals = t.values[ch].tolist()
            for j in range(8):
                assert vals[j] > vals[j + 1] or (vals[j] == vals[j + 1] and idx[j] < idx[j + 1])
    # fewer images than k: k is cut to the number of images
    assert top_activations(model, images[:3], ["conv1"], k=9)["conv1"].values.shape[1] == 3


def test_loader_input_and_forward_stops_at_deepest_layer(model, images):
    top_activations(model, images[:1], ["conv1", "conv3"], k=1)  # the one-image reuse probe, cached per model
    calls = []
    hooks = [model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: calls.append(n))
             for n in ("conv3", "conv4", "conv5", "fc6")]
    loader = [(images[s:s + 8], torch.zeros(8)) for s in range(0, 23, 8)]  # (x, y) batches
    try:
        got = top_activations(model, loader, ["conv1", "conv3"], k=3)
    finally:
        for h in hooks:
            h.remove()
    assert set(calls) == {"conv3"}
    ref = top_activations(model, images, ["conv1", "conv3"], k=3, batch_size=23)
    for layer in ("conv1", "conv3"):
        for a, b in zip(got[layer], ref[layer]):
            assert torch.equal(a, b)


def test_torchvision_paths_stop_early_and_see_pre_inplace_values():
    import torchvision as tv
    torch.manual_seed(2)
    net = tv.models.alexnet(weights=None).eval()  # features.3 (conv) is followed by ReLU(inplace=True)
    x = torch.randn(6, 3, 96, 96)
    top_activations(net, x[:1], ["features.3", "features.7"], k=1)  # the one-image reuse probe, cached
    seen = []
    h = net.features[12].register_forward_hook(lambda *a: seen.append(1))
    try:
        t = top_activations(net, x, ["features.3", "features.7"], k=2, batch_size=4)
    finally:
        h.remove()
    assert not seen
    with torch.no_grad():
        for layer, upto in (("features.3", 4), ("features.7", 8)):
            conv_out = net.features[:upto](x)
            ref = brute_force_topk(conv_out, 2)
            assert t[layer].values.tolist() == [[-r[0] for r in rows] for rows in ref], layer
            assert t[layer].image_index.tolist() == [[r[1] for r in rows] for rows in ref], layer
    assert (t["features.3"].values < 0).any()  # pre-ReLU values: the in-place ReLU did not touch them


# ------------------------------------------------------------------------------------ receptive field
def linearized(model: nn.Module) -> nn.Module:
    """Same geometry, every path alive: max pool -> avg pool (same window), ReLU/LRN -> identity,
    weights -> |w| + 0.01. The input gradient of a unit is then > 0 exactly on its receptive field."""
    m = copy.deepcopy(model).double()
    for name, mod in list(m.named_modules()):
        if not name:
            continue
        parent = m.get_submodule(name.rsplit(".", 1)[0]) if "." in name else m
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(mod, nn.MaxPool2d):
            setattr(parent, leaf, nn.AvgPool2d(mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode))
        elif isinstance(mod, (nn.ReLU, nn.LocalResponseNorm, nn.Dropout)):
            setattr(parent, leaf, nn.Identity())
        elif isinstance(mod, nn.Conv2d):
            with torch.no_grad():
                mod.weight.copy_(mod.weight.abs() + 0.01)
    return m


def gradient_support(model, layer, y, x, size):
    lin = linearized(model)
    inp = torch.ones(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    out = {}
    h = lin.get_submodule(layer).register_forward_hook(lambda m, i, o: out.setdefault("o", o))
    try:
        lin(inp) if not hasattr(lin, "forward_to") else lin.forward_to(inp, layer)
    finally:
        h.remove()
    (g,) = torch.autograd.grad(out["o"][0, 0, y, x], inp)
    nz = g[0].abs().sum(0) > 0
    rows, cols = nz.any(1).nonzero().flatten(), nz.any(0).nonzero().flatten()
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    assert nz[top:bottom, left:right].all()  # a full rectangle
    return top, left, bottom, right


@pytest.mark.parametrize("arch", ["zfnet", "alexnet"])
def test_receptive_field_equals_gradient_support(arch):
    torch.manual_seed(3)
    size = 112
    m = build(arch, 10, width=0.125, input_size=size)
    with torch.no_grad():
        shapes = {l: m.forward_to(torch.zeros(1, 3, size, size), l).shape[-2:] for l in LAYERS}
    for layer in LAYERS:
        h, w = shapes[layer]
        for y, x in {(0, 0), (h - 1, w - 1), (h // 2, 0), (1, w // 2), (h // 2, w // 2)}:
            assert receptive_field(m, layer, y, x, size) == gradient_support(m, layer, y, x, size), (layer, y, x)


def test_receptive_field_of_a_torchvision_model():
    import torchvision as tv
    net = tv.models.vgg11(weights=None).features[:11]  # conv/relu/pool chain, module paths "6", "10"
    wrapper = nn.Sequential()
    wrapper.add_module("features", net)
    for layer, (y, x) in (("features.5", (0, 0)), ("features.10", (3, 2))):
        assert receptive_field(wrapper, layer, y, x, 48) == gradient_support(wrapper, layer, y, x, 48)


# ------------------------------------------------------------------------------------ figure writers
def test_export_writes_fig2_and_fig4_with_a_faithful_index(tmp_path, images):
    from PIL import Image

    from zfnet.analysis.deconvnet.top_projections import conv2_projections
    from zfnet.figures.deconv import fig6
    from zfnet.stages.visualize.deconv import fig2_and_fig4

    torch.manual_seed(7)
    final = build("zfnet", 10, width=0.125, input_size=64, init="kaiming")
    early = build("zfnet", 10, width=0.125, input_size=64, init="kaiming")
    out = fig2_and_fig4(final, images, tmp_path, maps_per_layer=2, k=4, layers=("conv1", "conv3", "conv5"),
                        checkpoints={"epoch 1": early, "epoch 5": final})
    assert sorted(out) == ["deconv", "evolution", "maps", "rows"]
    assert [p.split("/")[-1] for p in out["deconv"]] == ["conv1.png", "conv3.png", "conv5.png"]
    for p in out["deconv"] + out["evolution"]:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 50
    index = json.loads((tmp_path / "deconv" / "index.json").read_text())
    ref = top_activations(final, images, ["conv1", "conv3", "conv5"], k=4)
    assert out["maps"] == {layer: [m["channel"] for m in entry["maps"]] for layer, entry in index.items()}
    assert [len(out["rows"][layer]) for layer in index] == [2, 2, 2]  # Fig. 2's rows, for the synthesis figure
    for layer, entry in index.items():
        assert len(entry["maps"]) == 2
        for m in entry["maps"]:
            c = m["channel"]
            assert [u["image_index"] for u in m["units"]] == ref[layer].image_index[c].tolist()
            assert [(u["y"], u["x"]) for u in m["units"]] == list(zip(ref[layer].y[c].tolist(), ref[layer].x[c].tolist()))
            assert [u["value"] for u in m["units"]] == pytest.approx(ref[layer].values[c].tolist(), rel=1e-6)
    evo = json.loads((tmp_path / "evolution" / "index.json").read_text())
    assert evo["conv3"]["labels"] == ["epoch 1", "epoch 5"]
    assert evo["conv3"]["maps"] == [m["channel"] for m in index["conv3"]["maps"]]
    early_top = top_activations(early, images, ["conv3"], k=1)["conv3"]
    for c, per_ckpt in zip(evo["conv3"]["maps"], evo["conv3"]["units"]):
        assert per_ckpt[0]["image_index"] == int(early_top.image_index[c, 0])
    assert not list(tmp_path.rglob(".*tmp*"))  # atomic writes leave no temp files
    models = {"alexnet": build("alexnet", 10, width=0.125, input_size=64), "zfnet": final}
    paths = fig6({label: conv2_projections(m, images, n_maps=4) for label, m in models.items()}, tmp_path)
    assert [p.split("/")[-1] for p in paths] == ["filters_alexnet.png", "conv2_alexnet.png", "filters_zfnet.png",
                                                 "conv2_zfnet.png", "fig6.png"]
