"""Network dissection: the Broden reader, the demo probe set, and dissect() against a direct numpy
implementation of NetDissect-Lite's formulas and against planted units."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from helpers import demo_conf
from zfnet.analysis.dissection import dissect, probe_loader
from zfnet.data.broden import encode_mask, read_broden
from zfnet.data.demo import broden as demo_broden
from zfnet.data.demo.config import _config


@pytest.fixture(scope="module")
def probe_root(tmp_path_factory) -> Path:
    c = _config(demo_conf(broden={"images": 24, "size": 64}, workers=1))
    root = tmp_path_factory.mktemp("probe") / "broden"
    demo_broden.write(c, root)
    return root


@pytest.fixture(scope="module")
def probe(probe_root):
    return read_broden(probe_root)


# ---------------------------------------------------------------------------------------------------------
# reference: NetDissect-Lite's feature_operation.py (quantile_threshold, tally_job, tally), per unit, numpy
# ---------------------------------------------------------------------------------------------------------


def _pil_upsample(fm: np.ndarray, sh: int, sw: int) -> np.ndarray:
    # scipy.misc.imresize(fm, (sh, sw), mode='F'): PIL's bilinear resize of a float image
    return np.asarray(Image.fromarray(fm.astype(np.float32), mode="F").resize((sw, sh), Image.BILINEAR))


def netdissect_reference(features: np.ndarray, probe, quantile: float, segmentations=None):
    """features (N, U, h, w) -> (thresholds, iou (U, L)), NetDissect-Lite's formulas one unit at a time.
    ``segmentations``: ``probe.segmentation(i)`` of every image, already read (the benchmark's compute-only
    timing); None reads them from disk here."""
    n, units = features.shape[:2]
    threshold = np.percentile(features.astype(np.float64), 100 * (1 - quantile), axis=[0, 2, 3])
    L = probe.n_labels
    labelcat = probe.label_category_matrix()
    tally_both = np.zeros((units, L))
    tally_units_cat = np.zeros((units, labelcat.shape[1]))
    tally_labels = np.zeros(L)
    for i in range(n):
        segs = probe.segmentation(i) if segmentations is None else segmentations[i]
        sh, sw = probe.seg_shape(i)
        scalars, pixels = [], []
        for v in segs.values():
            if isinstance(v, list):
                scalars += v
            else:
                pixels.append(v)
        for s in scalars:
            tally_labels[s] += sh * sw
        if pixels:
            pixels = np.concatenate(pixels)
            tl = np.bincount(pixels.ravel(), minlength=L)
            tl[0] = 0
            tally_labels += tl
        for u in range(units):
            fm = features[i, u]
            if fm.max() > threshold[u]:
                mask = _pil_upsample(fm, sh, sw)
                idx = np.argwhere(mask > threshold[u])
                tally_cat = np.zeros(labelcat.shape[1])
                if len(pixels) > 0:
                    bt = np.bincount(pixels[:, idx[:, 0], idx[:, 1]].ravel(), minlength=L)
                    bt[0] = 0
                    tally_cat = bt @ labelcat
                    tally_both[u] += bt
                for s in scalars:
                    tally_cat = tally_cat + labelcat[s]
                    tally_both[u, s] += len(idx)
                tally_units_cat[u] += len(idx) * (tally_cat > 0)
    iou = tally_both / (tally_units_cat @ labelcat.T + tally_labels[None, :] - tally_both + 1e-10)
    return threshold, iou


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv1 = nn.Sequential(nn.Conv2d(3, 6, 5, stride=2, padding=2), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(6, 10, 3, stride=2, padding=1), nn.ReLU())
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.data = torch.randn(m.weight.shape, generator=g) * 0.05
                m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.5

    def forward(self, x):
        return self.conv2(self.conv1(x))


def test_iou_quantiles_labels_equal_the_numpy_reference(probe):
    model = _Net()
    images = probe_loader(probe, 48, mean=[120.0, 120.0, 120.0], scale=1.0)
    q = 0.02
    d = dissect(model, ["conv1", "conv2"], probe, images, quantile=q, batch_size=5)
    x = images(range(len(probe)))
    with torch.no_grad():  # the reference's features: the same forward, in dissect's batches of 5
        f1 = torch.cat([model.conv1(b) for b in x.split(5)])
        f2 = torch.cat([model.conv2(model.conv1(b)) for b in x.split(5)])
    for layer, f in (("conv1", f1), ("conv2", f2)):
        thr, iou = netdissect_reference(f.numpy(), probe, q)
        # exact: the streaming top-K quantile is numpy's percentile bit for bit, and the tallies are integer
        # pixel counts; the only inexact step, the float32 resize (one ulp off PIL's in ~1 pixel in 10^4),
        # puts no pixel of this seeded fixture on the other side of a threshold
        np.testing.assert_array_equal(d.thresholds[layer], thr)
        iou[:, probe.primary < 0] = 0
        np.testing.assert_array_equal(d.iou[layer], iou)
        assert iou.max() > 0.05  # the comparison is not vacuous
        ref_best = iou.argmax(1)
        srt = np.sort(iou, 1)
        clear = (srt[:, -1] - srt[:, -2]) > 5e-3
        assert clear.sum() >= 3
        names = np.array(probe.label_names)
        got = d.units[d.units.layer == layer]["label"].to_numpy()
        assert list(got[clear]) == list(names[ref_best][clear])
        det = d.units[d.units.layer == layer]["detector"].to_numpy()
        assert (det == (iou.max(1) > 0.04)).all()
    # without room to keep the activations, pass 2 runs the model again; pairs upsampled 7 at a time
    d2 = dissect(model, ["conv1", "conv2"], probe, images, quantile=q, batch_size=5, cache_bytes=0, pair_chunk=7)
    for layer in ("conv1", "conv2"):
        np.testing.assert_array_equal(d2.iou[layer], d.iou[layer])
    assert d2.units.equals(d.units)


def test_quantile_threshold_is_exact_for_many_values():
    from zfnet.analysis.dissection.tally import percentile_from_top, quantile_k

    rng = np.random.default_rng(0)
    for m, q in ((1000, 0.005), (12345, 0.01), (7, 0.3), (50000, 0.005)):
        x = rng.standard_normal((3, m)).astype(np.float32)
        k = quantile_k(m, q)
        top = torch.sort(torch.from_numpy(x), dim=1, descending=True).values[:, :k]
        np.testing.assert_allclose(percentile_from_top(top, m, q).numpy(),
                                   np.percentile(x.astype(np.float64), 100 * (1 - q), axis=1), rtol=1e-12)


def test_windowed_tallies_equal_tallies_of_the_whole_upsampled_mask():
    """_tally_pairs upsamples each pair's window only: the same tallies as thresholding the whole resized map
    (maps with one, several or plateau values above the threshold; windows grouped by size, and the whole-map
    path when windows are large)."""
    from zfnet.analysis.dissection.tally import below as _below, resize_maps, tally_pairs as _tally_pairs

    rng = np.random.default_rng(1)
    n_labels, sh, sw = 7, 64, 48
    labelcat = torch.zeros(n_labels, 2, dtype=torch.float64)
    labelcat[1:4, 0] = labelcat[4:, 1] = 1
    for h, w, spots in ((3, 3, 1), (13, 13, 1), (13, 9, 3), (6, 6, 20)):
        m, units = 40, 5
        maps = torch.from_numpy(rng.uniform(0, 1, (m, h, w)).astype(np.float32))
        for k in range(m):  # a few values above 1: each pair's own hot spots
            maps[k].view(-1)[torch.from_numpy(rng.choice(h * w, spots, replace=False))] = 2.0
        thr = _below(torch.ones(units, dtype=torch.float64))
        unit = torch.from_numpy(rng.integers(0, units, m))
        img = torch.from_numpy(rng.integers(0, 3, m))
        seg = torch.from_numpy(rng.integers(0, n_labels, (3, 2, sh, sw)))
        scal = torch.zeros(3, n_labels)
        scal[1, 5] = 1
        got = [torch.zeros(units, n_labels, dtype=torch.float64), torch.zeros(units, 2, dtype=torch.float64)]
        _tally_pairs(*got, maps, img, unit, thr, seg, scal, labelcat, n_labels, group=8)
        # the whole map, thresholded, tallied directly
        up = resize_maps(maps, sh, sw) > thr[unit][:, None, None]
        both = torch.zeros(units, n_labels, dtype=torch.float64)
        cat = torch.zeros(units, 2, dtype=torch.float64)
        for k in range(m):
            bt = torch.stack([(up[k] & (seg[img[k], d] == c)).sum() for c in range(n_labels)
                              for d in range(2)]).reshape(n_labels, 2).sum(1).double()
            bt[0] = 0
            n_act = up[k].sum().double()
            both[unit[k]] += bt + n_act * scal[img[k]].double()
            cat[unit[k]] += n_act * (((bt + scal[img[k]].double()) @ labelcat) > 0)
        assert both.sum() > 0
        torch.testing.assert_close(got[0], both, rtol=0, atol=0)
        torch.testing.assert_close(got[1], cat, rtol=0, atol=0)


def test_resize_is_pils_bilinear_resize_of_a_float_image():
    from zfnet.analysis.dissection.tally import resize_maps

    rng = np.random.default_rng(0)
    for h, w, sh, sw in ((3, 3, 112, 112), (6, 5, 64, 80), (27, 27, 112, 112), (150, 120, 64, 64)):
        m = rng.standard_normal((4, h, w)).astype(np.float32)
        m[:, :2, :2] = 0.5  # a plateau stays exactly at its value, as in PIL
        ref = np.stack([_pil_upsample(x, sh, sw) for x in m])
        got = resize_maps(torch.from_numpy(m), sh, sw).numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=3e-7)  # a few ulps at most
        assert (got == ref).mean() > (0.99 if sh >= h else 0.3)
        if sh > h:  # the plateau's own pixels stay exactly at its value
            assert (ref == 0.5).sum() > 20 and (got[ref == 0.5] == 0.5).all()


# ---------------------------------------------------------------------------------------------------------
# planted units
# ---------------------------------------------------------------------------------------------------------


class _Planted(nn.Module):
    """conv1: unit 0 = R - G - B (a red detector), unit 1 = constant, unit 2 = the 4th input channel."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 3, 1)
        w = torch.zeros(3, 4, 1, 1)
        w[0, :3, 0, 0] = torch.tensor([1.0, -1.0, -1.0])
        w[2, 3, 0, 0] = 1.0
        self.conv1.weight.data = w
        self.conv1.bias.data = torch.tensor([0.0, 1.0, 0.0])

    def forward(self, x):
        return self.conv1(x)


