"""A real two-process DDP run on CPU (gloo) through the train entry point: its synchronized metrics equal
a single-process run of the same model on the same data."""

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO
from test_prepare import make_imagenet, settings
from zfnet.data.prepare import prepare

pytestmark = pytest.mark.slow


def run_train(tmp_path, name, prepared, *extra):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, str(REPO / "pipelines" / "train.py"), "profile=tiny", f"hydra.run.dir={tmp_path / name / 'hydra'}",
            f"prepare.out_dir={prepared}", f"train.out_dir={tmp_path / name / 'models'}",
            f"train.metrics_path={tmp_path / name / 'train.json'}", f"train.history_path={tmp_path / name / 'history.csv'}",
            "train.epochs=1", "train.checkpoint_epochs=[1]", "train.batch_size=6",
            "train.lr=0.0",  # weights stay at their (seeded, identical) initialisation: metrics must match exactly
            "trainer.threads=1",  # per rank: 2 ranks on 2 cores
            *extra]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((tmp_path / name / "train.json").read_text()), proc.stdout + proc.stderr


def test_two_process_ddp_metrics_equal_single_process(tmp_path):
    make_imagenet(tmp_path / "in", per_class=4, val_per_class=4, bad=False)  # 12 val images: divisible by 2
    prepare(settings(size=72), tmp_path / "in", tmp_path / "prepared", progress=False)
    single, _ = run_train(tmp_path, "single", tmp_path / "prepared")
    ddp, log = run_train(tmp_path, "ddp", tmp_path / "prepared", "trainer.devices=2", "trainer.strategy=ddp")
    assert "distributed_backend=gloo" in log and "All distributed processes registered" in log
    assert ddp["run"]["world_size"] == 2 and single["run"]["world_size"] == 1  # each metrics file says how it ran
    assert ddp["run"]["threads"] == single["run"]["threads"] == 1 and ddp["run"]["launcher"] == "python"
    for key in ("val_top1_error", "val_top5_error", "val_10crop_top1_error", "val_10crop_top5_error"):
        assert ddp[key] == pytest.approx(single[key], abs=1e-6), key
