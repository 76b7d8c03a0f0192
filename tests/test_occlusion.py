"""Occlusion maps (Fig. 7) against independent references: explicit per-position occlusion + the whole
model, and Captum's ``Occlusion``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zfnet.analysis.occlusion import occlusion_maps, occlusion_positions, pixel_attribution
from zfnet.models import build


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(arch: str = "zfnet", hw: int = 64, dtype=torch.float32, seed: int = 0, classes: int = 10):
    torch.manual_seed(seed)
    model = build(arch, classes, width=0.125, init="kaiming", input_size=hw)
    with torch.no_grad():  # kaiming fc weights too, so class probabilities react to occlusion
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight)
                nn.init.normal_(m.bias, 0.0, 0.1)
    return model.to(dtype).eval()


def _image(hw: int, dtype=torch.float32, seed: int = 1, scale: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(3, hw, hw, generator=g) * scale).to(dtype)


@torch.no_grad()
def _direct(model, x, size, stride, layer, target, fill=0.0):
    """The definition, written out: occlude explicitly, run the whole model, read the values."""
    maps = model.extract(x[None], [layer])[layer][0]
    channel = int(maps.flatten(1).amax(1).argmax())
    h, w = x.shape[-2:]
    ys = list(range(0, h - size + 1, stride))
    xs = list(range(0, w - size + 1, stride))
    copies = []
    for y in ys:
        for x0 in xs:
            c = x.clone()
            c[:, y : y + size, x0 : x0 + size] = fill
            copies.append(c)
    batch = torch.stack(copies)
    feat = model.extract(batch, [layer])[layer][:, channel].sum((1, 2))
    probs = torch.softmax(model(batch), dim=1)
    shape = (len(ys), len(xs))
    return {
        "channel": channel,
        "ys": ys,
        "xs": xs,
        "feature": feat.reshape(shape),
        "prob": probs[:, target].reshape(shape),
        "top_prob": probs.max(1).values.reshape(shape),
        "top_class": probs.argmax(1).reshape(shape),
        "probs": probs.reshape(*shape, -1),
    }


def test_positions_convention():
    assert occlusion_positions(64, 16, 8).tolist() == [0, 8, 16, 24, 32, 40, 48]
    assert occlusion_positions(64, 20, 7).tolist() == [0, 7, 14, 21, 28, 35, 42]  # 42 + 20 <= 64 < 49 + 20
    assert occlusion_positions(224, 32, 16).tolist()[-1] == 192 and len(occlusion_positions(224, 32, 16)) == 13
    with pytest.raises(ValueError, match="larger than the image"):
        occlusion_positions(32, 33, 1)


@pytest.mark.parametrize(
    "arch,hw,size,stride",
    [("zfnet", 64, 16, 8), ("zfnet", 64, 20, 7), ("zfnet", 96, 24, 24), ("alexnet", 96, 17, 10)],
)
def test_maps_equal_direct_computation(arch, hw, size, stride):
    model, x = _model(arch, hw), _image(hw)
    target = 3
    ref = _direct(model, x, size, stride, "conv5", target)
    got = occlusion_maps(model, x, target, size, stride, chunk=5)
    assert got["ys"].tolist() == ref["ys"] and got["xs"].tolist() == ref["xs"]
    assert got["channel"] == ref["channel"]
    assert got["prob"].std() > 1e-4  # the maps carry signal, or this test proves little
    torch.testing.assert_close(got["feature"], ref["feature"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got["prob"], ref["prob"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got["top_prob"], ref["top_prob"], rtol=1e-4, atol=1e-6)
    # argmax may only differ where the two best classes are tied within float rounding
    top2 = ref["probs"].topk(2, dim=-1).values
    clear = (top2[..., 0] - top2[..., 1]) > 1e-5
    assert torch.equal(got["top_class"][clear], ref["top_class"][clear])
    un = got["unoccluded"]
    with torch.no_grad():
        p0 = torch.softmax(model(x[None]), 1)[0]
    assert un["prob"] == pytest.approx(float(p0[target]), rel=1e-5)
    assert un["top_class"] == int(p0.argmax()) and un["top_prob"] == pytest.approx(float(p0.max()), rel=1e-5)


@pytest.mark.parametrize(
    "arch,hw,size,stride,layer,bands",
    [
        ("zfnet", 64, 16, 8, "conv5", 1),
        ("zfnet", 96, 20, 7, "conv5", 3),
        ("zfnet", 96, 5, 9, "conv3", 2),  # stride > size: pixels between squares never occluded
        ("zfnet", 80, 80, 1, "conv1", 1),  # the square covers the whole image
        ("alexnet", 96, 24, 11, "conv2", 2),  # LRN before pool, floor pooling, 11x11/4 conv1
    ],
)
def test_incremental_is_exact_float64(arch, hw, size, stride, layer, bands):
    """Receptive-field recomputation == the naive full forward, for every position (float64)."""
    model, x = _model(arch, hw, torch.float64), _image(hw, torch.float64)
    fill = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    ref = _direct(model, x, size, stride, layer, 2, fill=fill[:, None, None])
    got = occlusion_maps(model, x, 2, size, stride, layer=layer, fill=fill, chunk=7, method="incremental",
                         bands=bands, keep_probs=True)
    assert got["method"] == "incremental"
    torch.testing.assert_close(got["probs"], ref["probs"], rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(got["feature"], ref["feature"], rtol=1e-10, atol=1e-10)
    assert torch.equal(got["top_class"], ref["top_class"])


def test_full_method_and_auto_chunk_agree():
    model, x = _model("zfnet", 64, torch.float64), _image(64, torch.float64)
    a = occlusion_maps(model, x, 1, 12, 6, method="full", chunk=4)
    b = occlusion_maps(model, x, 1, 12, 6)  # auto method (incremental), chunk from the memory budget
    assert a["method"] == "full" and b["method"] == "incremental" and b["chunk"] >= 1
    for key in ("feature", "prob", "top_prob"):
        torch.testing.assert_close(a[key], b[key], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("size,stride", [(16, 16), (16, 8)])
def test_probability_map_matches_captum(size, stride):
    """Captum's attribution: each pixel gets the mean of p(unoccluded) - p(occluded) over the squares that
    cover it. With a stride that divides H - size both sweep the same squares."""
    from captum.attr import Occlusion

    model, x = _model("zfnet", 64, torch.float64), _image(64, torch.float64)
    target = 4
    ours = occlusion_maps(model, x, target, size, stride)
    p0 = ours["unoccluded"]["prob"]

    def forward(batch):
        return torch.softmax(model(batch), dim=1)

    attr = Occlusion(forward).attribute(
        x[None], sliding_window_shapes=(3, size, size), strides=(3, stride, stride), baselines=0.0,
        target=target, perturbations_per_eval=8,
    )[0]
    # expected attribution from our map, spread by hand
    total = torch.zeros(64, 64, dtype=torch.float64)
    count = torch.zeros(64, 64, dtype=torch.float64)
    for i, y in enumerate(ours["ys"].tolist()):
        for j, x0 in enumerate(ours["xs"].tolist()):
            total[y : y + size, x0 : x0 + size] += p0 - ours["prob"][i, j]
            count[y : y + size, x0 : x0 + size] += 1
    expected = total / count
    assert expected.abs().max() > 1e-4
    for c in range(3):  # the square spans all channels: the same attribution in each
        torch.testing.assert_close(attr[c].double(), expected, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(pixel_attribution(ours["prob"], p0, size, stride, (64, 64)), expected)
    if stride == size:  # non-overlapping: the attribution inside square (i, j) is p0 - p(i, j)
        for i, y in enumerate(ours["ys"].tolist()):
            for j, x0 in enumerate(ours["xs"].tolist()):
                assert float(attr[0, y, x0]) == pytest.approx(p0 - float(ours["prob"][i, j]), abs=1e-7)


def test_channel_rank_and_training_flag():
    model, x = _model("zfnet", 64), _image(64)
    model.train()
    with torch.no_grad():
        fmap = model.eval().extract(x[None], ["conv5"])["conv5"][0]
    model.train()
    by_sum = occlusion_maps(model, x, 0, 16, 16, rank_by="sum")
    assert model.training  # restored
    assert by_sum["channel"] == int(fmap.flatten(1).sum(1).argmax())
    fixed = occlusion_maps(model, x, 0, 16, 16, channel=2)
    assert fixed["channel"] == 2
    assert fixed["unoccluded"]["feature"] == pytest.approx(float(fmap[2].sum()), rel=1e-5)


def test_bad_input_is_named():
    model, x = _model("zfnet", 64), _image(64)
    with pytest.raises(ValueError, match="layer"):
        occlusion_maps(model, x, 0, 16, 8, layer="fc7")
    with pytest.raises(ValueError, match="target"):
        occlusion_maps(model, x, 10, 16, 8)
    with pytest.raises(ValueError, match="larger than the image"):
        occlusion_maps(model, x, 0, 65, 8)
    with pytest.raises(ValueError, match="chunk"):
        occlusion_maps(model, x, 0, 16, 8, chunk=0)
    with pytest.raises(ValueError, match="fill"):
        occlusion_maps(model, x, 0, 16, 8, fill=[0.0, 1.0])
    with pytest.raises(ValueError, match="image"):
        occlusion_maps(model, x[None].expand(2, -1, -1, -1), 0, 16, 8)


def test_projection_is_delegated_to_the_deconvnet(monkeypatch):
    model, x = _model("zfnet", 64), _image(64)
    calls = []

    def project(model_, images, layer, channels=None):
        calls.append((images.shape, layer, channels.tolist()))
        return torch.ones(images.shape[0], 3, *images.shape[-2:])

    monkeypatch.setattr("zfnet.analysis.deconvnet.project", project)
    got = occlusion_maps(model, x, 0, 16, 16, project=True)
    assert calls == [((1, 3, 64, 64), "conv5", [got["channel"]])]
    assert got["projection"].shape == (1, 3, 64, 64)
    assert occlusion_maps(model, x, 0, 16, 16)["projection"] is None and len(calls) == 1


def test_unknown_module_falls_back_to_full():
    model, x = _model("zfnet", 64, torch.float64), _image(64, torch.float64)
    model.conv5.pool = nn.AvgPool2d(3, 2, ceil_mode=True)  # not handled incrementally
    got = occlusion_maps(model, x, 1, 16, 8)
    assert got["method"] == "full"
    ref = _direct(model, x, 16, 8, "conv5", 1)
    torch.testing.assert_close(got["prob"], ref["prob"], rtol=1e-10, atol=1e-13)
    with pytest.raises(ValueError, match="incremental"):
        occlusion_maps(model, x, 1, 16, 8, method="incremental")


def test_writers_write_figures_and_tables_from_the_analyses_results(tmp_path):
    from PIL import Image

    from zfnet.analysis.correspondence import correspondence_table
    from zfnet.analysis.invariance import invariance_sweep
    from zfnet.analysis.occlusion.images import occlude_images
    from zfnet.figures.correspondence import write_correspondence
    from zfnet.figures.invariance import plot_invariance
    from zfnet.figures.occlusion import write_occlusion

    model = _model("zfnet", 64)
    images = torch.stack([_image(64, seed=s) for s in range(2)])
    names = ["000", "001"]
    maps = occlude_images(model, images, [1, 2], size=16, stride=16, project=False, names=names)
    assert [m["target"] for m in maps] == [1, 2] and [(m["size"], m["stride"]) for m in maps] == [(16, 16)] * 2
    figures = {"occlusion": write_occlusion(images, maps, tmp_path / "figures" / "occlusion", names,
                                            class_names=[f"c{i}" for i in range(10)])}
    df = invariance_sweep(model, images, [1, 2], {"translate": [-8, 0, 8], "rotate": [0, 90]})
    figures["invariance"] = plot_invariance(df, tmp_path / "figures" / "invariance")
    lm = {"right_eye": torch.tensor([[20.0, 22.0]] * 3), "nose": torch.tensor([[32.0, 40.0]] * 3)}
    table = correspondence_table(model, torch.stack([_image(64, seed=s) for s in range(3)]), lm, size=10, repeats=2)
    figures["correspondence"] = write_correspondence(table, tmp_path / "figures" / "correspondence",
                                                     tmp_path / "tables")
    assert [p.rsplit("/", 2)[1:] for p in figures["occlusion"]] == [["occlusion", "occlusion_000.png"],
                                                                    ["occlusion", "occlusion_001.png"]]
    assert len(figures["invariance"]) == 2 and len(figures["correspondence"]) == 1
    for paths in figures.values():
        for p in paths:
            with Image.open(p) as im:
                assert im.format == "PNG"
    assert list(table["occlusion"]) == ["Right eye", "Nose", "Random"]
    assert (tmp_path / "tables" / "table1_correspondence.md").exists()
    assert (tmp_path / "tables" / "table1_correspondence.csv").exists()
    leftovers = [p for p in (tmp_path / "figures").rglob(".*")]
    assert not leftovers

