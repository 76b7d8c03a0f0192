"""Transfer (§5.2–5.3): dataset adapters, folds, scores against scikit-learn, overlap search against a
brute-force correlation and the demo's planted duplicates, cached features, the non-pretrained baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from sklearn.metrics import average_precision_score, balanced_accuracy_score, precision_recall_curve

from zfnet.data import imagenet
from zfnet.transfer import classifiers, datasets, nonpretrained
from zfnet.transfer.features import cached_features, extract, load_images
from zfnet.transfer.overlap import correlate, normalize, run as run_overlap, thumbnails
from zfnet.transfer.protocols import folds, mean_per_class_accuracy, voc_ap

pytestmark = pytest.mark.usefixtures("one_thread")


def _jpeg(path: Path, seed: int, size=(60, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)
    return path


# ------------------------------------------------------------------------------------------ adapters
def test_caltech_layouts_labels_and_background(tmp_path):
    root = tmp_path / "c101" / "101_ObjectCategories"
    for cls in ("zebra", "ant", "BACKGROUND_Google"):
        for i in range(3):
            _jpeg(root / cls / f"image_{i + 1:04d}.jpg", i)
    (root / "ant" / "notes.txt").write_text("not an image")
    data = datasets.caltech101(tmp_path / "c101")
    assert data.classes == ["ant", "zebra"] and len(data) == 6
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert datasets.caltech101(root, background=True).classes == ["BACKGROUND_Google", "ant", "zebra"]

    c256 = tmp_path / "c256" / "256_ObjectCategories"
    for cls in ("001.ak47", "002.american-flag", "257.clutter"):
        _jpeg(c256 / cls / f"{cls[:3]}_0001.jpg", 1)
    (c256 / "001.ak47" / "stray").mkdir()
    assert datasets.caltech256(tmp_path / "c256").classes == ["001.ak47", "002.american-flag"]
    assert len(datasets.caltech256(tmp_path / "c256", clutter=True)) == 3


def test_caltech_errors_name_the_path(tmp_path):
    with pytest.raises(datasets.DatasetError, match="101_ObjectCategories"):
        datasets.caltech101(tmp_path)
    (tmp_path / "101_ObjectCategories" / "empty").mkdir(parents=True)
    with pytest.raises(datasets.DatasetError, match="empty class folder"):
        datasets.caltech101(tmp_path)


def _voc(root: Path, ids=("2012_000001", "2012_000002", "2012_000003")) -> Path:
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for n, i in enumerate(ids):
        _jpeg(root / "JPEGImages" / f"{i}.jpg", n)
    for c, cls in enumerate(datasets.VOC_CLASSES):
        rows = [f"{i} {1 if (n + c) % 3 == 0 else (0 if (n + c) % 3 == 1 and c == 0 else -1):>2}" for n, i in enumerate(ids)]
        (main / f"{cls}_train.txt").write_text("\n".join(rows) + "\n")
    return root


def test_voc_targets_and_errors(tmp_path):
    root = _voc(tmp_path / "VOCdevkit" / "VOC2012")
    data = datasets.voc2012(tmp_path, "train")  # VOCdevkit/ works too
    assert data.targets.shape == (3, 20) and data.classes[0] == "aeroplane"
    assert data.targets[0, 0] == 1 and data.targets[1, 0] == 0 and data.targets[2, 0] == -1
    with pytest.raises(datasets.DatasetError, match="aeroplane_val.txt"):
        datasets.voc2012(root, "val")
    (root / "ImageSets/Main/dog_train.txt").write_text("2012_000001 yes\n")
    with pytest.raises(datasets.DatasetError, match="dog_train.txt: malformed"):
        datasets.voc2012(root, "train")
    (root / "ImageSets/Main/dog_train.txt").write_text("2012_000001 1\n")
    with pytest.raises(datasets.DatasetError, match="lists other images"):
        datasets.voc2012(root, "train")
    with pytest.raises(datasets.DatasetError, match="not a VOC 2012 folder"):
        datasets.voc2012(tmp_path / "nowhere", "train")


# ------------------------------------------------------------------------------------------ protocols
def test_folds_disjoint_sized_and_reproducible():
    labels = np.repeat(np.arange(4), [40, 31, 60, 35])
    a = folds(labels, 30, 50, 5, seed=7)
    assert len(a) == 5
    for train, test in a:
        assert not set(train) & set(test)
        assert np.bincount(labels[train]).tolist() == [30, 30, 30, 30]
        assert np.bincount(labels[test]).tolist() == [10, 1, 30, 5]  # up to 50, what is left
    b = folds(labels, 30, 50, 5, seed=7)
    assert all((x[0] == y[0]).all() and (x[1] == y[1]).all() for x, y in zip(a, b))
    assert len({tuple(train) for train, _ in a}) == 5  # every fold is another draw
    assert not (folds(labels, 30, 50, 1, seed=8)[0][0] == a[0][0]).all()
    with pytest.raises(ValueError, match="class 1 has 31"):
        folds(labels, 31, 50, 1, dataset="transfer.caltech101")


def test_mean_per_class_accuracy_equals_sklearn_balanced_accuracy():
    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.integers(0, 7, 300)
        pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 7, 300))
        assert mean_per_class_accuracy(y, pred) == pytest.approx(balanced_accuracy_score(y, pred))


def _envelope_ap(y: np.ndarray, s: np.ndarray) -> float:
    """VOC's AP from scikit-learn's precision/recall curve: precision made monotone, integrated over recall."""
    precision, recall, _ = precision_recall_curve(y, s)
    precision, recall = precision[::-1], recall[::-1]  # increasing recall
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall) * envelope[1:]))


def test_voc_ap_against_sklearn():
    rng = np.random.default_rng(1)
    for trial in range(20):
        y = rng.integers(0, 2, 80)
        y[0] = 1
        s = y * rng.normal(1, 1, 80) + rng.normal(0, 1, 80)
        if trial % 2:
            s = np.round(s, 1)  # ties
        targets = np.where(y == 1, 1, -1)
        ours = voc_ap(s, targets)
        assert ours == pytest.approx(_envelope_ap(y, s))
        assert ours >= average_precision_score(y, s) - 1e-12  # the envelope only raises precision
    # a ranking whose precision only falls: VOC's AP is scikit-learn's
    y, s = np.array([1, 1, 0, 1, 0, 0]), np.array([6, 5, 4, 3, 2, 1.0])
    assert voc_ap(s, np.where(y == 1, 1, -1)) == pytest.approx(average_precision_score(y, s))
    # difficult images (0) are left out; no positive -> NaN
    assert voc_ap(np.array([6, 5, 4, 3.0]), np.array([1, 0, -1, 1])) == pytest.approx(
        average_precision_score([1, 0, 1], [6, 4, 3]))
    assert np.isnan(voc_ap(np.array([1.0, 2.0]), np.array([-1, 0])))


# ------------------------------------------------------------------------------------------ classifiers
def test_classifiers_on_separable_features():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (4, 20))
    y = np.repeat(np.arange(4), 30)
    x = centres[y] + rng.normal(0, 1, (120, 20))
    tr, te = folds(y, 15, None, 1)[0]
    for kind in ("softmax", "svm"):
        assert mean_per_class_accuracy(y[te], classifiers.fit_predict(kind, x[tr], y[tr], x[te])) > 0.95
    with pytest.raises(ValueError, match="softmax"):
        classifiers.make("knn")


def test_multilabel_softmax_ranks_present_classes_first():
    rng = np.random.default_rng(0)
    n, c = 200, 5
    targets = np.where(rng.random((n, c)) < 0.3, 1, -1)
    targets[np.arange(n), rng.integers(0, c, n)] = 1
    x = targets @ rng.normal(0, 3, (c, 16)) + rng.normal(0, 0.5, (n, 16))
    scores = classifiers.fit_multilabel_softmax(x[:150], targets[:150], x[150:])
    assert scores.shape == (50, c)
    assert np.mean([voc_ap(scores[:, k], targets[150:, k]) for k in range(c)]) > 0.9
    only = np.full((4, c), -1)
    only[:, 2] = 1
    assert classifiers.fit_multilabel_softmax(x[:4], only, x[:3])[:, 2].tolist() == [1, 1, 1]


# ------------------------------------------------------------------------------------------ overlap
def test_blocked_correlation_equals_brute_force_corrcoef():
    rng = np.random.default_rng(0)
    gallery = rng.normal(0, 1, (37, 64)).astype(np.float32)
    queries = rng.normal(0, 1, (9, 64)).astype(np.float32)
    queries[:3] = gallery[[4, 20, 36]] * 1.7 + 3 + rng.normal(0, 0.05, (3, 64))  # affine copies: correlation ~1
    q, g = normalize(queries), normalize(gallery)
    qi, gi, sc, best = correlate(q, (g[i : i + 8] for i in range(0, 37, 8)), threshold=0.2)
    brute = np.corrcoef(queries, gallery)[:9, 9:]  # numpy's Pearson correlation, every pair
    expected = np.argwhere(brute >= 0.2)
    assert sorted(zip(qi.tolist(), gi.tolist())) == sorted(map(tuple, expected.tolist()))
    np.testing.assert_allclose(sc.numpy(), brute[qi.numpy(), gi.numpy()], atol=1e-5)
    np.testing.assert_allclose(best.numpy(), brute.max(axis=1), atol=1e-5)
    assert {(a, b) for a, b, s in zip(qi.tolist(), gi.tolist(), sc.tolist()) if s > 0.99} == {(0, 4), (1, 20), (2, 36)}


def test_thumbnails_list_unreadable_files(tmp_path):
    good = _jpeg(tmp_path / "a.jpg", 0, (300, 200))
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    thumbs, keep, bad = thumbnails([good, tmp_path / "empty.jpg", tmp_path / "text.jpg"], size=16, progress=False)
    assert thumbs.shape == (1, 256) and keep == [0]
    assert [Path(p).name for p, _ in bad] == ["empty.jpg", "text.jpg"]
    assert float(thumbs[0].sum()) == pytest.approx(0, abs=1e-4) and float(thumbs[0].norm()) == pytest.approx(1, abs=1e-5)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    """The embedded demo data at its default size (the demo profile's `demo_data`)."""
    from zfnet.config import compose_params
    from zfnet.data.demo import generate

    out = tmp_path_factory.mktemp("demo")
    compose_params(out / "params.yaml")
    cfg = OmegaConf.load(out / "params.yaml")
    generate(cfg.demo_data, out / "demo", progress=False)
    return out / "demo", cfg


def test_overlap_finds_every_planted_duplicate_and_nothing_else(demo_root, tmp_path):
    root, cfg = demo_root
    cfg = OmegaConf.merge(cfg, {"data": {"imagenet_root": str(root / "ILSVRC2012")},
                                "transfer": {"caltech101": {"root": str(root / "caltech101")},
                                             "caltech256": {"root": str(root / "caltech256")}},
                                "overlap": {"out_dir": str(tmp_path / "overlap"), "metrics_path": str(tmp_path / "m.json"),
                                            "ground_truth": str(root / "ground_truth" / "duplicates.csv"), "workers": 2}})
    metrics = run_overlap(cfg)
    planted = pd.read_csv(root / "ground_truth" / "duplicates.csv")
    pairs = pd.read_csv(tmp_path / "overlap" / "pairs.csv")
    found = {(Path(c).relative_to(root).as_posix(), Path(i).relative_to(root).as_posix())
             for c, i in zip(pairs.caltech_path, pairs.imagenet_path)}
    assert found == set(zip(planted.caltech_path, planted.imagenet_path)) and len(found) == 12
    assert metrics["vs_ground_truth"]["precision"] == metrics["vs_ground_truth"]["recall"] == 1.0
    assert metrics["closest_distinct_score"] < cfg.overlap.threshold
    removed = (tmp_path / "overlap" / "removed.txt").read_text().split()
    kept = (tmp_path / "overlap" / "imagenet_train_filtered.txt").read_text().split()
    assert len(removed) == 12 and len(kept) == 1000 - 12 and not set(removed) & set(kept)
    assert json.loads((tmp_path / "m.json").read_text())["caltech101"]["overlapping"] == 6
    # the prepare stage's training list without them (overlap.remove)
    train = imagenet.train_split(root / "ILSVRC2012", exclude=removed)
    assert len(train) == 988 and not {str(p) for p in train.paths} & set(removed)


# ------------------------------------------------------------------------------------------ features
def test_features_are_the_blocks_outputs_and_cached_once_per_checkpoint(tmp_path):
    from zfnet.models import build
    from zfnet.models.weights import export_model

    torch.manual_seed(0)
    model = build("zfnet", num_classes=5, input_size=64, width=0.125).eval()
    paths = [_jpeg(tmp_path / "img" / f"{i}.jpg", i, (90, 70)) for i in range(6)]
    (tmp_path / "img" / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    paths.insert(2, tmp_path / "img" / "broken.jpg")
    images, keep, bad = load_images(paths, 72, workers=2, progress=False)
    assert images.shape == (6, 3, 72, 72) and images.dtype == torch.uint8
    assert keep == [0, 1, 3, 4, 5, 6] and bad[0][0].endswith("broken.jpg")
    mean = torch.full((3, 64, 64), 100.0)
    feats = extract(model, images, mean, ["conv1", "conv5", "fc7"], grid=2)
    x = images[:, :, 4:68, 4:68].float() - mean  # the centre crop (torchvision's rounding: (72 - 64) / 2)
    with torch.no_grad():
        ref = model.extract(x, ["conv1", "conv5", "fc7"])
    np.testing.assert_allclose(feats["fc7"], ref["fc7"].numpy(), rtol=1e-5, atol=1e-5)
    c1 = ref["conv1"]
    h = c1.shape[-1]  # adaptive max pool to 2x2 = max over each half (ceil / floor bins)
    quadrant = c1[:, :, : (h + 1) // 2, : (h + 1) // 2].amax((2, 3))
    np.testing.assert_allclose(feats["conv1"].reshape(6, -1, 4)[:, :, 0], quadrant.numpy(), rtol=1e-5)

    ckpt = export_model(model, tmp_path / "model.pt", extra={"classes": 5})
    np.save(tmp_path / "mean.npy", np.full((72, 72, 3), 100.0))
    args = dict(checkpoint=ckpt, mean_path=tmp_path / "mean.npy", paths=paths, cache_dir=tmp_path / "cache",
                dataset="toy", resize=72, crop=64, layers=["conv5", "fc7"], grid=2, progress=False)
    first, keep1, _ = cached_features(**args)
    np.testing.assert_allclose(first["fc7"], ref["fc7"].numpy(), rtol=1e-2, atol=1e-2)  # float16 on disk

    def no_decoding():
        raise AssertionError("a cache hit decodes no image")

    again, keep2, bad2 = cached_features(**args, images=no_decoding)
    assert keep2 == keep1 and bad2 and all((again[k] == first[k]).all() for k in first)
    torch.manual_seed(1)
    export_model(build("zfnet", num_classes=5, input_size=64, width=0.125), ckpt, extra={"classes": 5})
    other, _, _ = cached_features(**args)
    assert not np.allclose(other["fc7"], first["fc7"])
    assert len(list((tmp_path / "cache" / "toy").iterdir())) == 1  # the old checkpoint's entry is gone


def test_untrained_features_are_the_train_runs_initial_weights_cached_apart(tmp_path):
    """Table 7's untrained column reads the features of the checkpoint's architecture as the train stage
    built it before training (Lightning's seed_everything, then build): independent of the trained weights,
    in their own cache entry beside the trained one."""
    import pytorch_lightning as pl

    from zfnet.models import build
    from zfnet.models.weights import export_model

    arch = dict(num_classes=5, input_size=64, width=0.125)
    torch.manual_seed(7)
    trained = build("zfnet", **arch).eval()  # stands in for a trained model: not the seed-3 start
    ckpt = export_model(trained, tmp_path / "model.pt", extra={"classes": 5})
    paths = [_jpeg(tmp_path / "img" / f"{i}.jpg", i, (90, 70)) for i in range(5)]
    np.save(tmp_path / "mean.npy", np.full((72, 72, 3), 100.0))
    args = dict(checkpoint=ckpt, mean_path=tmp_path / "mean.npy", paths=paths, cache_dir=tmp_path / "cache",
                resize=72, crop=64, layers=["conv1", "fc7"], grid=2, progress=False)
    ours, _, _ = cached_features(**args, dataset="toy")
    control, keep, _ = cached_features(**args, dataset="toy_untrained", untrained_seed=3)
    pl.seed_everything(3)
    start = build("zfnet", **arch).eval()
    images, _, _ = load_images(paths, 72, progress=False)
    ref = extract(start, images, torch.full((3, 64, 64), 100.0), ["conv1", "fc7"], grid=2)
    assert keep == list(range(5))
    for layer in ("conv1", "fc7"):
        scale = float(np.abs(ref[layer]).max())  # untrained fc7 is ~1e-5: tolerances relative to the layer's range
        assert scale > 0
        np.testing.assert_allclose(control[layer], ref[layer], rtol=1e-2, atol=1e-2 * scale)  # float16 on disk
        assert not np.allclose(control[layer], ours[layer], rtol=1e-2, atol=1e-2 * scale)
    assert (tmp_path / "cache" / "toy").is_dir() and (tmp_path / "cache" / "toy_untrained").is_dir()


def _toy_caltech(tmp_path, model, seed: int, untrained: bool = True):
    """A 3-class Caltech-101 of 6 images each, ``model`` as the checkpoint, Table 7 at 2 per class over 2
    folds on conv1 and fc7; the config keys caltech() reads."""
    from zfnet.models.weights import export_model

    root = tmp_path / "c101" / "101_ObjectCategories"
    for c, cls in enumerate(("ant", "bee", "cat")):
        for i in range(6):
            _jpeg(root / cls / f"image_{i + 1:04d}.jpg", 10 * c + i, (80, 80))
    export_model(model, tmp_path / "model.pt", extra={"classes": 5})
    np.save(tmp_path / "mean.npy", np.full((72, 72, 3), 100.0))
    return OmegaConf.create({
        "seed": seed, "prepare": {"out_dir": str(tmp_path)}, "data": {"resize": 72, "crop": 64},
        "transfer": {"checkpoint": str(tmp_path / "model.pt"), "cache_dir": str(tmp_path / "cache"), "seed": 0,
                     "workers": 1, "features": {"layers": ["conv1", "fc7"], "grid": 2, "batch_size": 8, "chunk": 8},
                     "classifier": {"layer": "fc7", "softmax": {"C": 1.0, "max_iter": 200}, "svm": {"C": 0.01, "max_iter": 200}},
                     "caltech101": {"root": str(tmp_path / "c101"), "train_per_class": [], "test_per_class": 3, "folds": 2},
                     "table7": {"caltech101": 2, "classifiers": ["svm", "softmax"], "untrained": untrained},
                     "nonpretrained": {"enabled": False}}})


def test_table7_untrained_rows_use_the_same_folds_and_the_initial_weights(tmp_path):
    """A checkpoint that IS its train run's initial model (seed 3): the untrained rows equal ours fold by
    fold (same images, folds, classifiers); another run seed gives other features; untrained off: none."""
    import pytorch_lightning as pl

    from zfnet.models import build
    from zfnet.transfer.experiments import caltech

    pl.seed_everything(3)
    start = build("zfnet", num_classes=5, input_size=64, width=0.125).eval()
    key = ["classifier", "layer", "n_train", "fold"]
    frame = pd.DataFrame(caltech(_toy_caltech(tmp_path, start, seed=3), "caltech101"))
    ours, ctl = (frame[frame.method == m].set_index(key).sort_index() for m in ("pretrained", "untrained"))
    assert len(ours) == len(ctl) == 2 * 2 * 2  # classifiers x layers x folds
    assert ours.index.equals(ctl.index)
    np.testing.assert_array_equal(ctl.accuracy.to_numpy(), ours.accuracy.to_numpy())
    other = pd.DataFrame(caltech(_toy_caltech(tmp_path, start, seed=4), "caltech101"))
    assert not np.array_equal(other[other.method == "untrained"].set_index(key).sort_index().accuracy.to_numpy(),
                              ours.accuracy.to_numpy())
    off = pd.DataFrame(caltech(_toy_caltech(tmp_path, start, seed=3, untrained=False), "caltech101"))
    assert set(off.method) == {"pretrained"}


def test_table7_shows_the_untrained_columns_beside_ours_and_the_papers():
    from zfnet.transfer.experiments import layers_table, summarize

    cfg = OmegaConf.create({"transfer": {"table7": {"caltech101": 30, "caltech256": 60, "classifiers": ["svm"]},
                                         "features": {"layers": ["conv1", "fc7"]}}})
    records = [{"dataset": d, "method": m, "classifier": "svm", "layer": l, "n_train": n, "fold": f,
                "accuracy": (acc + f) / 100}
               for d, n in (("caltech101", 30), ("caltech256", 60))
               for m, base in (("pretrained", 50.0), ("untrained", 10.0))
               for l, acc in (("conv1", base), ("fc7", base + 20)) for f in (0, 2)]
    table = layers_table(summarize(records), cfg)
    assert list(table.columns) == ["classifier (layer)", "Caltech-101 30/class (ours)", "Caltech-101 30/class (untrained)",
                                   "Caltech-101 30/class (paper)", "Caltech-256 60/class (ours)",
                                   "Caltech-256 60/class (untrained)", "Caltech-256 60/class (paper)"]
    assert table["Caltech-101 30/class (untrained)"].tolist() == ["11.0 ± 1.0", "31.0 ± 1.0"]  # %, std over folds
    assert table["Caltech-256 60/class (ours)"].tolist() == ["51.0 ± 1.0", "71.0 ± 1.0"]
    without = layers_table(summarize([r for r in records if r["method"] == "pretrained"]), cfg)
    assert not any("untrained" in c for c in without.columns)


def test_features_stream_in_chunks_equal_to_the_whole_set_at_once(tmp_path, monkeypatch):
    """Chunks of 3 paths, batches of 4 images, unreadable files in two chunks: the chunked extraction holds
    at most a chunk of images and gives the whole set's features bit for bit (the same batches)."""
    import zfnet.transfer.features as features
    from zfnet.models import build
    from zfnet.models.weights import export_model

    torch.manual_seed(0)
    model = build("zfnet", num_classes=5, input_size=64, width=0.125).eval()
    paths = [_jpeg(tmp_path / "img" / f"{i}.jpg", i, (90, 70)) for i in range(11)]
    for at in (1, 7):
        bad = tmp_path / "img" / f"broken{at}.jpg"
        bad.write_bytes(b"\xff\xd8 nope")
        paths.insert(at, bad)
    images, keep, bad = load_images(paths, 72, progress=False)  # the reference: every image at once
    mean = torch.full((3, 64, 64), 100.0)
    layers = ["conv1", "conv5", "fc7"]
    whole = extract(model, images, mean, layers, grid=2, batch_size=4)

    sizes, real = [], features.load_images
    monkeypatch.setattr(features, "load_images", lambda p, *a, **k: sizes.append(len(p)) or real(p, *a, **k))
    keep_c, bad_c = [], []
    chunked = extract(model, features.image_chunks(paths, 72, 3, keep=keep_c, bad=bad_c), mean, layers, grid=2,
                      batch_size=4)
    assert sizes == [3, 3, 3, 3, 1] and keep_c == keep and bad_c == bad
    for name in layers:
        assert chunked[name].shape == whole[name].shape == (11, whole[name].shape[1])
        assert np.array_equal(chunked[name], whole[name]), name

    ckpt = export_model(model, tmp_path / "model.pt", extra={"classes": 5})
    np.save(tmp_path / "mean.npy", np.full((72, 72, 3), 100.0))
    args = dict(checkpoint=ckpt, mean_path=tmp_path / "mean.npy", paths=paths, resize=72, crop=64, layers=layers,
                grid=2, batch_size=4, progress=False)
    sizes.clear()
    streamed, keep_s, bad_s = cached_features(**args, cache_dir=tmp_path / "a", dataset="toy", chunk=5)
    assert sizes == [5, 5, 3] and keep_s == keep and [b[0] for b in bad_s] == [b[0] for b in bad]
    at_once, _, _ = cached_features(**args, cache_dir=tmp_path / "b", dataset="toy",
                                    images=lambda: load_images(paths, 72, progress=False))
    for name in layers:
        assert np.array_equal(streamed[name], at_once[name]), name


def test_nonpretrained_baseline_learns_a_separable_task():
    g = torch.Generator().manual_seed(0)
    y = np.repeat(np.arange(2), 24)
    images = torch.randint(0, 60, (48, 3, 72, 72), generator=g, dtype=torch.uint8)
    images[y == 1, 0] += 150  # class 1 is red
    order = np.random.default_rng(0).permutation(48)
    tr, te = order[:32], order[32:]
    pred = nonpretrained.fit_predict(images[tr], y[tr], images[te], 2, {"name": "zfnet", "width": 0.125, "init": "kaiming"},
                                     crop=64, epochs=20, batch_size=16, lr=0.01)
    assert mean_per_class_accuracy(y[te], pred) >= 0.9


@pytest.mark.parametrize("workers", [1, 2])
def test_nonpretrained_from_files_equals_the_in_memory_baseline(tmp_path, workers, monkeypatch):
    """The baseline reads its images batch by batch from the files; the former one held every image as a
    tensor and took its mean image at once. Same mean, same predictions (the in-memory path inlined)."""
    import pytorch_lightning as pl
    import torchvision
    from torch.utils.data import DataLoader, TensorDataset

    from zfnet.data.image_files import ImageFiles
    from zfnet.transfer.nonpretrained import ScratchClassifier, mean_image

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 12)
    paths = []
    for i, label in enumerate(y):
        a = rng.integers(0, 110, (int(rng.integers(72, 96)), int(rng.integers(72, 96)), 3), dtype=np.uint8)
        a[..., 0] += np.uint8(140 * label)
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(a).save(paths[-1])
    resize, crop = 72, 64
    pixels = torch.stack([torch.from_numpy(np.array(torchvision.transforms.CenterCrop(resize)(
        torchvision.transforms.Resize(resize)(Image.open(p).convert("RGB"))))).permute(2, 0, 1) for p in paths])
    order = np.random.default_rng(1).permutation(len(y))
    tr, te = order[:16], order[16:]
    model_cfg = {"name": "zfnet", "width": 0.125, "init": "kaiming"}

    # the reference: the former fit_predict, every image in memory
    pl.seed_everything(4, workers=True, verbose=False)
    mean = pixels[tr].double().mean(0)
    ref = ScratchClassifier(model_cfg, 2, crop, mean, 0.01, 0.9, 5e-4, 3)
    data = TensorDataset(pixels[tr], torch.as_tensor(y[tr], dtype=torch.long))
    pl.Trainer(max_epochs=3, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, deterministic=True
               ).fit(ref, DataLoader(data, batch_size=6, shuffle=True, drop_last=True))
    with torch.no_grad():
        ref.model.eval()
        logits = ref.model(pixels[te].float()[..., 4:68, 4:68] - mean.float()[..., 4:68, 4:68])  # the centre crop

    files = lambda idx: ImageFiles([paths[i] for i in idx], y[idx], resize)  # noqa: E731
    assert torch.equal(mean_image(files(tr), batch_size=5, workers=workers), mean)
    trained = []

    class Recorded(ScratchClassifier):  # keeps the trained network for the comparison
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            trained.append(self)

    monkeypatch.setattr(nonpretrained, "ScratchClassifier", Recorded)
    pred = nonpretrained.fit_predict(files(tr), None, files(te), 2, model_cfg, crop=crop, epochs=3, batch_size=6,
                                     lr=0.01, seed=4, workers=workers)
    assert np.array_equal(pred, logits.argmax(1).numpy())
    for (k, a), b in zip(ref.state_dict().items(), trained[0].state_dict().values()):
        assert torch.equal(a, b), k  # every weight after training: the same batches in the same order
