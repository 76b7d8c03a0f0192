"""End to end: `dvc repro` of the whole pipeline on the tiny profile, in a temporary copy of the repo."""

import csv
import json
import math
import os
import re
import shutil
from html import unescape
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers import figure_index, offline_records, pipeline_env, read_records, sh
from zfnet.transfer.datasets import VOC_CLASSES

pytestmark = pytest.mark.slow
STAGES = ["demo_data", "overlap", "prepare", "train", "train_noclip", "ablate@zfnet", "ablate@alexnet_no_3_4_6_7",
          "table3", "transfer", "visualize_deconv", "visualize_synthesis", "visualize_occlusion",
          "visualize_invariance", "visualize_correspondence", "visualize_fig6", "claims", "dissect", "atlas", "finetune@fc",
          "finetune@scratch", "finetune_table", "report"]
JOB_TYPES = ["demo_data", "overlap", "prepare", "train", "ablation", "table3", "transfer", "visualize", "claims",
             "dissect", "atlas", "finetune", "summary"]


@pytest.fixture(scope="module")
def pipeline_run(tiny_pipeline):
    return tiny_pipeline.work, tiny_pipeline.first, tiny_pipeline.second, tiny_pipeline.status


def test_every_stage_ran_and_reran_nothing(pipeline_run):
    work, first, second, status = pipeline_run
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first
        assert f"Running stage '{stage}'" not in second
    assert "Data and pipelines are up to date" in status


def test_outputs(pipeline_run):
    work = pipeline_run[0]
    summary = json.loads((work / "data/demo/summary.json").read_text())
    stats = json.loads((work / "data/prepared/stats.json").read_text())
    removed = (work / "data/overlap/removed.txt").read_text().split()  # the planted duplicates (overlap.remove)
    assert len(removed) == 2
    assert stats["train"]["seen"] == stats["train"]["written"] + stats["train"]["rejected"] == 3 * 8 - len(removed)
    assert stats["val"]["written"] == 3 * 4 and summary
    metrics = json.loads((work / "metrics/train.json").read_text())
    assert metrics["epochs"] == 2 and metrics["num_classes"] == 3
    assert 0.0 <= metrics["val_top1_error"] <= 1.0
    for epoch in (1, 2):
        assert (work / f"models/zfnet/epoch={epoch:02d}.ckpt").is_file()
    blob = torch.load(work / "models/zfnet/model.pt", weights_only=True)
    assert blob["arch"]["name"] == "zfnet" and blob["arch"]["input_size"] == 64
    assert blob["state_dict"]["conv1.conv.weight"].pow(2).mean((1, 2, 3)).sqrt().max() <= 0.1 + 1e-6
    html = (work / "reports/index.html").read_text()
    pages = {p: p.read_text() for p in (work / "reports/pages").glob("*.html")}
    for fig in figure_index(work / "reports/figures").values():
        for path in fig:
            assert (work / path).stat().st_size > 0
            assert any(quote(os.path.relpath(work / path, page.parent)) in text for page, text in pages.items()), path
    assert "38.4" in html  # the paper's Table 2 number beside ours
    figures = figure_index(work / "reports/figures")
    for group in ("filters", "training", "deconv", "evolution", "occlusion", "invariance", "correspondence", "fig6"):
        assert figures.get(group), group
    assert len([p for p in figures["fig6"] if "filters_" in p]) == 3  # alexnet, zfnet, zfnet without clipping
    boxes = json.loads((work / "reports/figures/occlusion/boxes.json").read_text())
    assert boxes["images"] and all(len(b["box"]) == 4 and isinstance(b["inside"], bool) and 0 <= b["chance"] <= 1
                                   for b in boxes["images"])
    assert boxes["summary"]["out_of"] >= 1 and 0 <= boxes["summary"]["p_value"] <= 1
    table1 = (work / "reports/tables/table1_correspondence.md").read_text()
    assert "Right eye" in table1 and "0.067" in table1
    # the unit atlas: every map of conv1..conv5 (width 0.125), every file its data names, the dissect stage's
    # concepts (it dissected the same model), the explorer's index
    atlas = json.loads((work / "reports/atlas/data/atlas.json").read_text())
    assert [(l["name"], l["units"]) for l in atlas["layers"]] == [("conv1", 12), ("conv2", 32), ("conv3", 48),
                                                                   ("conv4", 48), ("conv5", 32)]
    assert atlas["images"] == 12 and (work / "reports/atlas/index.html").is_file()
    for layer in atlas["layers"]:
        units = json.loads((work / "reports/atlas" / layer["file"]).read_text())["units"]
        # the dissect stage's concept of every unit (none for a unit that overlaps no concept: IoU 0)
        assert len(units) == layer["units"] and all(u["concept"] or u["iou"] == 0 for u in units)
        assert sum(bool(u["concept"]) for u in units) > len(units) // 2
        for u in units:
            assert all((work / "reports/atlas" / p).stat().st_size > 0 for p in u["images"].values() if p)


