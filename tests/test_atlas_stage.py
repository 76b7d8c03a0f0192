"""The atlas stage (issue 28) on tiny setups: our model on prepared validation shards with two checkpoints and
a dissection of it, and torchvision resnet18 / vgg16 at 64 px on an image folder. The folder holds every file
its data names; the records equal an independent recomputation (plain forward hooks and torch ops, the
autograd deconvnet); the W&B run holds a table per layer with its images and the atlas artifact, with the
model as its input; a model of one's own without ``atlas.layers`` fails naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from helpers import offline_records, photo_folder, tv_model, user_model_config
from test_prepare import make_imagenet, settings
from zfnet.analysis.deconvnet import project
from zfnet.data.prepare import prepare
from zfnet.models import build
from zfnet.models.weights import export_model

pytestmark = pytest.mark.usefixtures("one_thread")

CROP = 64
BUDGETS = {"synthesis": {"units_per_layer": 2, "steps": 2, "size": None},
           "evolution": {"enabled": True, "units_per_layer": 2}, "ablation": {"images": 6, "units_per_layer": 3}}


def layer_outputs(model, x, layers):
    """Each layer's output on ``x`` by plain forward hooks (the reference)."""
    mods = dict(model.named_modules())
    outs, handles = {}, []
    for name in layers:
        handles.append(mods[name].register_forward_hook(lambda _m, _i, o, n=name: outs.setdefault(n, o.detach().clone())))
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    return outs


