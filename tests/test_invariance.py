"""Invariance sweeps (Fig. 5): transformations against independent references (slicing, ``torch.rot90`` and a
bilinear sampler written here from the documented geometry), distances and probabilities against a direct
computation on images transformed by that sampler, and the figure writer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from zfnet.analysis.invariance import default_amounts, invariance_sweep, transform
from zfnet.models import build

HW = 64


pytestmark = pytest.mark.usefixtures("one_thread")


def resample(x: np.ndarray, kind: str, amount: float) -> tuple[np.ndarray, np.ndarray]:
    """The documented transformations of ``invariance.py``, written from the geometry (no torchvision): (C, H, W)
    -> (bilinear samples with 0 outside the image, coverage). Each output pixel's centre, in pixels from the
    image's centre point ((W-1)/2, (H-1)/2), x right and y down, is mapped back to the input: ``translate`` by
    ``amount`` px down, ``scale`` by ``amount`` about the centre, ``rotate`` by ``amount`` degrees counter-
    clockwise (as seen, y down). The value is the bilinear blend of the four input pixels around that point,
    those outside the image counting 0; coverage is the summed weight of the four that lie inside (1: fully
    inside, 0: entirely outside)."""
    x = np.asarray(x, dtype=np.float64)
    _, h, w = x.shape
    row, col = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    u, v = col - cx, row - cy
    if kind == "translate":
        su, sv = u, v - amount
    elif kind == "scale":
        su, sv = u / amount, v / amount
    elif kind == "rotate":  # the inverse of a counter-clockwise turn (y down): (u, v) -> (u cos + v sin, -u sin + v cos)
        a = math.radians(amount)
        su, sv = u * math.cos(a) - v * math.sin(a), u * math.sin(a) + v * math.cos(a)
    else:
        raise ValueError(kind)
    sc, sr = su + cx, sv + cy
    c0, r0 = np.floor(sc).astype(int), np.floor(sr).astype(int)
    fc, fr = sc - c0, sr - r0
    out, cover = np.zeros_like(x), np.zeros((h, w))
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            rr, cc = r0 + dr, c0 + dc
            weight = wr * wc * ((rr >= 0) & (rr < h) & (cc >= 0) & (cc < w))
            out += weight * x[:, np.clip(rr, 0, h - 1), np.clip(cc, 0, w - 1)]
            cover += weight
    return out, cover


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
    """Noise inside a central disc, 0 (the mean) within 6 px of every border: no transformation of the sweeps
    below needs a value from outside the image, so the filling convention plays no part in their distances."""
    g = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.arange(HW), torch.arange(HW), indexing="ij")
    disc = ((yy - (HW - 1) / 2) ** 2 + (xx - (HW - 1) / 2) ** 2 <= (HW / 2 - 6) ** 2).double()
    return (torch.randn(2, 3, HW, HW, generator=g) * 20).double() * disc


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
    # a constant image zoomed about its centre stays the same constant: scaling >= 1 never samples outside
    flat = torch.full((3, 32, 32), 7.25)
    for amount in (1.3, 1.8, 2.0):
        torch.testing.assert_close(transform(flat, "scale", amount), flat, atol=1e-5, rtol=0)
    # scale 2 of a centred 2x2 block (pixels 15..16, centre 15.5): a 4x4 block at 14..17, zero elsewhere
    block = torch.zeros(1, 32, 32)
    block[:, 15:17, 15:17] = 1.0
    s = transform(block, "scale", 2.0)
    assert torch.all(s[:, 14:18, 14:18] > 0.4) and torch.count_nonzero(s[:, :13]) == torch.count_nonzero(s[:, 19:]) == 0
    with pytest.raises(ValueError, match="unknown transform"):
        transform(x, "shear", 1.0)
    with pytest.raises(ValueError, match="positive"):
        transform(x, "scale", 0.0)


@pytest.mark.parametrize("kind, amount", [("translate", 2.5), ("translate", -6.0), ("scale", 1.3), ("scale", 1.8),
                                          ("scale", 0.7), ("rotate", 35.0), ("rotate", 90.0), ("rotate", -120.0),
                                          ("rotate", 350.0)])
def test_transforms_match_a_sampler_written_from_the_geometry(kind, amount):
    """Non-square noise (rows and columns cannot be swapped unseen): where the four input pixels around a
    sample point lie inside the image, the value is their bilinear blend; where none does, the fill 0; in
    between, a blend of the image's value toward 0 (never past it, never beyond the zero-padded value)."""
    x = torch.randn(3, 20, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = transform(x, kind, amount).numpy()
    ref, cover = resample(x.numpy(), kind, amount)
    inside, outside = cover > 1 - 1e-9, cover < 1e-9
    assert inside.sum() >= 200  # the comparison covers most of the image
    np.testing.assert_allclose(got[:, inside], ref[:, inside], rtol=0, atol=1e-9)
    assert np.all(got[:, outside] == 0)
    edge = ~inside & ~outside
    assert np.all(got[:, edge] * ref[:, edge] >= -1e-12) and np.all(np.abs(got[:, edge]) <= np.abs(ref[:, edge]) + 1e-9)


def test_default_amounts_follow_fig5():
    d = default_amounts(224)
    assert d["translate"][0] == -60 and d["translate"][-1] == 60 and 0.0 in d["translate"]
    assert d["scale"][0] == 1.0 and d["scale"][-1] == pytest.approx(1.8)
    assert d["rotate"][0] == 0 and d["rotate"][-1] == 350
    assert default_amounts(112)["translate"][0] == -30


def test_sweep_equals_direct_computation(model, images):
    labels = [3, 7]
    amounts = {"translate": [-8.0, 0.0, 2.5, 8.0], "scale": [1.0, 0.8, 1.3], "rotate": [0.0, 90.0, 35.0]}
    df = invariance_sweep(model, images, labels, amounts, chunk=2, image_ids=["a", "b"])
    assert list(df.columns) == ["transform", "amount", "image", "label", "distance_conv1", "distance_fc7", "p_true"]
    assert len(df) == 2 * (4 + 3 + 3)
    with torch.no_grad():
        for _, row in df.iterrows():
            i = ["a", "b"].index(row["image"])
            x = images[i]
            t = torch.from_numpy(resample(x.numpy(), row["transform"], row["amount"])[0])
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
    from zfnet.figures.invariance import plot_invariance

    df = invariance_sweep(model, images, [1, 2], {"translate": [-4, 0, 4], "rotate": [0, 90]})
    paths = plot_invariance(df, tmp_path / "inv")
    assert [p.rsplit("/", 1)[1] for p in paths] == ["invariance_translate.png", "invariance_rotate.png"]
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 300
    assert not [p for p in (tmp_path / "inv").iterdir() if p.name.startswith(".")]  # no temp files left


def test_mean_curves_average_each_amount_over_the_images(model, images, tmp_path):
    from zfnet.analysis.invariance import mean_curves
    from zfnet.stages.visualize.invariance import write_invariance_curves

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
