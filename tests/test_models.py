"""zfnet.models: architectures against the paper's arithmetic (docs/paper.md, Fig. 3 / Table 3), torchvision's
AlexNet, and Krizhevsky's LRN formula written out in numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from omegaconf import OmegaConf
from torch import nn

from zfnet.models import build, feature_shapes, names

SMALL = 0.125  # width for tests that only need the topology

# docs/paper.md, "Network (Fig. 3)": per-layer parameter counts at C = 1000
ZF_PARAMS = {
    "conv1": 14_208,
    "conv2": 614_656,
    "conv3": 885_120,
    "conv4": 1_327_488,
    "conv5": 884_992,
    "fc6": 37_752_832,
    "fc7": 16_781_312,
    "fc8": 4_097_000,
}

# Table 3 rows as overrides (rows 2-7 on alexnet, 9-12 on zfnet; all rows are built on both)
TABLE3 = {
    "baseline": {},
    "removed 3,4": {"remove": ["conv3", "conv4"]},
    "removed 7": {"remove": ["fc7"]},
    "removed 6,7": {"remove": ["fc6", "fc7"]},
    "removed 3,4,6,7": {"remove": ["conv3", "conv4", "fc6", "fc7"]},
    "fc 2048": {"fc_units": [2048, 2048]},
    "fc 8192": {"fc_units": [8192, 8192]},
    "maps 512,1024,512": {"conv_maps": [96, 256, 512, 1024, 512]},
    "fc 8192 + maps": {"fc_units": [8192, 8192], "conv_maps": [96, 256, 512, 1024, 512]},
}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv_count(c_in, c_out, k):
    return k * k * c_in * c_out + c_out


def fc_count(n_in, n_out):
    return n_in * n_out + n_out


@pytest.fixture(scope="module")
def zf_full():
    torch.manual_seed(0)
    return build("zfnet", 1000).eval()


@pytest.fixture(scope="module")
def alex_full():
    torch.manual_seed(0)
    return build("alexnet", 1000).eval()


def _hook_shapes(model, x, modules):
    """Output shapes of named modules, recorded by plain forward hooks (independent of feature_shapes)."""
    got = {}
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: got.__setitem__(name, tuple(o.shape))
        )
        for name in modules
    ]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return got, out


# ----------------------------------------------------------------------------------------- registry
def test_names():
    assert names() == ["alexnet", "zfnet"]


def test_unknown_model_lists_known_names():
    with pytest.raises(ValueError, match="resnet") as e:
        build("resnet", 10)
    assert "zfnet" in str(e.value) and "alexnet" in str(e.value)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"widht": 0.5}, "widht"),
        ({"lrn": {"size": 5, "alfa": 1e-4}}, "lrn.alfa"),
        ({"remove": ["conv5"]}, "remove"),
        ({"remove": ["fc8"]}, "remove"),
        ({"conv_maps": [96, 256, 384]}, "conv_maps"),
        ({"fc_units": [4096, -1]}, "fc_units"),
        ({"width": 0}, "width"),
        ({"dropout": 1.0}, "dropout"),
        ({"init": "xavier"}, "init"),
        ({"input_size": 16}, "input_size"),
        ({"lrn": {"size": 4}}, "lrn.size"),
    ],
)
def test_bad_overrides_name_the_key(kwargs, key):
    with pytest.raises((TypeError, ValueError), match=key.replace(".", r"\.")):
        build("zfnet", 10, **kwargs)


def test_unknown_override_is_type_error():
    with pytest.raises(TypeError, match="bogus"):
        build("alexnet", 10, bogus=1)


@pytest.mark.parametrize("kwargs, line", [
    ({"lrn": {"k": 0.0}}, "model.lrn.k=0.0: expected a float > 0"),  # was accepted with alpha > 0: 0/0 on dead maps
    ({"lrn": {"beta": -0.5}}, "model.lrn.beta=-0.5: expected a float >= 0"),  # was any finite number
    ({"lrn": {"size": 4}}, "model.lrn.size=4: expected an int >= 1 and odd"),
    ({"conv_maps": [96.0, 256, 384, 384, 256]}, "model.conv_maps=[96.0, 256, 384, 384, 256]: expected null or a list "
                                                "of ints >= 1 (exactly 5)"),
    ({"dropout": 1.0}, "model.dropout=1.0: expected a float in [0, 1)"),
])
def test_build_checks_overrides_with_the_config_schema(tiny_cfg, kwargs, line):
    """``build`` from Python and a stage reading conf/ apply the same rules, worded the same."""
    from omegaconf import OmegaConf

    from zfnet.schema import ConfigError, validate

    with pytest.raises(ConfigError) as built:
        build("zfnet", 10, **kwargs)
    assert built.value.problems == [line]
    cfg = OmegaConf.merge(tiny_cfg, {"model": kwargs})
    with pytest.raises(ConfigError) as validated:
        validate(cfg)
    assert validated.value.problems == [line]


def test_schema_knows_the_registered_models():
    import typing

    from zfnet.schema.model import Model

    assert sorted(typing.get_args(Model.model_fields["name"].annotation)) == names()


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        build("zfnet", 0)


# ------------------------------------------------------------------------------------ ZFNet (Fig. 3)
def test_zfnet_feature_map_sizes_at_224(zf_full):
    expected = {
        "conv1.conv": (1, 96, 110, 110),
        "conv1": (1, 96, 55, 55),
        "conv2.conv": (1, 256, 26, 26),
        "conv2": (1, 256, 13, 13),
        "conv3.conv": (1, 384, 13, 13),
        "conv3": (1, 384, 13, 13),
        "conv4": (1, 384, 13, 13),
        "conv5.conv": (1, 256, 13, 13),
        "conv5": (1, 256, 6, 6),
        "fc6": (1, 4096),
        "fc7": (1, 4096),
        "fc8": (1, 1000),
    }
    got, out = _hook_shapes(zf_full, torch.randn(1, 3, 224, 224), expected)
    assert got == expected
    assert out.shape == (1, 1000)
    # the helper agrees with the hooks
    shapes = feature_shapes(zf_full, 224, submodules=True)
    assert {k: (1, *shapes[k]) for k in expected} == expected


def test_zfnet_param_counts(zf_full):
    assert n_params(zf_full) == 62_357_608
    assert {name: n_params(zf_full.get_submodule(name)) for name in zf_full.feature_layers} == ZF_PARAMS
    assert sum(ZF_PARAMS.values()) == 62_357_608


def test_zfnet_layer_structure(zf_full):
    assert zf_full.feature_layers == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    top = [n for n, _ in zf_full.named_children()]
    assert top == zf_full.feature_layers
    children = {n: [c for c, _ in zf_full.get_submodule(n).named_children()] for n in top}
    assert children == {
        "conv1": ["conv", "relu", "pool", "norm"],  # Fig. 3: normalisation after pooling
        "conv2": ["conv", "relu", "pool", "norm"],
        "conv3": ["conv", "relu"],
        "conv4": ["conv", "relu"],
        "conv5": ["conv", "relu", "pool"],
        "fc6": ["fc", "relu", "drop"],
        "fc7": ["fc", "relu", "drop"],
        "fc8": ["fc"],
    }
    c1 = zf_full.conv1.conv
    assert (c1.kernel_size, c1.stride, c1.padding) == ((7, 7), (2, 2), (1, 1))
    c2 = zf_full.conv2.conv
    assert (c2.kernel_size, c2.stride, c2.padding) == ((5, 5), (2, 2), (0, 0))
    for name in ("conv1", "conv2", "conv5"):
        pool = zf_full.get_submodule(name).pool
        assert (pool.kernel_size, pool.stride, pool.ceil_mode) == (3, 2, True)
    assert zf_full.fc6.drop.p == 0.5 and zf_full.fc7.drop.p == 0.5
    # addressing helpers
    assert zf_full.block("conv3") is zf_full.conv3
    assert zf_full.weight_layer("conv3") is zf_full.conv3.conv
    assert zf_full.weight_layer("fc6") is zf_full.fc6.fc
    with pytest.raises(KeyError, match="conv9"):
        zf_full.block("conv9")


def test_relus_are_separate_modules_not_inplace():
    for arch in names():
        model = build(arch, 10, width=SMALL, input_size=64)
        relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        assert len(relus) == 7 and len({id(r) for r in relus}) == 7
        assert not any(r.inplace for r in relus)
        assert not any(m.inplace for m in model.modules() if isinstance(m, nn.Dropout))
        for name in model.feature_layers[:-1]:
            assert isinstance(model.get_submodule(f"{name}.relu"), nn.ReLU)


def test_forward_to_and_extract_match_hooks():
    torch.manual_seed(0)
    model = build("zfnet", 7, width=SMALL, input_size=112).eval()
    x = torch.randn(2, 3, 112, 112)
    got = {}
    handles = [
        model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: got.__setitem__(n, o))
        for n in model.feature_layers
    ]
    with torch.no_grad():
        logits = model(x)
        for h in handles:
            h.remove()
        assert torch.equal(got["fc8"], logits)
        assert torch.equal(model.forward_to(x, "conv3"), got["conv3"])
        feats = model.extract(x, ["conv5", "conv1", "fc7"])
    assert set(feats) == {"conv1", "conv5", "fc7"}
    for k, v in feats.items():
        assert torch.equal(v, got[k])


# ------------------------------------------------------------------------------------------ AlexNet
def test_alexnet_sizes_and_structure(alex_full):
    expected = {
        "conv1.conv": (1, 96, 55, 55),
        "conv1": (1, 96, 27, 27),
        "conv2.conv": (1, 256, 27, 27),
        "conv2": (1, 256, 13, 13),
        "conv3": (1, 384, 13, 13),
        "conv4": (1, 384, 13, 13),
        "conv5": (1, 256, 6, 6),
        "fc8": (1, 1000),
    }
    got, _ = _hook_shapes(alex_full, torch.randn(1, 3, 224, 224), expected)
    assert got == expected
    assert feature_shapes(alex_full, 227)["conv5"] == (256, 6, 6)
    # Krizhevsky: response normalisation before pooling
    assert [c for c, _ in alex_full.conv1.named_children()] == ["conv", "relu", "norm", "pool"]
    assert [c for c, _ in alex_full.conv2.named_children()] == ["conv", "relu", "norm", "pool"]
    c1 = alex_full.conv1.conv
    assert (c1.kernel_size, c1.stride, c1.padding) == ((11, 11), (4, 4), (2, 2))


def test_alexnet_param_count_analytic(alex_full):
    maps = [96, 256, 384, 384, 256]
    expected = (
        conv_count(3, 96, 11)
        + conv_count(96, 256, 5)
        + conv_count(256, 384, 3)
        + conv_count(384, 384, 3)
        + conv_count(384, 256, 3)
        + fc_count(maps[-1] * 6 * 6, 4096)
        + fc_count(4096, 4096)
        + fc_count(4096, 1000)
    )
    assert n_params(alex_full) == expected == 62_378_344


def test_alexnet_equals_torchvision_with_its_widths():
    torch.manual_seed(0)
    ref = torchvision.models.alexnet(weights=None, num_classes=10).eval()
    ours = build("alexnet", 10, conv_maps=[64, 192, 384, 256, 256], lrn=None, dropout=0.5).eval()
    assert n_params(ours) == n_params(ref)
    # same layers in the same order: copy torchvision's weights over and compare the logits
    ref_convs = [m for m in ref.features if isinstance(m, nn.Conv2d)]
    ref_fcs = [m for m in ref.classifier if isinstance(m, nn.Linear)]
    ours_layers = [ours.weight_layer(n) for n in ours.feature_layers]
    assert len(ours_layers) == len(ref_convs) + len(ref_fcs)
    with torch.no_grad():
        for mine, theirs in zip(ours_layers, ref_convs + ref_fcs):
            assert mine.weight.shape == theirs.weight.shape
            mine.weight.copy_(theirs.weight)
            mine.bias.copy_(theirs.bias)
        x = torch.randn(2, 3, 224, 224)
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------- input sizes
@pytest.mark.parametrize("arch", ["zfnet", "alexnet"])
@pytest.mark.parametrize("size", [64, 112, 224])
def test_forward_at_input_sizes(arch, size):
    model = build(arch, 5, width=SMALL, input_size=size).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
    # classifier input derived from the size: equals the flattened conv5 block output of a dry run
    c, h, w = feature_shapes(model, size)["conv5"]
    assert model.fc6.fc.in_features == c * h * w


def test_non_square_input_size():
    model = build("zfnet", 3, width=SMALL, input_size=(96, 128)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 128)).shape == (1, 3)



# ------------------------------------------------------------------------- input size at the API
@pytest.mark.parametrize("arch", ["zfnet", "alexnet"])
@pytest.mark.parametrize("row", list(TABLE3))
def test_wrong_input_size_names_the_built_size(arch, row):
    model = build(arch, 4, width=SMALL, input_size=224, **TABLE3[row]).eval()
    expected = f"{arch} built for input_size=224 got 112×112 input; build it with input_size=112 or resize"
    with torch.no_grad(), pytest.raises(ValueError) as err:
        model(torch.zeros(1, 3, 112, 112))
    assert str(err.value) == expected
    with torch.no_grad(), pytest.raises(ValueError, match="built for input_size=224 got 112×112"):
        model.forward_to(torch.zeros(1, 3, 112, 112), "fc8")


def test_wrong_non_square_input_size_names_both_sides():
    model = build("zfnet", 4, width=SMALL, input_size=(96, 128)).eval()
    with torch.no_grad(), pytest.raises(ValueError) as err:
        model(torch.zeros(2, 3, 128, 96))
    assert str(err.value) == (
        "zfnet built for input_size=[96, 128] got 128×96 input; build it with input_size=[128, 96] or resize"
    )


@pytest.mark.parametrize("arch", ["zfnet", "alexnet"])
def test_conv_layers_still_take_any_size(arch):
    """Partial forwards (deconvnet, occlusion, top-k on crops) never reach the classifier: they must run on
    any size, and give what a model built for that size gives with the same conv weights."""
    torch.manual_seed(0)
    at224 = build(arch, 4, width=SMALL, input_size=224).eval()
    at112 = build(arch, 4, width=SMALL, input_size=112).eval()
    convs = {k: v for k, v in at224.state_dict().items() if k.startswith("conv")}
    at112.load_state_dict({**at112.state_dict(), **convs})
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(at224.forward_to(x, "conv5"), at112.forward_to(x, "conv5"))
        got, ref = at224.extract(x, ["conv2", "conv5"]), at112.extract(x, ["conv2", "conv5"])
        assert all(torch.equal(got[k], ref[k]) for k in ref)


def test_a_size_with_the_same_classifier_input_still_runs():
    # 225 and 224 give zfnet's conv5 the same 6x6 map (ceil-mode pools), so the classifier fits both
    model = build("zfnet", 4, width=SMALL, input_size=224).eval()
    assert feature_shapes(model, 225)["conv5"] == feature_shapes(model, 224)["conv5"]
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 225, 225)).shape == (1, 4)


# --------------------------------------------------------------------------------------- overrides
def test_width_halves_maps_and_units():
    base = build("zfnet", 10, input_size=64)
    half = build("zfnet", 10, width=0.5, input_size=64)
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5"):
        assert half.weight_layer(name).out_channels * 2 == base.weight_layer(name).out_channels
    for name in ("fc6", "fc7"):
        assert half.weight_layer(name).out_features * 2 == base.weight_layer(name).out_features
    assert half.fc8.fc.out_features == base.fc8.fc.out_features == 10  # classes never scaled
    assert half.conv1.conv.in_channels == 3


def test_width_multiplies_explicit_sizes_too():
    m = build("zfnet", 10, width=0.25, fc_units=[8192, 8192], conv_maps=[96, 256, 512, 1024, 512], input_size=64)
    assert [m.weight_layer(n).out_channels for n in m.conv_layers] == [24, 64, 128, 256, 128]
    assert [m.weight_layer(n).out_features for n in ("fc6", "fc7")] == [2048, 2048]
    tiny = build("alexnet", 10, width=1e-6, input_size=64)  # rounds, never below 1
    assert all(tiny.weight_layer(n).out_channels == 1 for n in tiny.conv_layers)


def test_conv_maps_and_fc_units():
    m = build("alexnet", 10, conv_maps=[8, 16, 24, 32, 40], fc_units=[50, 60], input_size=112)
    assert [m.weight_layer(n).out_channels for n in m.conv_layers] == [8, 16, 24, 32, 40]
    assert [m.weight_layer(n).in_channels for n in m.conv_layers] == [3, 8, 16, 24, 32]
    assert m.fc6.fc.out_features == 50 and m.fc7.fc.in_features == 50 and m.fc7.fc.out_features == 60
    assert m.fc8.fc.in_features == 60


@pytest.mark.parametrize("arch", ["zfnet", "alexnet"])
@pytest.mark.parametrize("row", list(TABLE3))
def test_table3_rows_build_and_run(arch, row):
    overrides = TABLE3[row]
    removed = set(overrides.get("remove", []))
    for size in (112, 224):
        torch.manual_seed(0)
        model = build(arch, 11, width=SMALL, input_size=size, **overrides).eval()
        present = [n for n in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8") if n not in removed]
        assert model.feature_layers == present
        assert [n for n, _ in model.named_children()] == present
        for name in removed:
            assert not hasattr(model, name)
        # each remaining layer takes the previous remaining layer's output
        convs = [model.weight_layer(n) for n in model.conv_layers]
        assert convs[0].in_channels == 3
        for prev, nxt in zip(convs, convs[1:]):
            assert nxt.in_channels == prev.out_channels
        fcs = [model.weight_layer(n) for n in model.fc_layers]
        c, h, w = feature_shapes(model, size)[model.conv_layers[-1]]
        assert fcs[0].in_features == c * h * w
        for prev, nxt in zip(fcs, fcs[1:]):
            assert nxt.in_features == prev.out_features
        with torch.no_grad():
            assert model(torch.randn(2, 3, size, size)).shape == (2, 11)
    if "fc_units" in overrides:
        assert model.fc6.fc.out_features == round(overrides["fc_units"][0] * SMALL)
    if "conv_maps" in overrides:
        assert model.conv4.conv.out_channels == round(overrides["conv_maps"][3] * SMALL)


def test_remove_accepts_layer_numbers_and_config_containers():
    cfg = OmegaConf.create(
        {"remove": [3, "4"], "lrn": {"size": 3}, "conv_maps": [8, 8, 8, 8, 8], "fc_units": [16, 16], "input_size": 64}
    )
    model = build("zfnet", 4, **cfg)
    assert model.feature_layers == ["conv1", "conv2", "conv5", "fc6", "fc7", "fc8"]
    assert model.conv1.norm.size == 3
    assert model.config["remove"] == ["conv3", "conv4"]
    # config round-trips to the same architecture
    again = build(**model.config)
    assert [tuple(p.shape) for p in again.parameters()] == [tuple(p.shape) for p in model.parameters()]
    assert str(again) == str(model)


def test_dropout_and_no_lrn():
    m = build("zfnet", 10, width=SMALL, input_size=64, dropout=0.3, lrn=None)
    assert m.fc6.drop.p == 0.3 and m.fc7.drop.p == 0.3
    assert not any(isinstance(x, nn.LocalResponseNorm) for x in m.modules())
    assert [c for c, _ in m.conv1.named_children()] == ["conv", "relu", "pool"]
    m0 = build("alexnet", 10, width=SMALL, input_size=64, dropout=0.0)
    assert not any(isinstance(x, nn.Dropout) for x in m0.modules())


# -------------------------------------------------------------------------------------------- init
def test_paper_init_std_and_zero_biases():
    torch.manual_seed(0)
    model = build("zfnet", 100, width=0.5, input_size=112, init="paper")
    for name in model.feature_layers:
        layer = model.weight_layer(name)
        assert torch.count_nonzero(layer.bias) == 0
        w = layer.weight.detach().double()
        if w.numel() > 5000:
            assert abs(w.std().item() - 0.01) < 0.0005, name
            assert abs(w.mean().item()) < 0.001, name


def test_kaiming_init():
    torch.manual_seed(0)
    model = build("alexnet", 100, width=0.5, input_size=112, init="kaiming")
    for name in model.conv_layers:
        conv = model.weight_layer(name)
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert abs(conv.weight.std().item() / (2.0 / fan_out) ** 0.5 - 1) < 0.05, name
        assert torch.count_nonzero(conv.bias) == 0
    for name in model.fc_layers:
        fc = model.weight_layer(name)
        assert abs(fc.weight.std().item() - 0.01) < 0.0005
        assert torch.count_nonzero(fc.bias) == 0


# --------------------------------------------------------------------------------------------- LRN
def _krizhevsky_lrn(a: np.ndarray, n: int, alpha: float, beta: float, k: float) -> np.ndarray:
    """b[c] = a[c] / (k + alpha * sum_{j=max(0,c-n//2)}^{min(N-1,c+n//2)} a[j]^2)^beta (Krizhevsky 2012, 3.3)."""
    out = np.empty_like(a)
    channels = a.shape[1]
    for c in range(channels):
        lo, hi = max(0, c - n // 2), min(channels - 1, c + n // 2)
        s = (a[:, lo : hi + 1] ** 2).sum(axis=1)
        out[:, c] = a[:, c] / (k + alpha * s) ** beta
    return out


@pytest.mark.parametrize("arch", ["zfnet", "alexnet"])
@pytest.mark.parametrize("lrn", [None, {"size": 5, "alpha": 1e-2, "beta": 0.6, "k": 1.0}, {"size": 3}])
def test_lrn_matches_krizhevsky_formula(arch, lrn):
    kwargs = {} if lrn is None else {"lrn": lrn}  # None here = the defaults (5, 1e-4, 0.75, 2)
    params = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0, **(lrn or {})}
    norm = build(arch, 10, width=SMALL, input_size=64, **kwargs).conv1.norm.double()
    rng = np.random.default_rng(0)
    a = rng.normal(0, 30, size=(2, 12, 5, 4))  # large activations so the sum term matters
    got = norm(torch.from_numpy(a)).numpy()
    want = _krizhevsky_lrn(a, params["size"], params["alpha"], params["beta"], params["k"])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert not np.allclose(want, a / params["k"] ** params["beta"])  # the sum term is exercised


# ------------------------------------------------------------------------------------ feature_shapes
def test_feature_shapes_restores_mode_and_accepts_pairs():
    model = build("alexnet", 10, width=SMALL, input_size=112).train()
    shapes = feature_shapes(model, (112, 112))
    assert model.training
    assert list(shapes) == model.feature_layers
    assert shapes["fc8"] == (10,)
