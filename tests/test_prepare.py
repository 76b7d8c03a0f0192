"""The prepare stage: counts add up, bad images are listed, the mean is the mean, resume is exact."""

import csv
import hashlib
import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from test_preprocess import natural_like
from zfnet.data import imagenet, shards
from zfnet.data.prepare import prepare
from zfnet.data.preprocess import center_crop

WNIDS = ["n01440764", "n01443537", "n01484850"]


def make_imagenet(root, per_class=5, val_per_class=2, bad=True):
    """A small ILSVRC2012 layout (flat val + LOC_val_solution.csv) with the real set's oddities planted."""
    (root / "val").mkdir(parents=True)
    rows, n = [], 0
    for c, wnid in enumerate(WNIDS):
        folder = root / "train" / wnid
        folder.mkdir(parents=True)
        for i in range(per_class):
            natural_like(120 + 13 * i, 90 + 7 * c, seed=100 * c + i).save(folder / f"{wnid}_{i}.JPEG", quality=90)
        for i in range(val_per_class):
            n += 1
            natural_like(100 + 9 * i, 140, seed=1000 + n).save(root / "val" / f"ILSVRC2012_val_{n:08d}.JPEG")
            rows.append((f"ILSVRC2012_val_{n:08d}", f"{wnid} 1 1 50 50"))
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} class {w}\n" for w in WNIDS))
    with (root / "LOC_val_solution.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ImageId", "PredictionString"])
        writer.writerows(rows)
    planted = {}
    if bad:
        train0 = root / "train" / WNIDS[0]
        (train0 / "empty.JPEG").write_bytes(b"")
        (train0 / "html.JPEG").write_bytes(b"<html>")
        natural_like(150, 100).save(train0 / "png.JPEG", format="PNG")  # decodable: kept
        natural_like(150, 100).convert("CMYK").save(train0 / "cmyk.JPEG", format="JPEG")  # decodable: kept
        planted = {"empty.JPEG": "empty file", "html.JPEG": "not an image"}
    return planted


def settings(**kw):
    base = {"size": 40, "shard_size": 4, "workers": 1, "shard_index": 0, "shard_count": 1,
            "encoding": "npy", "quality": 95, "max_image_pixels": 89478485}
    return OmegaConf.create({**base, **kw})


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_counts_rejected_and_mean(tmp_path):
    planted = make_imagenet(tmp_path / "in")
    out = tmp_path / "out"
    stats = prepare(settings(), tmp_path / "in", out, progress=False)
    n_train = 3 * 5 + 4
    assert stats["train"] == {"seen": n_train, "written": n_train - 2, "rejected": 2, "shards": 5}
    assert stats["val"] == {"seen": 6, "written": 6, "rejected": 0, "shards": 2}
    with (out / "rejected.csv").open() as fh:
        rejected = {r["path"].rsplit("/", 1)[1]: r["reason"] for r in csv.DictReader(fh)}
    assert rejected == planted
    # the mean image is the float64 mean of the centre crops of every good training image
    split = imagenet.train_split(tmp_path / "in")
    good = [p for p in split.paths if p.name not in planted]
    expected = np.mean([center_crop(p, 40).astype(np.float64) for p in good], axis=0)
    mean = np.load(out / "mean.npy")
    assert mean.shape == (40, 40, 3) and mean.dtype == np.float64
    assert np.allclose(mean, expected, atol=1e-9)
    # shards hold every good image with its label, in file order
    images, labels = shards.load_split(out, "train")
    assert len(images) == len(good) and images.dtype == np.uint8
    assert labels.tolist() == [l for p, l in zip(split.paths, split.labels) if p.name not in planted]
    assert np.array_equal(images[0], center_crop(good[0], 40))
    val_images, val_labels = shards.load_split(out, "val")
    assert val_labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert json.loads((out / "classes.json").read_text())["wnids"] == WNIDS


def test_interrupted_run_resumes_to_identical_output(tmp_path):
    make_imagenet(tmp_path / "in")
    whole, part = tmp_path / "whole", tmp_path / "part"
    prepare(settings(), tmp_path / "in", whole, progress=False)
    # a run that died after some shards: only shards 0 and 2 of 5 train shards written, nothing finalized
    first = prepare(settings(shard_count=3, shard_index=0), tmp_path / "in", part, progress=False)
    assert first["complete"] is False
    done_before = {p.name: p.stat().st_mtime_ns for p in part.glob("*.tar")}
    final = prepare(settings(), tmp_path / "in", part, progress=False)
    assert final["train"]["written"] == 17
    assert digest(part) == digest(whole)
    for name, mtime in done_before.items():  # finished shards were not redone
        assert (part / name).stat().st_mtime_ns == mtime