def _coverage(probe, cat, name):
    num = probe.label_names.index(name)
    hit = tot = 0
    for i in range(len(probe)):
        seg = probe.segmentation(i).get(cat)
        tot += probe.seg_shape(i)[0] * probe.seg_shape(i)[1]
        if seg is not None:
            hit += int((seg == num).sum())
    return hit / tot, num


def test_planted_red_texture_and_constant_units(probe):
    red_frac, _ = _coverage(probe, "color", "red")
    tex_frac, tex_num = _coverage(probe, "texture", "striped")
    assert red_frac > 0.005 and tex_frac > 0.005
    rgb = probe_loader(probe, 64)

    def texture_channel(q_idx):
        out = []
        for i in q_idx:
            seg = probe.segmentation(i).get("texture")
            m = (seg[0] == tex_num) if seg is not None else np.zeros((64, 64), bool)
            jitter = np.random.default_rng(i).random(m.shape)  # breaks ties, keeps the map on the mask
            out.append(torch.from_numpy((m * (1.0 + 0.01 * jitter)).astype(np.float32))[None])
        return torch.stack(out)

    def images(idx):
        return torch.cat([rgb(idx), texture_channel(idx)], 1)

    model = _Planted()
    # quantile near the concept's coverage: the top activations are then the concept's pixels
    d_red = dissect(model, ["conv1"], probe, images, quantile=0.8 * red_frac)
    u = d_red.units.set_index("unit")
    assert u.loc[0, "label"] == "red" and u.loc[0, "category"] == "color" and u.loc[0, "iou"] > 0.5
    assert not u.loc[1, "detector"] and u.loc[1, "iou"] == 0.0  # constant output: never above its quantile
    d_tex = dissect(model, ["conv1"], probe, images, quantile=0.5 * tex_frac)
    t = d_tex.units.set_index("unit")
    assert t.loc[2, "label"] == "striped" and t.loc[2, "category"] == "texture" and t.loc[2, "detector"]
    s = d_red.summary()
    assert s.loc[0, "units"] == 3 and s.loc[0, "unique_color"] >= 1