def proj_tile(p: torch.Tensor) -> np.ndarray:
    """A projection as the atlas shows it: 0 at grey, +-max|p| at the ends (the reference's own words)."""
    m = float(p.abs().max())
    if m == 0:
        return np.full((*p.shape[1:], 3), 128, np.uint8)
    return np.clip(np.rint((0.5 + 0.5 * p.numpy() / m) * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def tile(png: Path, j: int, windows, ncol: int) -> np.ndarray:
    """Tile ``j`` (row-major) of a grid PNG: tiles of the windows' sizes, each enlarged by an integer factor to
    at least 48 px on its long side, in cells of the largest, 2 px apart; shrunk back."""
    a = np.asarray(Image.open(png).convert("RGB"))
    sizes = [(b - t, r - l) for t, l, b, r in windows]
    f = [max(1, int(np.ceil(48 / max(h, w)))) for h, w in sizes]
    cell_h, cell_w = max(h * k for (h, _), k in zip(sizes, f)), max(w * k for (_, w), k in zip(sizes, f))
    (h, w), k = sizes[j], f[j]
    y, x = 2 + (j // ncol) * (cell_h + 2), 2 + (j % ncol) * (cell_w + 2)
    return a[y + k // 2:y + h * k:k, x + k // 2:x + w * k:k]  # each enlarged pixel's centre (JPEG rings at edges)


def deconv_tiles_checked(atlas: Path, model, x, layer: str, frames: str, maps: int = 4) -> int:
    """Compare the deconv grids' tiles of the first ``maps`` maps of ``layer`` with the autograd deconvnet
    (full frame) of each unit cut to the window its record names: the whole image (``frames="full"``), or the
    unit's receptive field inside the image (``"rf"``: the fast engine's frames; checked against
    ``receptive_field`` where it lies inside the image). Returns the tiles compared."""
    from zfnet.analysis.topk import receptive_field

    size, checked = x.shape[-1], 0
    for r in json.loads((atlas / "data" / f"{layer}.json").read_text())["units"][:maps]:
        ncol = int(np.ceil(np.sqrt(len(r["top"]))))
        windows = [t["window"] for t in r["top"]]
        for j, t in enumerate(r["top"]):
            top, left, bottom, right = t["window"]
            if frames == "full":
                assert t["window"] == [0, 0, size, size]
            else:
                rf = receptive_field(model, layer, t["y"], t["x"], size)
                inside = rf[0] > 0 and rf[1] > 0 and rf[2] < size and rf[3] < size
                assert not inside or t["window"] == list(rf), (t["window"], rf)
            full = project(model, x[t["image_index"]:t["image_index"] + 1], layer, [r["unit"]], [[t["y"], t["x"]]])[0]
            want = proj_tile(full[:, top:bottom, left:right])
            got = tile(atlas / r["images"]["deconv"], j, windows, ncol)
            # JPEG (quality 90) of noise-like tiles: about 5 grey levels on average, correlation 0.9 or more; the
            # projection of another unit or image: tens of levels, correlation near 0
            diff = np.abs(got.astype(float) - want.astype(float))
            assert diff.mean() <= 8, (layer, r["unit"], j, diff.mean())
            if want.std() > 10:
                corr = np.corrcoef(got.ravel(), want.ravel())[0, 1]
                assert corr >= 0.8, (layer, r["unit"], j, corr)
            checked += 1
    return checked


def files_named(atlas: Path) -> list[Path]:
    meta = json.loads((atlas / "data" / "atlas.json").read_text())
    named = [atlas / layer["file"] for layer in meta["layers"]]
    for layer in meta["layers"]:
        for r in json.loads((atlas / layer["file"]).read_text())["units"]:
            named += [atlas / p for p in r["images"].values() if p]
    return named


def wandb_run(root: Path):
    (log,) = sorted(root.glob("wandb/offline-run-*/run-*.wandb"))
    records = offline_records(log)
    history = {".".join(i.nested_key) or i.key: json.loads(i.value_json)
               for r in records if r.WhichOneof("record_type") == "history" for i in r.history.item}
    return log.parent, records, history


# ------------------------------------------------------------------------------------------- our model
@pytest.fixture
def ours(tiny_cfg, tmp_path, monkeypatch):
    make_imagenet(tmp_path / "in", per_class=2, val_per_class=5, bad=False)  # 3 classes, 15 validation images
    prepare(settings(size=72), tmp_path / "in", tmp_path / "prepared", progress=False)
    torch.manual_seed(0)
    ckpts = [build("zfnet", 3, width=0.125, input_size=CROP, init="kaiming") for _ in range(2)]
    for epoch, m in zip((1, 2), ckpts):
        export_model(m, tmp_path / "models" / f"epoch={epoch}.ckpt")
    export_model(ckpts[-1], tmp_path / "models" / "model.pt")
    cfg = tiny_cfg  # W&B's artifact staging in tmp_path, not the home folder
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    cfg.prepare.out_dir = str(tmp_path / "prepared")
    cfg.visualize.checkpoint = str(tmp_path / "models" / "model.pt")
    cfg.visualize.checkpoints_dir = str(tmp_path / "models")
    cfg.dissect.checkpoint = cfg.visualize.checkpoint
    cfg.atlas = OmegaConf.merge(cfg.atlas, {"out_dir": str(tmp_path / "atlas"), "batch_size": 4, **BUDGETS})
    # the dissect stage's per-unit output for this model (its values are the test's: the atlas only carries them)
    units = Path(cfg.dissect.figures_dir) / "units.csv"
    units.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{layer},{u},concept{u % 3},color,{u / 1000:.4f},False,0.1"
            for layer, n in zip(("conv1", "conv2", "conv3", "conv4", "conv5"), (12, 32, 48, 48, 32)) for u in range(n)]
    units.write_text("layer,unit,label,category,iou,detector,threshold\n" + "\n".join(rows) + "\n")
    # the report's figures that show some units: Fig. 2 (conv2's maps 1 and 5) and a dissection figure
    fig2 = Path(cfg.visualize.out_dir) / "deconv"
    fig2.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(fig2 / "conv2.png")
    (fig2 / "index.json").write_text(json.dumps({"conv2": {"png": "conv2.png", "maps": [
        {"channel": 1, "units": []}, {"channel": 5, "units": []}]}}))
    Image.new("RGB", (4, 4)).save(units.parent / "units_conv5.png")
    (units.parent / "top_units.json").write_text(json.dumps({"model": "zfnet", "units": [
        {"layer": "conv5", "unit": 0, "label": "concept0", "category": "color", "iou": 0.0, "figure": "units_conv5.png"}]}))
    return cfg, ckpts[-1]


def test_atlas_of_our_model_matches_an_independent_recomputation(ours, tmp_path):
    from zfnet.stages.atlas import run
    from zfnet.stages.visualize.stream import ValidationStream

    cfg, model = ours
    result = run(cfg)
    atlas = tmp_path / "atlas"
    assert result["layers"] == {"conv1": 12, "conv2": 32, "conv3": 48, "conv4": 48, "conv5": 32}
    named = files_named(atlas)
    assert all(p.is_file() for p in named), [str(p) for p in named if not p.is_file()]
    assert (atlas / "index.html").is_file()
    meta = json.loads((atlas / "data" / "atlas.json").read_text())
    assert meta["images"] == 15 and meta["k"] == 9 and meta["report"] == "../index.html"
    assert set(meta["coverage"]) >= {"projections", "synthesis", "evolution", "ablation", "dissection"}
    assert "first 2 maps" in meta["coverage"]["synthesis"] and "first 3 maps" in meta["coverage"]["ablation"]

    # links to the report's figures where a unit appears, relative to the atlas folder
    conv2 = json.loads((atlas / "data" / "conv2.json").read_text())["units"]
    assert [u["report_links"] for u in conv2[:3]] == [
        [], [{"label": "Fig. 2, conv2 row 1", "href": "../reports/figures/deconv/conv2.png"}], []]
    assert conv2[5]["report_links"][0]["label"] == "Fig. 2, conv2 row 2"
    conv5 = json.loads((atlas / "data" / "conv5.json").read_text())["units"]
    assert [link["href"] for link in conv5[0]["report_links"]] == ["../reports/dissection/units_conv5.png"]
    assert all((atlas / link["href"]).is_file() for u in conv2 + conv5 for link in u["report_links"])

    # the reference: every validation image stacked, each layer's output by a plain hook
    x, labels = next(iter(ValidationStream(tmp_path / "prepared", CROP, None, 100)))[:2]
    names = json.loads((tmp_path / "prepared" / "classes.json").read_text())["names"]
    acts = layer_outputs(model, x, ["conv1", "conv2", "conv5"])
    for layer in ("conv2", "conv5"):
        a = acts[layer]
        recs = json.loads((atlas / "data" / f"{layer}.json").read_text())["units"]
        assert [r["unit"] for r in recs] == list(range(a.shape[1]))
        per_image = a.amax((2, 3))  # (N, C)
        for c in (0, 1, a.shape[1] - 1):
            r = recs[c]
            ref = sorted(range(len(x)), key=lambda n: (-float(per_image[n, c]), n))[:9]
            assert [t["image_index"] for t in r["top"]] == ref
            assert [t["class"] for t in r["top"]] == [names[int(labels[n])] for n in ref]
            assert r["max"] == pytest.approx(float(a[:, c].max()), rel=1e-5)
            assert r["mean"] == pytest.approx(float(a[:, c].mean()), rel=1e-4, abs=1e-6)
            assert r["fire_rate"] == pytest.approx(float((a[:, c] > 0).float().mean()), abs=1e-6)
            assert r["concept"] == f"concept{c % 3}" and r["iou"] == pytest.approx(c / 1000)
            # within the budgets: the first maps; beyond them, null
            for kind, n in (("synthesis", 2), ("evolution", 2)):
                assert (r["images"][kind] is not None) == (c < n)
            assert (r["ablation"] is not None) == (c < 3)
    # a deconv grid's tile j is the map's j-th strongest unit projected (receptive-field frames: our model is
    # a plain chain), normalized on its own
    assert sum(deconv_tiles_checked(atlas, model, x, layer, "rf") for layer in ("conv1", "conv5")) == 2 * 4 * 9
    # ablation: conv1 map 0 zeroed, the accuracy on the first 6 images recomputed
    rec = json.loads((atlas / "data" / "conv1.json").read_text())["units"][0]
    h = model.conv1.register_forward_hook(lambda _m, _i, o: o * torch.tensor([0.0] + [1.0] * (o.shape[1] - 1))[:, None, None])
    with torch.no_grad():
        ablated = float((model(x[:6]).argmax(1) == labels[:6]).float().mean())
    h.remove()
    with torch.no_grad():
        base = float((model(x[:6]).argmax(1) == labels[:6]).float().mean())
    assert rec["ablation"] == pytest.approx(base - ablated, abs=1e-6)

    # W&B: a table per layer (unit, its pictures as images, concept, IoU, statistics), the atlas artifact
    # with the train stage's model artifact as its input
    run_dir, records, history = wandb_run(tmp_path)
    wrun = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert wrun.job_type == "atlas"
    for layer, n in result["layers"].items():
        assert history[f"atlas/{layer}._type"] == "table-file"
        table = json.loads((run_dir / "files" / history[f"atlas/{layer}.path"]).read_text())
        assert table["columns"][:5] == ["unit", "deconv", "patches", "concept", "iou"]
        assert len(table["data"]) == n and {row[1] for row in table["data"]} == {"Image"}
    arts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    # each table's images travel in its run_table artifact: a deconv grid and a patches grid per unit
    for layer, n in result["layers"].items():
        (tab,) = [a for a in arts if a.type == "run_table" and f"atlas{layer}" in a.name]
        pngs = [e.path for e in tab.manifest.contents if e.path.startswith("media/images/")]
        assert len(pngs) == 2 * n and {p.rsplit("_", 1)[1] for p in pngs} == {"deconv.jpg", "patches.jpg"}
    assert {(a.type, a.use_after_commit) for a in arts} >= {("atlas", False), ("model", True)}
    assert any(a.name == "model-zfnet" for a in arts)

    # a rerun writes the same bytes
    before = {p: p.read_bytes() for p in sorted(atlas.rglob("*")) if p.is_file()}
    run(cfg)
    assert {p: p.read_bytes() for p in sorted(atlas.rglob("*")) if p.is_file()} == before


# ---------------------------------------------------------------------------------- torchvision models
@pytest.mark.parametrize("arch, layer, frames", [("resnet18", "layer1", "full"), ("vgg16", "features.3", "rf")])
def test_atlas_of_a_torchvision_model_on_an_image_folder(tmp_path, monkeypatch, arch, layer, frames):
    from zfnet.stages.atlas import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    photo_folder(tmp_path, 3, (70, 80))
    model = tv_model(arch, num_classes=2)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    cfg = user_model_config(tmp_path, 72, CROP, weights=str(tmp_path / "w.pt"), model=f"torchvision:{arch}",
                            synthesis={"lr": 0.08, "l2": 1e-3, "tv": 1e-3, "jitter": 2, "rotate": 0.0, "blur_every": 0,
                                       "param": "fft", "seed": 0, "threads": 1})
    cfg.atlas = {"layers": [layer], "images": "all", "k": 4, "batch_size": 4, "max_units": 64,
                 "out_dir": str(tmp_path / "atlas"), **BUDGETS}
    result = run(cfg)
    atlas = tmp_path / "atlas"
    named = files_named(atlas)
    assert all(p.is_file() for p in named)
    meta = json.loads((atlas / "data" / "atlas.json").read_text())
    assert meta["model"]["arch"].endswith(arch) and meta["images"] == 6 and meta["k"] == 4
    assert "not computed" in meta["coverage"]["evolution"] and "not computed" in meta["coverage"]["dissection"]
    recs = json.loads((atlas / "data" / f"{layer}.json").read_text())["units"]
    from zfnet.stages.visualize.stream import FolderStream

    x, labels, _ = next(iter(FolderStream(cfg, str(tmp_path / "photos"), None, 100)))
    a = layer_outputs(model, x, [layer])[layer]
    assert len(recs) == a.shape[1] == result["layers"][layer]
    for c in (0, 5):
        r = recs[c]
        per_image = a[:, c].amax((1, 2))
        assert [t["image_index"] for t in r["top"]] == sorted(range(len(x)), key=lambda n: (-float(per_image[n]), n))[:4]
        assert r["top_class"] in ("cat", "dog") and r["iou"] is None and r["images"]["evolution"] is None
    # resnet18 is not a plain chain: full-frame projections; vgg16 is: receptive-field frames
    assert deconv_tiles_checked(atlas, model, x, layer, frames, maps=2) == 2 * 4
    _, records, history = wandb_run(tmp_path)
    assert history[f"atlas/{layer}._type"] == "table-file"
    arts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    # the atlas (W&B keeps each table as a run_table artifact too); no model artifact of ours: a user's model
    assert [a.type for a in arts if a.type != "run_table"] == ["atlas"]


def test_a_model_of_ones_own_without_atlas_layers_fails_naming_the_key(tmp_path, monkeypatch):
    from zfnet.stages.atlas import run

    monkeypatch.chdir(tmp_path)
    photo_folder(tmp_path, 1, (70, 80))
    cfg = user_model_config(tmp_path, 72, CROP, weights=None)
    cfg.atlas = {"layers": None, "images": "all", "k": 4, "batch_size": 4, "max_units": 64,
                 "out_dir": str(tmp_path / "atlas"), **BUDGETS}
    with pytest.raises(ValueError, match=r"atlas\.layers.*torchvision:resnet18.*atlas\.layers=\["):
        run(cfg)
    assert not (tmp_path / "atlas").exists()


@pytest.mark.parametrize("key, value", [("atlas.k", 0), ("atlas.images", 0), ("atlas.max_units", 0),
                                        ("atlas.synthesis.steps", 0), ("atlas.ablation.units_per_layer", -1),
                                        ("atlas.evolution.enabled", "yes")])
def test_bad_atlas_values_fail_naming_the_key(tiny_cfg, key, value):
    from zfnet.schema import ConfigError
    from zfnet.stages.atlas import run

    OmegaConf.update(tiny_cfg, key, value)
    with pytest.raises(ConfigError, match=rf"{key}={value!r}"):
        run(tiny_cfg)
