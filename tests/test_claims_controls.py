"""The untrained controls the claims stage computes (zfnet.claims.measure) and the noise their margins are
measured in (bootstrap standard errors, zfnet.claims.statistics), each against an independent reference:
analytic standard errors, an exact enumeration of the bootstrap distribution, a hand-written occlusion loop
on a model whose answer is planted."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import linregress
from torch import nn

from zfnet.claims import measure as ms
from zfnet.claims import statistics as st


def test_bootstrap_se_matches_the_analytic_se_of_a_paired_mean_difference():
    rng = np.random.default_rng(0)
    a = rng.standard_normal(200)
    b = 0.5 * a + rng.standard_normal(200)
    se = st.bootstrap_se(lambda idx: float(a[idx].mean() - b[idx].mean()), 200, draws=4000, seed=1)
    assert se == pytest.approx((a - b).std() / math.sqrt(200), rel=0.05)  # MC error of the se ~1/sqrt(8000)
    assert math.isnan(st.bootstrap_se(lambda idx: 0.0, 1, 100))


def test_grouping_gap_se_matches_the_first_order_se_of_a_mean_minus_a_u_statistic():
    """within: a mean over M maps (se = sd / sqrt(M)); chance: the mean cosine over pairs of P maps, a
    U-statistic of order 2 (first-order se = 2 sd(h1) / sqrt(P), h1(i) the mean cosine of map i with the
    others); independent, so in quadrature."""
    rng = np.random.default_rng(3)
    m, k, p, d = 120, 4, 160, 8
    shared = rng.uniform(0, 2, (m, 1, 1)) * rng.standard_normal((m, 1, d))  # how alike each map's top-k are
    groups = torch.from_numpy(shared + rng.standard_normal((m, k, d)))
    u = rng.standard_normal(d)
    pool = torch.from_numpy(rng.uniform(0, 2, (p, 1)) * u + rng.standard_normal((p, d)))  # a common direction
    se = st.grouping_gap_se(groups, pool, draws=3000, seed=0)

    def cos(v):
        v = v / np.linalg.norm(v, axis=-1, keepdims=True)
        return v @ np.swapaxes(v, -1, -2)

    cg = cos(groups.numpy())
    per_map = (cg.sum((1, 2)) - k) / (k * (k - 1))
    s = cos(pool.numpy())
    h1 = (s.sum(1) - 1) / (p - 1)
    ref = math.sqrt(per_map.var() / m + 4 * h1.var() / p)
    assert se == pytest.approx(ref, rel=0.12)


def _sweeps(curves: dict[int, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """An invariance_sweep-like long table: per image, translate and scale with given fc7 curves."""
    rows = []
    for image, (dt, ds) in curves.items():
        for kind, amounts, d in (("translate", [0, 10, 20, 30, 40], dt), ("scale", [1.0, 1.1, 1.2, 1.3, 1.4], ds)):
            for a, v in zip(amounts, d):
                rows.append({"transform": kind, "amount": float(a), "image": image, "label": 0,
                             "distance_conv1": float(a != amounts[0]), "distance_fc7": float(v), "p_true": 0.5})
    return pd.DataFrame(rows)


def _edge_by_hand(per_image: dict, idx) -> float:
    """min over translate / scale of R²(line) − max(R²(√x), R²(x²)) of the mean curve, by scipy's linregress."""
    out = []
    for j, x in enumerate((np.arange(5) * 10.0, np.arange(5) * 0.1)):
        mean = np.mean([per_image[i][j] for i in idx], axis=0)
        r2 = {name: linregress(f(x), mean).rvalue ** 2 for name, f in (("l", lambda v: v), ("s", np.sqrt), ("q", np.square))}
        out.append(r2["l"] - max(r2["s"], r2["q"]))
    return min(out)