# ---------------------------------------------------------------------------------------------------------
# the demo probe set: exact ground truth
# ---------------------------------------------------------------------------------------------------------


def test_demo_probe_masks_match_the_drawn_pixels(probe):
    assert probe.categories == ["color", "object", "part", "texture"]
    assert {"red", "disc", "face", "eye", "nose", "dotted", "striped", "chequered", "grid"} <= set(probe.label_names)
    pal = np.array(list(demo_broden.PALETTE.values()), np.float64)
    right = []
    for i in range(len(probe)):
        img = np.asarray(Image.open(probe.image_path(i)).convert("RGB"), np.float64)
        col = probe.segmentation(i)["color"][0]
        for j, name in enumerate(demo_broden.PALETTE):
            sel = col == probe.label_names.index(name)
            if sel.sum() > 30:  # the region's colour is nearest to its label's palette colour
                med = np.median(img[sel], 0)
                right.append(int(np.argmin(((pal - med) ** 2).sum(1))) == j)
    assert len(right) > 40 and np.mean(right) > 0.85, np.mean(right)  # shading: +-18 % brightness
    faces = [i for i in range(len(probe)) if "part" in probe.segmentation(i)]
    assert faces  # a face somewhere, with its eyes and nose masked
    eye = probe.label_names.index("eye")
    assert any((probe.segmentation(i)["part"] == eye).any() for i in faces)


