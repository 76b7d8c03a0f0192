"""Correspondence (§4.3, Table 1): Delta on constructed cases with known answers, masks, the table and
its writers."""

from __future__ import annotations

import itertools
import math

import pandas as pd
import pytest
import torch
from torch import nn

from zfnet.analysis.correspondence import (
    bootstrap_gap_se,
    PAPER_TABLE1,
    correspondence_table,
    delta,
    delta_from_eps,
    part_masks,
    random_masks,
    sign_disagreement,
)
from zfnet.figures.tables import write_correspondence_table
from zfnet.models import build


pytestmark = pytest.mark.usefixtures("one_thread")


class Identity(nn.Module):
    """Features = the image itself at every layer (module paths conv5, fc7, x), so eps = the occluded pixels."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.conv5, self.fc7, self.x = nn.Identity(), nn.Identity(), nn.Identity()

    def forward(self, x):
        return self.x(self.fc7(self.conv5(x)))


def test_sign_disagreement_by_hand():
    eps = torch.tensor([[1.0, -1.0, 0.0, 2.0], [3.0, 1.0, 0.0, -3.0], [0.0, -5.0, 0.0, 2.0]])
    # pairs: (0,1) differ at 1, 3 -> 2/4; (0,2) differ at 0 (+1 vs 0) -> 1/4; (1,2) differ at 0, 1, 3 -> 3/4
    expected = torch.tensor([[0, 0.5, 0.25], [0.5, 0, 0.75], [0.25, 0.75, 0]], dtype=torch.float64)
    torch.testing.assert_close(sign_disagreement(eps), expected)
    assert delta_from_eps(eps) == pytest.approx((0.5 + 0.25 + 0.75) / 3)


def test_identical_eps_give_zero_and_random_signs_half():
    g = torch.Generator().manual_seed(0)
    one = torch.randn(1, 5000, generator=g)
    assert delta_from_eps(one.repeat(5, 1)) == 0.0
    signs = torch.randint(0, 2, (8, 40000), generator=g).double() * 2 - 1  # independent +-1
    assert delta_from_eps(signs) == pytest.approx(0.5, abs=0.01)
    three = torch.randint(-1, 2, (8, 40000), generator=g).double()  # independent -1, 0, +1: P(differ) = 2/3
    assert delta_from_eps(three) == pytest.approx(2 / 3, abs=0.01)
    with pytest.raises(ValueError, match="at least 2"):
        delta_from_eps(one)


def test_delta_identity_features_known_answer():
    """eps_i = x_i inside the mask, 0 outside: Delta counts sign differences inside the masks."""
    h = w = 8
    n = 3
    images = torch.ones(n, 3, h, w, dtype=torch.float64)
    images[1, 0] = -1.0  # image 1: channel 0 negative everywhere
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    masks[:, 2:4, 2:6] = True  # the same 8 pixels in every image
    d_total = 3 * h * w
    # (0,1): differ on channel 0 inside the mask: 8 elements; (0,2): 0; (1,2): 8
    expected = (8 + 0 + 8) / 3 / d_total
    assert delta(Identity(), images, masks, "conv5") == pytest.approx(expected)
    # image 2's mask moved by 2 columns: 4 of its 8 pixels overlap the others' masks
    masks[2] = False
    masks[2, 2:4, 4:8] = True
    # (0,2): symmetric difference of masks = 8 pixels x 3 channels = 24 (+1 vs 0); (1,2): same 24, plus
    # channel 0 on the 4 shared pixels (-1 vs +1) = 28; (0,1): 8
    expected = (8 + 24 + 28) / 3 / d_total
    assert delta(Identity(), images, masks, "fc7") == pytest.approx(expected)
    # identical images, identical masks: 0
    assert delta(Identity(), images[:1].repeat(4, 1, 1, 1), masks[:1].repeat(4, 1, 1), "x") == 0.0


def test_delta_on_a_model_equals_pairwise_definition():
    torch.manual_seed(0)
    model = build("zfnet", 10, width=0.125, init="kaiming", input_size=64).double().train()
    g = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, 64, 64, generator=g, dtype=torch.float64) * 10
    masks = random_masks(4, 12, 64, generator=g)
    got = delta(model, images, masks, "conv5")
    assert model.training  # restored
    model.eval()
    with torch.no_grad():
        occ = images * (~masks[:, None])
        eps = (model.forward_to(images, "conv5") - model.forward_to(occ, "conv5")).flatten(1)
    hams = [float((torch.sign(eps[i]) != torch.sign(eps[j])).double().mean())
            for i, j in itertools.permutations(range(4), 2)]
    assert got == pytest.approx(sum(hams) / len(hams), abs=1e-12)
    assert 0.0 < got < 1.0
    with pytest.raises(ValueError, match="masks"):
        delta(model, images, masks[:, :10], "conv5")
    with pytest.raises(ValueError, match="bool"):
        delta(model, images, masks.double(), "conv5")


def test_part_masks_are_centred_and_kept_inside():
    lm = torch.tensor([[10.3, 20.7], [0.0, 0.0], [63.9, 30.0]])
    m = part_masks(lm, 6, (40, 64))
    assert m.shape == (3, 40, 64) and (m.sum((1, 2)) == 36).all()
    rows, cols = torch.nonzero(m[0], as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (18, 23, 7, 12)  # centre (10, 21)
    rows, cols = torch.nonzero(m[1], as_tuple=True)
    assert (rows.min(), cols.min()) == (0, 0)  # shifted inside
    rows, cols = torch.nonzero(m[2], as_tuple=True)
    assert (cols.max(), rows.min()) == (63, 27)
    with pytest.raises(ValueError, match="size"):
        part_masks(lm, 41, (40, 64))
    with pytest.raises(ValueError, match="finite"):
        part_masks(torch.tensor([[math.nan, 1.0]]), 4, 16)


def test_random_masks_inside_and_reproducible():
    a = random_masks(50, 7, (30, 20), torch.Generator().manual_seed(5))
    b = random_masks(50, 7, (30, 20), torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and (a.sum((1, 2)) == 49).all()
    tops = a.any(2).float().argmax(1)
    assert len(set(tops.tolist())) > 5  # positions vary
    boxes = torch.tensor([[5.0, 5.0, 9.0, 9.0]]).repeat(20, 1)
    m = random_masks(20, 4, 32, torch.Generator().manual_seed(0), boxes=boxes)
    rows, cols = torch.nonzero(m.any(0), as_tuple=True)
    assert rows.min() >= 3 and rows.max() <= 10 and cols.min() >= 3 and cols.max() <= 10


def test_table_columns_paper_numbers_and_writers(tmp_path):
    torch.manual_seed(0)
    model = build("zfnet", 10, width=0.125, init="kaiming", input_size=64).eval()
    g = torch.Generator().manual_seed(2)
    images = torch.randn(4, 3, 64, 64, generator=g) * 10
    lm = {
        "right_eye": torch.tensor([[20.0, 22.0]]).repeat(4, 1),
        "left_eye": torch.tensor([[44.0, 22.0]]).repeat(4, 1),
        "nose": torch.tensor([[32.0, 40.0]]).repeat(4, 1),
    }
    df = correspondence_table(model, images, lm, size=10, repeats=3, seed=0, jitter=0)
    assert list(df["occlusion"]) == ["Right eye", "Left eye", "Nose", "Random"]
    for col in ("delta_layer5_mean", "delta_layer5_std", "delta_layer7_mean", "delta_layer7_std",
                "paper_delta_layer5_mean", "paper_delta_layer7_std"):
        assert col in df.columns
    # jitter 0: part rows repeat the same masks -> std 0, mean = delta() of those masks
    assert (df.loc[:2, "delta_layer5_std"] == 0).all()
    assert df.loc[3, "delta_layer5_std"] > 0  # random masks re-drawn
    assert df.loc[0, "delta_layer7_mean"] == pytest.approx(
        delta(model, images, part_masks(lm["right_eye"], 10, 64), "fc7"), abs=1e-9)
    assert df.loc[3, "paper_delta_layer5_mean"] == PAPER_TABLE1["Random"]["layer5"][0] == 0.107
    again = correspondence_table(model, images, lm, size=10, repeats=3, seed=0, jitter=0)
    pd.testing.assert_frame_equal(df, again)  # seeded

    paths = write_correspondence_table(df, tmp_path / "tables")
    assert [p.rsplit("/", 1)[1] for p in paths] == ["table1_correspondence.csv", "table1_correspondence.md"]
    back = pd.read_csv(paths[0])
    assert list(back["occlusion"]) == list(df["occlusion"])
    md = open(paths[1], encoding="utf-8").read()
    assert md.splitlines()[0].startswith("| occlusion | Δ layer 5 (ours) | Δ layer 5 (paper) |")
    assert "| Right eye | " in md and "0.067 ± 0.007" in md and "0.073 ± 0.014" in md
    assert not [p for p in (tmp_path / "tables").iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match="landmarks"):
        correspondence_table(model, images, {"nose": torch.zeros(3, 2)}, size=10)


def test_gap_standard_error_over_images_matches_the_u_statistic_theory():
    """Delta is a U-statistic (a mean over pairs of distinct images); for pairwise values d_ij = (u_i + u_j) / 2
    its standard error over images is std(u) / sqrt(n) to first order (Hoeffding's projection: 2 sigma_1 /
    sqrt(n), sigma_1 = std(u) / 2). The gap between two such rows, paired on the same images, has std(r - p) /
    sqrt(n): independent of the bootstrap, which must agree within its own Monte-Carlo noise."""
    g = torch.Generator().manual_seed(3)
    n = 300
    u_random, u_eye, u_nose = (torch.rand(n, generator=g, dtype=torch.float64) for _ in range(3))
    u_random = u_random + 0.5 * u_eye  # rows correlated over images, as real rows are

    def pairs(u):
        return (u[:, None] + u[None, :]) / 2

    se = bootstrap_gap_se(pairs(u_random), [pairs(u_eye), pairs(u_nose)], 2000, torch.Generator().manual_seed(0))
    theory = float((u_random - (u_eye + u_nose) / 2).std(correction=1)) / math.sqrt(n)
    assert se == pytest.approx(theory, rel=0.08)  # bootstrap noise of an SE with 2000 draws: about 1.6%


def test_table_carries_the_gap_standard_error_over_images():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 5, padding=2), nn.ReLU())
    images = torch.randn(6, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    lm = {"right_eye": torch.full((6, 2), 9.0), "nose": torch.full((6, 2), 16.0)}
    df = correspondence_table(model, images, lm, layers=["0"], size=6, repeats=2, seed=0, bootstrap=200)
    col = [c for c in df.columns if c.endswith("_se_images")]
    assert len(col) == 1
    values = df[col[0]]
    assert values.iloc[:-1].isna().all() and values.iloc[-1] > 0  # on the random row only
    again = correspondence_table(model, images, lm, layers=["0"], size=6, repeats=2, seed=0, bootstrap=200)
    assert again[col[0]].iloc[-1] == values.iloc[-1]  # seeded