def test_linear_edge_se_matches_the_exact_bootstrap_distribution():
    """Three images: the 27 equally likely resamples enumerated, the edge computed by hand (scipy), trained
    minus untrained on the same resample; the bootstrap's se must match the exact one."""
    x = np.arange(5.0)
    trained = {0: (x, x), 1: (x + 0.3 * x ** 2, np.sqrt(x) * 2), 2: (x ** 1.5, x)}
    control = {0: ((x > 0) * 1.0 + 0.1 * x, np.sqrt(x)), 1: (np.sqrt(x), x ** 2 / 4), 2: (x, (x > 0) * 2.0)}
    exact = [_edge_by_hand(trained, idx) - _edge_by_hand(control, idx) for idx in itertools.product(range(3), repeat=3)]
    se = ms.invariance_se(_sweeps(trained), _sweeps(control), draws=1500, seed=0)
    assert np.std(exact) > 0.01
    assert se["linear_edge"] == pytest.approx(np.std(exact), rel=0.08)  # MC error of the se at 1500 draws: ~2%
    assert math.isnan(se["drop"])  # no rotation sweep: no drop, no standard error


def _area_diff_by_hand(per_image: dict, idx) -> float:
    """min over translate / scale of layer 1's minus layer 7's area under distance/max vs amount/max of the
    mean curve, by scipy's trapezoid rule."""
    from scipy.integrate import trapezoid

    out = []
    for j, x in enumerate((np.arange(5) * 10.0, np.arange(5) * 0.1)):
        fc7 = np.mean([per_image[i][j] for i in idx], axis=0)
        conv1 = (x > 0).astype(float)  # _sweeps' layer 1: a jump at the first step, every image
        area = [trapezoid(d / d.max(), x / x.max()) for d in (conv1, fc7)]
        out.append(area[0] - area[1])
    return min(out)


def test_area_difference_se_matches_the_exact_bootstrap_distribution():
    """The layer-1-minus-layer-7 area, trained minus untrained, over the 27 resamples of three images
    enumerated (scipy's trapezoid): the bootstrap's se must match the exact one."""
    x = np.arange(5.0)
    trained = {0: (x, x), 1: (x ** 2, np.sqrt(x) * 2), 2: (x ** 1.5, x + 1)}
    control = {0: ((x > 0) * 1.0 + 0.1 * x, np.sqrt(x)), 1: (np.sqrt(x), x ** 2 / 4), 2: (x, (x > 0) * 2.0)}
    exact = [_area_diff_by_hand(trained, idx) - _area_diff_by_hand(control, idx)
             for idx in itertools.product(range(3), repeat=3)]
    se = ms.invariance_se(_sweeps(trained), _sweeps(control), draws=1500, seed=0)
    assert np.std(exact) > 0.01
    assert se["diff"] == pytest.approx(np.std(exact), rel=0.08)


def test_rotation_drop_se_matches_the_analytic_se():
    """p(true) is 0.8 at 0° for every image and lowest at 90° on every resample, so the drop is linear in
    the images' mean p(true) at 90°: the ideal bootstrap se of the trained-minus-untrained drop is the
    analytic se of a paired mean difference, std(u − w) / sqrt(n) / 0.8 (population std)."""
    rng = np.random.default_rng(3)
    n = 30
    u, w = rng.uniform(0.3, 0.6, n), rng.uniform(0.02, 0.1, n)  # trained and untrained falls at 90°

    def sweep(fall):
        return pd.DataFrame([{"transform": "rotate", "amount": a, "image": i, "label": 0,
                              "distance_fc7": 0.0, "p_true": {0.0: 0.8, 90.0: 0.8 - f, 180.0: 0.79}[a]}
                             for i, f in enumerate(fall) for a in (0.0, 90.0, 180.0)])

    se = ms.invariance_se(sweep(u), sweep(w), draws=3000, seed=0)
    assert se["drop"] == pytest.approx((u - w).std() / math.sqrt(n) / 0.8, rel=0.06)  # MC error ~1.3%
    assert math.isnan(se["diff"]) and math.isnan(se["linear_edge"])  # no translate / scale sweeps


