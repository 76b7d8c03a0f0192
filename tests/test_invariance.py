"""Invariance sweeps (Fig. 5): distances and probabilities against a direct computation, transformations
against independent references (slicing, ``torch.rot90``), and the figure writer."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from zfnet.analysis.invariance import default_amounts, invariance_sweep, transform
from zfnet.models import build

HW = 64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build("zfnet", 10, width=0.125, init="kaiming", input_size=HW)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.Linear):
                nn.init.kaiming_normal_(mod.weight)
    return m.double().eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(3)
    return (torch.randn(2, 3, HW, HW, generator=g) * 20).double()


def test_transforms_match_independent_references():
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(0))
    down = torch.zeros_like(x)
    down[:, 5:] = x[:, :-5]
    torch.testing.assert_close(transform(x, "translate", 5), down)
    up = torch.zeros_like(x)
    up[:, :-7] = x[:, 7:]
    torch.testing.assert_close(transform(x, "translate", -7), up)
    torch.testing.assert_close(transform(x, "rotate", 90), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(transform(x, "rotate", 180), torch.flip(x, dims=(-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(transform(x, "scale", 1.0), x)
    # scale 2 about the centre: the centre pixels spread over 2x2 blocks, borders of the canvas unchanged size
    s = transform(x, "scale", 2.0)
    assert s.shape == x.shape and not torch.allclose(s, x)
    with pytest.raises(ValueError, match="unknown transform"):
        transform(x, "shear", 1.0)


def test_default_amounts_follow_fig5():
    d = default_amounts(224)
    assert d["translate"][0] == -60 and d["translate"][-1] == 60 and 0.0 in d["translate"]
    assert d["scale"][0] == 1.0 and d["scale"][-1] == pytest.approx(1.8)
    assert d["rotate"][0] == 0 and d["rotate"][-1] == 350
    assert default_amounts(112)["translate"][0] == -30


def test_sweep_equals_direct_computation(model, images):
    labels = [3, 7]
    amounts = {"translate": [-8.0, 0.0, 8.0], "scale": [1.0, 1.3], "rotate": [0.0, 90.0, 35.0]}
    df = invariance_sweep(model, images, labels, amounts, chunk=2, image_ids=["a", "b"])
    assert list(df.columns) == ["transform", "amount", "image", "label", "distance_conv1", "distance_fc7", "p_true"]
    assert len(df) == 2 * (3 + 2 + 3)
    with torch.no_grad():
        for _, row in df.iterrows():
            i = ["a", "b"].index(row["image"])
            x = images[i]
            if row["transform"] == "translate":
                t = TF.affine(x, angle=0.0, translate=[0, row["amount"]], scale=1.0, shear=[0.0, 0.0], fill=0.0)
            elif row["transform"] == "scale":
                t = TF.affine(x, angle=0.0, translate=[0, 0], scale=row["amount"], shear=[0.0, 0.0],
                              interpolation=InterpolationMode.BILINEAR, fill=0.0)
            else:
                t = TF.rotate(x, row["amount"], interpolation=InterpolationMode.BILINEAR, fill=0.0)
            for layer in ("conv1", "fc7"):
                a = model.forward_to(x[None], layer).flatten()
                b = model.forward_to(t[None], layer).flatten()
                assert row[f"distance_{layer}"] == pytest.approx(float(((a - b) ** 2).sum().sqrt()), rel=1e-9, abs=1e-9)
            p = torch.softmax(model(t[None]), 1)[0, labels[i]]
            assert row["p_true"] == pytest.approx(float(p), rel=1e-9)
            assert row["label"] == labels[i]
            if row["amount"] == (1.0 if row["transform"] == "scale" else 0.0):
                assert row["distance_conv1"] == pytest.approx(0.0, abs=1e-9)


def test_sweep_restores_training_and_rejects_bad_input(model, images):
    model.train()
    try:
        df = invariance_sweep(model, images[:1], [0], {"rotate": [0.0, 10.0]})
        assert model.training
        # dropout was off: repeated sweeps agree
        df2 = invariance_sweep(model, images[:1], [0], {"rotate": [0.0, 10.0]})
        assert df.equals(df2)
    finally:
        model.eval()
    with pytest.raises(ValueError, match="labels"):
        invariance_sweep(model, images, [0], {"rotate": [0.0]})
    with pytest.raises(ValueError, match="unknown transform"):
        invariance_sweep(model, images, [0, 1], {"flip": [1.0]})


def test_invariance_figures_are_pngs(model, images, tmp_path):
    from zfnet.figures.sensitivity import plot_invariance

    df = invariance_sweep(model, images, [1, 2], {"translate": [-4, 0, 4], "rotate": [0, 90]})
    paths = plot_invariance(df, tmp_path / "inv")
    assert [p.rsplit("/", 1)[1] for p in paths] == ["invariance_translate.png", "invariance_rotate.png"]
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 300
    assert not [p for p in (tmp_path / "inv").iterdir() if p.name.startswith(".")]  # no temp files left


def test_mean_curves_average_each_amount_over_the_images(model, images, tmp_path):
    from zfnet.analysis.invariance import mean_curves
    from zfnet.visualize.invariance import write_invariance_curves

    df = invariance_sweep(model, images, [1, 2], {"translate": [4, -4, 0], "rotate": [0, 90]}, image_ids=["a", "b"])
    rows = df.to_dict("records")
    curves = mean_curves(df)
    assert list(curves) == ["translate", "rotate"]
    for kind, amounts in (("translate", [-4.0, 0.0, 4.0]), ("rotate", [0.0, 90.0])):
        assert list(curves[kind].amount) == amounts  # ascending, for a line plot
        for _, got in curves[kind].iterrows():
            mine = [r for r in rows if r["transform"] == kind and r["amount"] == got["amount"]]
            assert len(mine) == 2 and got["images"] == 2
            for col in ("distance_conv1", "distance_fc7", "p_true"):
                assert got[col] == pytest.approx(sum(r[col] for r in mine) / 2)
    (tmp_path / "curves").mkdir()
    (tmp_path / "curves/scale.csv").write_text("stale")
    written = write_invariance_curves(df, tmp_path / "curves")
    assert sorted(p.name for p in (tmp_path / "curves").iterdir()) == ["rotate.csv", "translate.csv"] == sorted(p.name for p in written)
    with pytest.raises(ValueError, match="p_true"):
        mean_curves(df.drop(columns="p_true"))