def test_wandb_runs_one_group_one_job_type_per_stage(pipeline_run):
    work = pipeline_run[0]
    runs = {}
    for log in (work / "wandb").glob("offline-run-*/run-*.wandb"):
        run = next(r.run for r in read_records(log) if r.WhichOneof("record_type") == "run")
        if run.display_name == "zfnet_noclip":
            assert run.job_type == "train"
        elif run.job_type != "ablation":
            runs[run.job_type] = (run.run_group, log)
        else:
            runs.setdefault("ablation", (run.run_group, log))
    assert sorted(runs) == sorted(JOB_TYPES)
    assert len({group for group, _ in runs.values()}) == 1
    ablation_runs = [log for log in (work / "wandb").glob("offline-run-*/run-*.wandb")
                     if next(r.run for r in read_records(log) if r.WhichOneof("record_type") == "run").job_type == "ablation"]
    assert len(ablation_runs) == 12
    history = {}
    for r in read_records(runs["train"][1]):
        if r.WhichOneof("record_type") == "history":
            for item in r.history.item:
                history.setdefault(".".join(item.nested_key) or item.key, []).append(json.loads(item.value_json))
    assert "val/top1_error" in history and len(history["val/top1_error"]) == 2
    assert history["filters/conv1._type"][0] == "image-file"
    media = work / "wandb" / runs["train"][1].parent.name / "files" / history["filters/conv1.path"][-1]
    assert media.stat().st_size > 0


def test_table3_in_report(pipeline_run):
    work = pipeline_run[0]
    import pandas as pd

    frame = pd.read_csv(work / "reports/tables/table3_ablation.csv")
    assert len(frame) == 12 and frame["val top-1 (ours)"].notna().all()
    assert "Table 3: architecture ablations" in (work / "reports/index.html").read_text()