def test_changed_settings_redo_shards(tmp_path):
    make_imagenet(tmp_path / "in", bad=False)
    out = tmp_path / "out"
    prepare(settings(), tmp_path / "in", out, progress=False)
    prepare(settings(size=32), tmp_path / "in", out, progress=False)
    images, _ = shards.load_split(out, "train")
    assert images.shape[1:] == (32, 32, 3)
    assert np.load(out / "mean.npy").shape == (32, 32, 3)


def test_two_workers_equal_one(tmp_path):
    import torch

    make_imagenet(tmp_path / "in")
    # the parent has run multi-threaded torch ops before forking: helpers must not hang at their first op
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.randn(512, 512) @ torch.randn(512, 512)
    torch.set_num_threads(threads)
    prepare(settings(workers=1), tmp_path / "in", tmp_path / "a", progress=False)
    prepare(settings(workers=2), tmp_path / "in", tmp_path / "b", progress=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_jpg_encoding_is_close(tmp_path):
    make_imagenet(tmp_path / "in", bad=False)
    prepare(settings(encoding="jpg"), tmp_path / "in", tmp_path / "j", progress=False)
    prepare(settings(), tmp_path / "in", tmp_path / "n", progress=False)
    a, _ = shards.load_split(tmp_path / "j", "train")
    b, _ = shards.load_split(tmp_path / "n", "train")
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3


@pytest.mark.parametrize("damage,message", [
    (lambda r: __import__("shutil").rmtree(r / "train"), "train"),
    (lambda r: [p.unlink() for p in (r / "train" / WNIDS[1]).iterdir()], "empty class folder"),
    (lambda r: (r / "LOC_val_solution.csv").unlink(), "LOC_val_solution.csv"),
])
def test_layout_errors_name_what_is_wrong(tmp_path, damage, message):
    make_imagenet(tmp_path / "in", bad=False)
    damage(tmp_path / "in")
    with pytest.raises(imagenet.DatasetError, match=message):
        prepare(settings(), tmp_path / "in", tmp_path / "out", progress=False)


def test_val_label_forms_agree(tmp_path):
    make_imagenet(tmp_path / "in", bad=False)
    root = tmp_path / "in"
    flat = imagenet.val_split(root)
    # devkit form: IDs index a synset order that is not sorted wnid order
    order = [WNIDS[2], WNIDS[0], WNIDS[1]]
    data = root / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    (data / "synsets.txt").write_text("".join(f"{i} {w}\n" for i, w in enumerate(order, 1)))
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{order.index(WNIDS[l]) + 1}\n" for l in flat.labels))
    (root / "LOC_val_solution.csv").unlink()
    assert imagenet.val_split(root).labels == flat.labels
    # class-folder form (after valprep.sh)
    for p, l in zip(flat.paths, flat.labels):
        (root / "val" / WNIDS[l]).mkdir(exist_ok=True)
        p.rename(root / "val" / WNIDS[l] / p.name)
    assert imagenet.val_split(root).labels == flat.labels


def test_shards_are_the_bytes_webdataset_writes(tmp_path):
    """A shard equals what webdataset's own TarWriter writes for the same samples, and its reader reads it."""
    import webdataset as wds

    rng = np.random.default_rng(0)
    samples = []
    for n in range(3):
        ext, data = shards.encode(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "npy")
        samples.append({"__key__": f"train_{n:08d}", ext: data, "cls": str(n).encode(), "json": b'{"path": "x"}'})
    shards.write_shard(tmp_path / "ours.tar", samples)
    with wds.TarWriter(str(tmp_path / "wds.tar"), mtime=0) as sink:
        for sample in samples:
            sink.write(sample)
    assert (tmp_path / "ours.tar").read_bytes() == (tmp_path / "wds.tar").read_bytes()
    read = list(wds.WebDataset(str(tmp_path / "ours.tar"), shardshuffle=False, empty_check=False))
    assert [s["__key__"] for s in read] == [s["__key__"] for s in samples]
    assert all(r["npy"] == s["npy"] and r["cls"] == s["cls"] for r, s in zip(read, samples))


@pytest.mark.parametrize("array", [np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3), np.ones((3, 2), np.float32),
                                   np.asfortranarray(np.arange(12.0).reshape(3, 4))])
def test_decode_npy_equals_np_load(array):
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    for _ in range(2):  # the second call takes the cached header
        out = shards.decode_npy(buf.getvalue())
        ref = np.load(io.BytesIO(buf.getvalue()))
        assert out.dtype == ref.dtype and out.shape == ref.shape and np.array_equal(out, ref)