# ---------------------------------------------------------------------------------------------------------
# the Broden-layout reader on a hand-made folder
# ---------------------------------------------------------------------------------------------------------


def _w(path: Path, header, rows):
    with open(path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(header)
        wr.writerows(rows)


def test_reader_on_a_hand_made_folder(tmp_path):
    root = tmp_path / "broden"
    (root / "images" / "a").mkdir(parents=True)
    cats = ["color", "object", "part", "material", "scene", "texture"]
    # labels: 1 red (color), 2 dog (object), 3 eye (part), 4 wood (material), 5 beach (scene),
    # 6 striped (texture), 300 "leg" (part, id > 255: uses the green channel), 7 "wood-ish": in object and
    # material, more coverage in material -> primary material
    names = {1: "red", 2: "dog", 3: "eye", 4: "wood", 5: "beach", 6: "striped", 7: "plank", 300: "leg"}
    cat_of = {1: ["color"], 2: ["object"], 3: ["part"], 4: ["material"], 5: ["scene"], 6: ["texture"],
              7: ["object", "material"], 300: ["part"]}
    cover = {(7, "object"): 0.1, (7, "material"): 0.3}
    _w(root / "label.csv", ["number", "name", "category", "frequency", "coverage", "syns"],
       [[0, "-", "", 0, 0.0, ""]] + [[n, names[n], ";".join(f"{c}(1)" for c in cat_of[n]), 1, 0.1, ""]
                                     for n in sorted(names)])
    _w(root / "category.csv", ["name", "first", "last", "count", "frequency"], [[c, 1, 2, 2, 3] for c in cats])
    for c in cats:
        rows = [[k, n, names[n], 1, cover.get((n, c), 0.2)] for k, n in enumerate(
            [n for n in sorted(names) if c in cat_of[n]], start=1)]
        _w(root / f"c_{c}.csv", ["code", "number", "name", "frequency", "coverage"], rows)
    sh = sw = 4

    def mask(name, ids):
        Image.fromarray(encode_mask(np.asarray(ids)), "RGB").save(root / "images" / name)
        return name

    for k in range(3):
        Image.fromarray(np.full((8, 8, 3), 100 + k, np.uint8)).save(root / "images" / f"a/{k}.jpg")
    col = mask("a/0_color.png", np.full((sh, sw), 1))
    obj = mask("a/0_object.png", np.array([[2, 2, 0, 0]] * 4))
    p1 = mask("a/0_part_1.png", np.array([[3, 0, 0, 0]] * 4))
    p2 = mask("a/0_part_2.png", np.array([[300, 300, 0, 0]] * 4))
    mat = mask("a/1_material.png", np.array([[4, 7, 7, 0]] * 4))
    header = ["image", "split", "ih", "iw", "sh", "sw", *cats]
    _w(root / "index.csv", header, [
        ["a/0.jpg", "train", 8, 8, sh, sw, col, obj, f"{p1};{p2}", "", "5", ""],
        ["a/1.jpg", "val", 8, 8, sh, sw, "", "", "", mat, "", "6"],
        ["a/2.jpg", "train", 8, 8, sh, sw, "", "", "", "", "", ""],  # no data: dropped, as NetDissect
    ])
    b = read_broden(root)
    assert b.categories == cats and len(b) == 2 and b.n_labels == 301
    assert b.image_path(0) == root / "images" / "a/0.jpg" and b.seg_shape(1) == (4, 4)
    s0 = b.segmentation(0)
    assert set(s0) == {"color", "object", "part", "scene"}
    assert s0["color"].shape == (1, 4, 4) and (s0["color"] == 1).all()
    assert s0["part"].shape == (2, 4, 4) and s0["part"][1, 0, 0] == 300 and s0["part"][0, 0, 0] == 3
    assert s0["scene"] == [5]
    s1 = b.segmentation(1)
    assert s1["texture"] == [6] and list(s1["material"][0, 0]) == [4, 7, 7, 0]
    planes, scalars = b.concept_planes(0)
    assert planes.shape == (4, 4, 4) and scalars == [5]
    prim = {names[n]: b.categories[b.primary[n]] for n in names}
    assert prim == {"red": "color", "dog": "object", "eye": "part", "wood": "material", "beach": "scene",
                    "striped": "texture", "plank": "material", "leg": "part"}
    assert b.primary[0] == -1
    only = read_broden(root, categories=["scene"])
    assert only.categories == ["scene"] and len(only) == 1
    with pytest.raises(ValueError, match="nope"):
        read_broden(root, categories=["nope"])