def _cell_matches(text: str, value) -> bool:
    """A CSV cell (as the csv module reads it) against the value W&B stored."""
    if text == "":
        return value is None or (isinstance(value, float) and math.isnan(value))
    try:
        return math.isclose(float(text), float(value), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return text == str(value)


def _summary_run(work: Path):
    found = []
    for log in (work / "wandb").glob("offline-run-*/run-*.wandb"):
        records = offline_records(log)
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        if run.job_type == "summary":
            found.append((log.parent, run, records))
    assert len(found) == 1, [str(f[0]) for f in found]
    return found[0]


def test_summary_run_holds_every_table_and_the_key_figures(pipeline_run):
    """The W&B summary run (report stage) as the SDK wrote it: every CSV in reports/tables as a table with
    the CSV's columns and rows, Table 2 with the paper's numbers, the first figures of every group."""
    work = pipeline_run[0]
    run_dir, run, records = _summary_run(work)
    other = next(r.run for r in read_records(next((work / "wandb").glob("offline-run-*/run-*.wandb")))
                 if r.WhichOneof("record_type") == "run")
    assert run.run_group == other.run_group and run.display_name == "summary"
    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            for item in r.history.item:
                history[".".join(item.nested_key) or item.key] = json.loads(item.value_json)

    csvs = sorted((work / "reports/tables").glob("*.csv"))
    assert {c.stem for c in csvs} >= {"table1_correspondence", "table3_ablation"}
    for path in csvs:
        key = f"tables/{path.stem}"
        assert history[f"{key}._type"] == "table-file", key
        logged = json.loads((run_dir / "files" / history[f"{key}.path"]).read_text())
        with path.open(newline="") as f:
            header, *rows = list(csv.reader(f))
        assert logged["columns"] == header, key
        assert len(logged["data"]) == len(rows), key
        for want, got in zip(rows, logged["data"]):
            assert all(_cell_matches(t, v) for t, v in zip(want, got, strict=True)), (key, want, got)

    # the unit atlas: a table per layer, one row per unit, its pictures as images
    for layer in json.loads((work / "reports/atlas/data/atlas.json").read_text())["layers"]:
        assert history[f"atlas/{layer['name']}._type"] == "table-file", layer
        logged = json.loads((run_dir / "files" / history[f"atlas/{layer['name']}.path"]).read_text())
        assert len(logged["data"]) == layer["units"] and logged["columns"][:3] == ["unit", "deconv", "patches"]

    table2 = json.loads((run_dir / "files" / history["tables/table2_imagenet.path"]).read_text())
    metrics = json.loads((work / "metrics/train.json").read_text())
    ours, paper = (dict(zip(table2["columns"], row)) for row in table2["data"])
    assert ours["val top-1 (%)"] == pytest.approx(100 * metrics["val_top1_error"], abs=0.05)
    assert (paper["val top-1 (%)"], paper["val top-5 (%)"]) == (38.4, 16.5)  # Table 2 of the paper

    figures = figure_index(work / "reports/figures")
    for group, paths in figures.items():
        for path in paths:  # every figure of every group
            key = f"figures/{group}/{Path(path).stem}"
            assert history[f"{key}._type"] == "image-file", key
            logged = np.asarray(Image.open(run_dir / "files" / history[f"{key}.path"]).convert("RGB"))
            assert np.array_equal(logged, np.asarray(Image.open(work / path).convert("RGB"))), key
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update({u.key: json.loads(u.value_json) for u in r.summary.update if u.key})
    assert summary["train/val_top1_error"] == pytest.approx(metrics["val_top1_error"])


def _vega_specs(html: str) -> dict[str, dict]:
    decoder = json.JSONDecoder()
    return {m.group(1): decoder.raw_decode(html, m.end())[0]
            for m in re.finditer(r'<div id = "([^"]+)">\s*<script[^>]*>\s*var spec = ', html)}


def test_dvc_plots_show_renders_training_and_invariance_curves(pipeline_run, tmp_path):
    work = pipeline_run[0]
    env = pipeline_env(work, WANDB_MODE="disabled")
    sh(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], work, env)
    specs = _vega_specs((tmp_path / "plots" / "index.html").read_text())

    def series(plot: str, x: str, y: str) -> tuple[list[float], list[float]]:
        values = [v for v in specs[plot]["data"]["values"] if v.get("field", y) == y]  # one line per y field
        return [float(v[x]) for v in values], [float(v[y]) for v in values]

    history = pd.read_csv(work / "metrics/train_history.csv")
    for column in ("train_top1_error", "val_top1_error", "val_10crop_top1_error"):
        epochs, errors = series("training_curves__top-1_error_", "epoch", column)
        assert epochs == list(history.epoch) and errors == pytest.approx(list(history[column]))
    curves = sorted((work / "metrics/invariance").glob("*.csv"))
    assert {c.stem for c in curves} == {"translate", "scale", "rotate"}
    for path in curves:
        frame = pd.read_csv(path)
        for column in ("distance_conv1", "distance_fc7", "p_true"):
            amounts, values = series(f"invariance_{path.stem}_{column}", "amount", column)
            assert amounts == pytest.approx(list(frame.amount)) and values == pytest.approx(list(frame[column]))


def test_dvc_metrics_and_exp_show_list_the_metrics(pipeline_run):
    work = pipeline_run[0]
    env = pipeline_env(work, WANDB_MODE="disabled")
    metrics = json.loads((work / "metrics/train.json").read_text())
    shown = json.loads(sh(["dvc", "metrics", "show", "--json"], work, env))
    (workspace,) = shown.values()  # keyed by revision; the workspace's key is ""
    assert workspace["data"]["metrics/train.json"]["data"]["val_top1_error"] == metrics["val_top1_error"]
    rows = list(csv.DictReader(sh(["dvc", "exp", "show", "--csv"], work, env).splitlines()))
    workspace = next(r for r in rows if r["rev"] == "workspace")
    assert float(workspace["metrics/train.json:val_top1_error"]) == pytest.approx(metrics["val_top1_error"], abs=1e-5)
    assert "metrics/ablation/zfnet.json:val_top1_error" in workspace


