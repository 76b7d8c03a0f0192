"""The dissect stage on the tiny profile: a tiny model and probe set; table, plot, figures, metrics and the
W&B run; the counts in the metrics equal those of the table and of the per-unit CSV; bad config fails early;
the report links top units to their Fig. 2 rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers import demo_conf, offline_records
from zfnet.data.demo import broden as demo_broden
from zfnet.data.demo.config import _config
from zfnet.models import build
from zfnet.models.weights import export_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def staged(tiny_cfg):
    """The tiny profile's inputs of the dissect stage, in cwd: probe set, trained-model file, mean image."""
    demo_broden.write(_config(demo_conf(broden=dict(tiny_cfg.demo_data.broden), workers=1)),
                      Path(tiny_cfg.dissect.probe_dir))
    torch.manual_seed(0)
    model = build("zfnet", 3, width=float(tiny_cfg.model.width), input_size=int(tiny_cfg.data.crop))
    export_model(model, tiny_cfg.dissect.checkpoint)
    mean = Path(tiny_cfg.dissect.mean)
    mean.parent.mkdir(parents=True, exist_ok=True)
    np.save(mean, np.full((int(tiny_cfg.data.resize),) * 2 + (3,), 120.0, np.float32))
    return tiny_cfg


def test_stage_writes_table_plot_figures_metrics_and_wandb(staged, tmp_path):
    from zfnet.stages.dissect import run

    cfg = staged
    metrics = run(cfg)
    c = cfg.dissect
    table = pd.read_csv(Path(c.tables_dir) / "dissection.csv")
    units = pd.read_csv(Path(c.figures_dir) / "units.csv", keep_default_na=False)
    assert list(table["layer"]) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    on_disk = json.loads(Path(c.metrics_path).read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert on_disk["images"] == int(cfg.demo_data.broden.images)
    for row in table.to_dict("records"):
        m = on_disk["layers"][row["layer"]]
        assert {k: m[k] for k in row if k != "layer"} == {k: v for k, v in row.items() if k != "layer"}
        # the table's counts, recounted from the per-unit CSV
        u = units[units["layer"] == row["layer"]]
        det = u[u["detector"]]
        assert m["units"] == len(u) and m["detectors"] == len(det)
        assert m["unique_concepts"] == det["label"].nunique()
        for cat in ("color", "object", "part", "texture"):
            assert m[f"unique_{cat}"] == det.loc[det["category"] == cat, "label"].nunique()
    assert on_disk["detectors"] == int(table["detectors"].sum()) == int(units["detector"].sum())
    assert table["units"].tolist() == [12, 32, 48, 48, 32]  # width 0.125 of ZFNet's 96, 256, 384, 384, 256
    # units with a concept have it in their category; best IoU is the max of the per-category IoUs
    lab = units[units["label"] != ""]
    per_category = lab[[f"{c}_iou" for c in ("color", "object", "part", "texture")]].max(1)
    assert (lab["iou"] > 0).all() and (lab["iou"] == per_category).all()
    top = pd.read_csv(Path(c.tables_dir) / "dissection_top_units.csv", keep_default_na=False)
    assert len(top) == 5 * int(c.top_units)
    for layer, g in top.groupby("layer"):
        best = units[units["layer"] == layer]["iou"].nlargest(int(c.top_units))
        assert sorted(g["IoU (%)"]) == sorted((100 * best).round(1))
    figures = Path(c.figures_dir)
    for name in ["detectors.png"] + [f"units_conv{i}.png" for i in range(1, 6)]:
        with Image.open(figures / name) as im:
            assert im.size[0] > 200 and im.size[1] > 150, name
    links = json.loads((figures / "top_units.json").read_text())["units"]
    assert [(u["layer"], u["unit"]) for u in links] == list(zip(top["layer"], top["unit"]))
    assert Path(c.tables_dir, "dissection.md").read_text().startswith("| layer | units | detectors")
    # W&B: the tables and images of this stage's run
    (log,) = sorted(Path(tmp_path).glob("wandb/offline-run-*/run-*.wandb"))
    records = offline_records(log)
    wrun = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert wrun.job_type == "dissect"
    keys = {".".join(i.nested_key) or i.key for r in records if r.WhichOneof("record_type") == "history"
            for i in r.history.item}
    assert {"dissection._type", "dissection_top_units._type", "dissection/detectors._type",
            "dissection/units_conv5._type"} <= keys


def test_bad_probe_folder_and_values_fail_before_any_work(staged):
    from zfnet.schema import ConfigError
    from zfnet.stages.dissect import run

    cfg = staged
    cfg.dissect.quantile = 1.5
    with pytest.raises(ConfigError, match="dissect.quantile"):
        run(cfg)
    cfg.dissect.quantile = 0.005
    cfg.dissect.probe_dir = "nowhere"
    with pytest.raises(FileNotFoundError, match="dissect.probe_dir: nowhere"):
        run(cfg)
    assert not Path(cfg.dissect.metrics_path).exists()


def test_report_links_top_units_to_their_fig2_rows(tiny_cfg):
    """The dissection page lists the top units, each linked to its row of Fig. 2 where the visualize stage
    shows that map: the notes both writers leave, rendered by the report."""
    from zfnet.figures.dissection import top_units_sections
    from zfnet.figures.notes import write_notes
    from zfnet.report import write_report
    from zfnet.stages.visualize.deconv import fig2_anchors

    figures = Path(tiny_cfg.visualize.out_dir)
    folder = Path(next(f for f in tiny_cfg.report.figure_folders if Path(f).name == "dissection"))
    for png in (figures / "deconv" / "conv5.png", folder / "units_conv5.png"):
        png.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(png)
    write_notes(figures / "deconv", "Fig. 2", anchors=fig2_anchors({"conv5": [7, 3]}))  # conv5's rows: maps 7, 3
    units = [{"layer": "conv5", "unit": 3, "label": "red", "category": "color", "iou": 0.2, "figure": "units_conv5.png"},
             {"layer": "conv5", "unit": 4, "label": "", "category": "", "iou": 0.0, "figure": "units_conv5.png"}]
    write_notes(folder, "Dissection", sections=top_units_sections(units))
    html = (Path(write_report(tiny_cfg)).parent / "pages" / "dissection.html").read_text()
    assert '<a href="../figures/deconv/conv5.png">Fig. 2, conv5 row 2</a>' in html
    assert "<td>red</td><td>color</td><td>0.200</td>" in html
    assert html.count("not among Fig. 2") == 1
