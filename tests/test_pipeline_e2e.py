"""End to end: `dvc repro` of the whole pipeline on the tiny profile, in a temporary copy of the repo."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from zfnet.tracking import read_records

pytestmark = pytest.mark.slow
STAGES = ["demo_data", "prepare", "train", "train_noclip", "ablate@zfnet", "ablate@alexnet_no_3_4_6_7", "table3",
          "visualize", "report"]
JOB_TYPES = ["demo_data", "prepare", "train", "ablation", "table3", "visualize", "report"]


def sh(args, cwd, env):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e") / "repo"
    # tracked files as they are in the working tree (untracked files may be outputs of a local run)
    files = subprocess.run(["git", "ls-files", "--cached", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / rel)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "WANDB_MODE": "offline", "WANDB_DIR": str(work), "DVC_NO_ANALYTICS": "1"}
    env.pop("WANDB_SILENT", None)
    sh([sys.executable, "-m", "zfnet.config", "--out", str(work / "params.yaml"), "profile=tiny"], work, env)
    sh(["git", "init", "-q"], work, env)
    sh(["git", "add", "-A"], work, env)
    sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "tiny"], work, env)
    first = sh(["dvc", "repro"], work, env)
    second = sh(["dvc", "repro"], work, env)
    status = sh(["dvc", "status"], work, env)
    return work, first, second, status


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
    assert stats["train"]["seen"] == stats["train"]["written"] + stats["train"]["rejected"] == 3 * 8
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
    for fig in json.loads((work / "reports/figures/index.json").read_text()).values():
        for path in fig:
            assert (work / path).stat().st_size > 0
            assert os.path.relpath(work / path, work / "reports") in html
    assert "38.4" in html  # the paper's Table 2 number beside ours
    figures = json.loads((work / "reports/figures/index.json").read_text())
    for group in ("filters", "training", "deconv", "evolution", "occlusion", "invariance", "correspondence", "fig6"):
        assert figures.get(group), group
    assert len([p for p in figures["fig6"] if "filters_" in p]) == 3  # alexnet, zfnet, zfnet without clipping
    boxes = json.loads((work / "reports/figures/occlusion/boxes.json").read_text())
    assert boxes and all(len(b["box"]) == 4 and isinstance(b["inside_box"], bool) for b in boxes)
    table1 = (work / "reports/tables/table1_correspondence.md").read_text()
    assert "Right eye" in table1 and "0.067" in table1


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


def test_changing_one_variant_reruns_only_that_variant(pipeline_run):
    work, *_ = pipeline_run
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "WANDB_MODE": "disabled",
           "DVC_NO_ANALYTICS": "1"}
    params = work / "params.yaml"
    text = params.read_text()
    assert "    row: Removed layer 7\n" in text
    params.write_text(text.replace("    row: Removed layer 7\n", "    row: Removed layer 7 (renamed)\n"))
    out = sh(["dvc", "repro"], work, env)
    ran = sorted(line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage"))
    assert ran == ["ablate@alexnet_no_7", "report", "table3"], ran