def test_changing_one_variant_reruns_only_that_variant(pipeline_run, tmp_path):
    """A row's label or paper numbers are table3's alone; a row's model retrains that variant only."""
    work = tmp_path / "repo"  # a copy: the shared pipeline run stays as `dvc repro` left it
    shutil.copytree(pipeline_run[0], work, symlinks=True)
    env = pipeline_env(work, WANDB_MODE="disabled")
    params = work / "params.yaml"

    def edit_and_repro(old: str, new: str) -> list[str]:
        text = params.read_text()
        assert old in text
        params.write_text(text.replace(old, new))
        out = sh(["dvc", "repro"], work, env)
        return sorted(line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage"))

    def trained(ran: list[str]) -> list[str]:
        return [s for s in ran if s.startswith("ablate@") or s in ("train", "train_noclip")]

    # (claims and report rerun when the files they read changed bytes; that depends on the tiny run's numbers)
    ran = edit_and_repro("    row: Removed layer 7\n", "    row: Removed layer 7 (renamed)\n")
    assert trained(ran) == [] and "table3" in ran, ran
    removed_7 = "    model:\n      name: alexnet\n      remove:\n      - fc7\n  alexnet_no_6_7:"
    removed_6 = removed_7.replace("- fc7", "- fc6")
    ran = edit_and_repro(removed_7, removed_6)
    assert trained(ran) == ["ablate@alexnet_no_7"] and "table3" in ran, ran


def test_overlap_and_transfer_outputs(pipeline_run):
    """The tiny run's overlap search finds its 2 planted duplicates; Tables 4-7 carry ours beside the paper's."""
    work = pipeline_run[0]
    overlap = json.loads((work / "metrics/overlap.json").read_text())
    assert overlap["vs_ground_truth"]["recall"] == overlap["vs_ground_truth"]["precision"] == 1.0
    tables = {stem: pd.read_csv(work / f"reports/tables/{stem}.csv")
              for stem in ("table4_caltech101", "table5_caltech256", "table6_voc2012", "table7_layers")}
    t4 = tables["table4_caltech101"].set_index(["method", "source"])
    assert t4.loc[("ImageNet-pretrained convnet", "paper"), "30/class"] == "86.5 ± 0.5"
    ours = t4.loc[("ImageNet-pretrained convnet", "ours"), "2/class"]
    mean, std = map(float, ours.split(" ± "))  # 2 folds: mean ± std, both percentages
    assert 0 <= mean <= 100 and std >= 0
    assert list(tables["table6_voc2012"]["class"]) == [*VOC_CLASSES, "mean"]
    assert len(tables["table7_layers"]) == 14  # SVM and softmax on each of layers 1-7
    metrics = json.loads((work / "metrics/transfer.json").read_text())
    assert set(metrics) == {"caltech101", "caltech256", "voc2012"}
    assert "nonpretrained" in metrics["caltech101"] and "pretrained" in metrics["caltech256"]
    assert list((work / "reports/transfer").glob("*.png"))
    html = (work / "reports/index.html").read_text()
    assert "table4_caltech101" in html and "table7_layers" in html


def test_claims_table_gives_every_finding_a_verdict(pipeline_run):
    """Every claim of the paper is in the claims table and metrics, each with a verdict; a 'not measurable'
    always says why; the report shows the table first."""
    work = pipeline_run[0]
    table = list(csv.DictReader((work / "reports/tables/claims.csv").open()))
    metrics = json.loads((work / "metrics/claims.json").read_text())
    assert len(table) >= 9
    assert {row["verdict"] for row in table} <= {"holds", "does not hold", "not measurable"}
    assert all(row["reason"].strip() for row in table if row["verdict"] == "not measurable")
    # findings (each beside its untrained control) and checks of the code, apart; one row each in the table
    assert len(metrics["findings"]) + len(metrics["checks"]) == len(table)
    assert sum(row["kind"] == "check" for row in table) == len(metrics["checks"]) >= 1
    text = unescape((work / "reports/index.html").read_text())  # the page as read, entities decoded
    assert 0 <= text.index("The paper's claims, tested") < text.index("Table 2")