class Planted(nn.Module):
    """A classifier whose class-0 logit is a weighted sum of the image around ``centre`` (y, x): occluding
    there lowers p(class 0) most. ``conv5`` is a 1x1 channel mean (occlusion_maps reads a layer)."""

    def __init__(self, centre: tuple[float, float], hw: int = 32):
        super().__init__()
        self.conv5 = nn.Conv2d(3, 1, 1, bias=False)
        nn.init.constant_(self.conv5.weight, 1 / 3)
        yy, xx = torch.meshgrid(torch.arange(hw, dtype=torch.float32), torch.arange(hw, dtype=torch.float32), indexing="ij")
        self.register_buffer("w", torch.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / 18.0))

    def forward(self, x):
        s = (self.conv5(x)[:, 0] * self.w).sum((1, 2)) / 4
        return torch.stack([s, torch.zeros_like(s), torch.zeros_like(s)], 1)


def _minimum_by_hand(model, image, target, size, stride):
    """The occlusion loop written out: every square position, the copy occluded with 0, p(target) by softmax."""
    h = image.shape[-1]
    best = None
    with torch.no_grad():
        for top in range(0, h - size + 1, stride):
            for left in range(0, h - size + 1, stride):
                x = image.clone()
                x[:, top:top + size, left:left + size] = 0
                prob = float(torch.softmax(model(x[None]), 1)[0, target])
                if best is None or prob < best[0]:
                    best = (prob, (left + size / 2, top + size / 2))
    return best[1]


def test_occlusion_control_finds_the_planted_minimum():
    """The untrained control's statistic: where p(true class) is lowest as the square slides, with the
    trained run's square and stride; checked against the hand-written loop and the planted object."""
    image = torch.ones(3, 32, 32) + 0.1 * torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    rows = [{"image": "a.JPEG", "label": 0, "size": 8, "stride": 4, "boxes": [[4, 16, 16, 28]]},
            {"image": "b.JPEG", "label": 0, "size": 6, "stride": 2, "boxes": [[20, 2, 30, 12]]}]
    on_a = ms.occlusion_control(Planted((22, 10)), rows[:1], {"a.JPEG": image})
    assert on_a["a.JPEG"] == pytest.approx(_minimum_by_hand(Planted((22, 10)), image, 0, 8, 4))
    assert st.inside(on_a["a.JPEG"], rows[0]["boxes"])
    on_b = ms.occlusion_control(Planted((7, 25)), rows[1:], {"b.JPEG": image})
    assert on_b["b.JPEG"] == pytest.approx(_minimum_by_hand(Planted((7, 25)), image, 0, 6, 2))
    assert st.inside(on_b["b.JPEG"], rows[1]["boxes"]) and not st.inside(on_b["b.JPEG"], rows[0]["boxes"])
    assert "size" in ms.occlusion_control(Planted((7, 25)), [{"image": "a.JPEG", "label": 0}], {"a.JPEG": image})
    assert "not among" in ms.occlusion_control(Planted((7, 25)), rows[:1], {})


class _Features(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv5 = nn.Conv2d(3, 4, 3, padding=1)
        self.fc7 = nn.Linear(4 * 28 * 28, 8)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g)

    def forward(self, x):
        return self.fc7(torch.relu(self.conv5(x)).flatten(1))


def test_correspondence_control_uses_the_trained_tables_square_and_repeats():
    from zfnet.analysis.correspondence import correspondence_table

    g = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, 28, 28, generator=g)
    landmarks = {"right_eye": np.array([[8.0, 10.0]] * 4), "nose": np.array([[14.0, 18.0]] * 4)}
    trained = pd.DataFrame({"occlusion": ["Right eye", "Nose", "Random"], "size": 6, "repeats": 2})
    got = ms.correspondence_control(_Features(), trained, images, landmarks, {"seed": 3, "class": "x", "images": 4})
    assert (got["size"] == 6).all() and (got["repeats"] == 2).all()
    want = correspondence_table(_Features(), images, landmarks, size=6, repeats=2, seed=3)
    pd.testing.assert_frame_equal(got, want)
    other = correspondence_table(_Features(), images, landmarks, size=4, repeats=2, seed=3)
    assert not np.allclose(got["delta_layer5_mean"], other["delta_layer5_mean"])  # the square matters


