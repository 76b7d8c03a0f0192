"""The visualize stage split into parts (one DVC stage each): each part run in its own process writes the
same bytes as all parts run together; Fig. 2's rows reach the synthesis part intact and deterministically;
the parts' figure indexes merge into the report's list."""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pytest
import torch
from helpers import photo_folder, user_model_config

from zfnet.figures import index
from zfnet.stages.visualize import fig2_rows
from zfnet.stages.visualize.context import run_parts
from zfnet.stages.visualize.parts import PARTS, run


def test_fig2_rows_round_trip_and_same_bytes_each_time(tmp_path):
    rng = np.random.default_rng(0)
    rows = {"conv1": [[rng.integers(0, 256, (20, 20, 3), dtype=np.uint8) for _ in range(2)] for _ in range(3)],
            "features.4": [[rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(2)]]}
    (tmp_path / "a" / "deconv").mkdir(parents=True)
    (tmp_path / "a" / "deconv" / "index.json").write_text(json.dumps(
        {"conv1": {"maps": [{"channel": 5}, {"channel": 0}, {"channel": 7}]}, "features.4": {"maps": [{"channel": 2}]}}))
    first = fig2_rows.write(tmp_path / "a", rows)
    again = fig2_rows.write(tmp_path / "b", rows)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]  # no timestamp, no file name
    raw = np.load(io.BytesIO(gzip.decompress(first[0].read_bytes())))  # the file as gzip + .npy, read by hand
    assert raw.dtype == np.uint8 and np.array_equal(raw, np.array(rows["conv1"]))
    maps, read = fig2_rows.read(tmp_path / "a")
    assert maps == {"conv1": [5, 0, 7], "features.4": [2]}
    assert all(np.array_equal(read[layer], np.array(rows[layer])) for layer in rows)
    with pytest.raises(FileNotFoundError, match=r"deconv/index.json does not exist.*visualize_deconv"):
        fig2_rows.read(tmp_path / "c")


def test_index_merges_every_part_and_names_a_broken_file(tmp_path):
    index.write(tmp_path, "deconv", {"filters": ["f.png"], "deconv": ["c1.png", "c2.png"]})
    index.write(tmp_path, "occlusion", {"occlusion": ["o.png"]})
    assert index.read(tmp_path) == {"filters": ["f.png"], "deconv": ["c1.png", "c2.png"], "occlusion": ["o.png"]}
    assert index.read(tmp_path / "nothing") == {}
    (tmp_path / "index" / "fig6.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"index/fig6.json: not a visualize part's figure index"):
        index.read(tmp_path)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.usefixtures("one_thread")
def test_each_part_alone_writes_what_all_parts_together_write(tmp_path):
    """What the DVC stages do (a part per process: a fresh context, no stream pass shared) against
    pipelines/visualize.py (all parts on one context), on a user's model and image folder."""
    photo_folder(tmp_path, 2, (40, 44))
    torch.manual_seed(0)
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None, num_classes=2).state_dict(), tmp_path / "w.pt")
    settings = dict(images=4, batch_size=3, deconv={"maps_per_layer": 2, "k": 2},
                    occlusion={"images": 2, "size": 16, "stride": 16}, invariance={"images": 1},
                    weights=str(tmp_path / "w.pt"), layers=["layer1", "layer2"],
                    synthesis={"steps": 1, "inversion_steps": 1, "inversion_images": 1, "classes": "all"})
    together = user_model_config(tmp_path, 36, 32, **settings)
    together.visualize.out_dir = str(tmp_path / "together")
    figures = run(together)
    alone = user_model_config(tmp_path, 36, 32, **settings)
    alone.visualize.out_dir = str(tmp_path / "alone")
    for part in PARTS:
        run_parts(alone, [part])
    assert {"deconv", "synthesis", "occlusion", "invariance"} <= set(figures)
    a, b = _files(tmp_path / "together"), _files(tmp_path / "alone")
    assert sorted(a) == sorted(b) and any(name.startswith("synthesis/") for name in a)
    index_files = {name for name in a if name.startswith("index/")}
    assert index_files == {f"index/{p.NAME}.json" for p in PARTS}
    different = [name for name in a if a[name] != b[name] and name not in index_files]
    assert different == []
    for name in index_files:  # the same figures, under each run's own folder
        assert a[name].decode().replace(together.visualize.out_dir, "X") == b[name].decode().replace(alone.visualize.out_dir, "X")
    for p in PARTS:  # every part's folders exist (DVC's outputs), empty when its figures do not apply here
        assert all((tmp_path / "alone" / folder).is_dir() for folder in p.FOLDERS)
    assert not any((tmp_path / "alone" / "fig6").iterdir())