def test_a_failing_worker_stops_the_run_with_its_error(tmp_path, monkeypatch):
    import zfnet.data.prepare as prep

    make_imagenet(tmp_path / "in", bad=False)
    real = prep.run_shard

    def flaky(job):
        if job.split == "train" and job.index == 2:
            raise MemoryError("boom in shard 2")
        return real(job)

    monkeypatch.setattr(prep, "run_shard", flaky)  # forked helpers inherit it
    with pytest.raises((MemoryError, RuntimeError), match="boom in shard 2"):
        prepare(settings(workers=2), tmp_path / "in", tmp_path / "out", progress=False)
    monkeypatch.setattr(prep, "run_shard", real)
    stats = prepare(settings(workers=2), tmp_path / "in", tmp_path / "out", progress=False)  # resumes
    assert stats["train"]["written"] == 15


def test_directories_and_broken_symlinks_are_seen_and_rejected(tmp_path):
    """Entries named like images that are not readable files count as seen and land in rejected.csv."""
    root = tmp_path / "in"
    make_imagenet(root, bad=False)
    train0, val = root / "train" / WNIDS[0], root / "val"
    (train0 / "x.JPEG").mkdir()
    (train0 / "gone.JPEG").symlink_to(tmp_path / "nowhere.JPEG")
    # val (flat, LOC_val_solution.csv): labelled entries that are a directory and a dangling symlink
    (val / "ILSVRC2012_val_00000098.JPEG").mkdir()
    (val / "ILSVRC2012_val_00000099.JPEG").symlink_to(tmp_path / "nowhere.JPEG")
    with (root / "LOC_val_solution.csv").open("a", newline="") as fh:
        csv.writer(fh).writerows([("ILSVRC2012_val_00000098", f"{WNIDS[1]} 1 1 5 5"),
                                  ("ILSVRC2012_val_00000099", f"{WNIDS[2]} 1 1 5 5")])
    stats = prepare(settings(), root, tmp_path / "out", progress=False)
    on_disk = {"train": sum(1 for w in WNIDS for _ in (root / "train" / w).iterdir()), "val": len(list(val.iterdir()))}
    for split in ("train", "val"):
        s = stats[split]
        assert s["seen"] == on_disk[split] == s["written"] + s["rejected"], (split, s)
    assert stats["train"]["rejected"] == stats["val"]["rejected"] == 2
    with (tmp_path / "out" / "rejected.csv").open() as fh:
        rejected = {(r["split"], r["path"].rsplit("/", 1)[1]): r["reason"] for r in csv.DictReader(fh)}
    assert rejected == {("train", "x.JPEG"): "not a file", ("train", "gone.JPEG"): "broken symlink",
                        ("val", "ILSVRC2012_val_00000098.JPEG"): "not a file",
                        ("val", "ILSVRC2012_val_00000099.JPEG"): "broken symlink"}


@pytest.mark.parametrize("failure", ["enospc", "short write"])
def test_a_full_disk_names_the_shard_and_the_free_space(tmp_path, monkeypatch, failure):
    import errno

    import zfnet.data.prepare as prep
    from zfnet.io import atomic_path

    make_imagenet(tmp_path / "in", bad=False)
    out = tmp_path / "out"

    def full(path, samples):  # the disk fills halfway through the shard's temp file
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"x" * 1000)
            if failure == "enospc":
                raise OSError(errno.ENOSPC, "No space left on device")
            raise OSError("196608 requested and 50672 written")  # Python's buffered writer, no errno

    monkeypatch.setattr(prep.shards, "write_shard", full)
    with pytest.raises(OSError) as err:
        prepare(settings(), tmp_path / "in", out, progress=False)
    assert err.value.errno == errno.ENOSPC
    message = str(err.value)
    assert "disk full while writing" in message and str(out / "train-000000.tar") in message
    assert " bytes free on /" in message
    assert [p.name for p in out.iterdir()] == []  # no temp file, nothing that looks like a shard


def test_fast_decode_is_a_shard_setting(tmp_path):
    """Shards made with reduced-scale decoding are not the exact ones: switching the setting redoes them."""
    make_imagenet(tmp_path / "in", bad=False)
    out = tmp_path / "out"
    prepare(settings(), tmp_path / "in", out, progress=False)
    assert json.loads((out / "train-000000.json").read_text())["settings"]["fast_decode"] is False
    before = (out / "train-000000.tar").stat()
    before = (before.st_ino, before.st_mtime_ns)
    prepare(settings(fast_decode=True), tmp_path / "in", out, progress=False)
    assert json.loads((out / "train-000000.json").read_text())["settings"]["fast_decode"] is True
    after = (out / "train-000000.tar").stat()
    assert (after.st_ino, after.st_mtime_ns) != before