def test_untrained_errors_match_the_training_data_modules_centre_crop(tmp_path):
    """Table 3's control: each row's untrained network on the validation set, read as the train stage's
    ShardDataModule reads it (uint8 split in memory, its normalize, the centre crop): the same errors. A model
    missing from disk is left out; each control's fingerprint is recorded."""
    from test_prepare import make_imagenet, settings

    from zfnet.untrained import initial_model
    from zfnet.data.crops import crop_offsets
    from zfnet.data.datamodule import ShardDataModule
    from zfnet.data.prepare import prepare
    from zfnet.models import build
    from zfnet.models.weights import export_model

    from test_prepare import WNIDS

    make_imagenet(tmp_path / "in", per_class=1, val_per_class=4, bad=False)
    solution = tmp_path / "in" / "LOC_val_solution.csv"  # unbalanced labels: 8 / 3 / 1 of the 12 images, so
    lines = solution.read_text().splitlines()              # predicting one class scores its own error
    labels = [WNIDS[0]] * 8 + [WNIDS[1]] * 3 + [WNIDS[2]] * 1
    solution.write_text("\n".join([lines[0]] + [f"{l.split(',')[0]},{w} 1 1 50 50" for l, w in zip(lines[1:], labels)]) + "\n")
    prepared = tmp_path / "prepared"
    prepare(settings(size=72), tmp_path / "in", prepared, progress=False)
    dm = ShardDataModule(prepared, crop=64, batch_size=4, crops="ten")
    dm.setup()
    paths = {}
    for name, width, favoured in (("a", 0.125, 1), ("b", 0.25, 2)):
        torch.manual_seed(11)
        trained = build("zfnet", dm.num_classes, width=width, input_size=64)
        with torch.no_grad():  # "trained": always predicts its favoured class (error 75% / 91.7%)
            trained.fc8.fc.bias[favoured] = 1e4
        paths[name] = export_model(trained, tmp_path / name / "model.pt")
    fps: dict = {}
    got = ms.untrained_errors({**paths, "missing": tmp_path / "none.pt"}, prepared, 64, seed=5, fingerprints=fps, batch=5)
    assert set(got) == {"a", "b"} and set(fps) == {str(p) for p in paths.values()}
    top, left = crop_offsets(72, 64)[4]

    def error(model) -> float:
        wrong = total = 0
        with torch.no_grad():
            for images, labels in dm.val_dataloader():
                x = dm.normalize(images)[..., top:top + 64, left:left + 64]
                wrong += int((model.eval()(x).argmax(1) != labels).sum())
                total += len(labels)
        assert total == 12
        return 100 * wrong / total

    from zfnet.models.weights import load_model

    for name in ("a", "b"):
        model = initial_model(torch.load(paths[name], weights_only=True)["arch"], 5)[0]
        assert got[name] == pytest.approx(error(model))
    assert [error(load_model(paths[n])) for n in ("a", "b")] == pytest.approx([75.0, 100 * 11 / 12])
    # the trained weights score otherwise: the test tells the control from the trained network
    assert any(error(load_model(paths[n])) != got[n] for n in ("a", "b"))
    # the claims' first-n reader gives the images and labels the train stage validates on, in order
    xs, ys = zip(*[(dm.normalize(x)[..., top:top + 64, left:left + 64], y) for x, y in dm.val_dataloader()])
    images, labels = ms.val_images(prepared, 64, 7, labels=True)
    assert torch.equal(labels, torch.cat(ys)[:7]) and torch.allclose(images, torch.cat(xs)[:7], atol=1e-4)
