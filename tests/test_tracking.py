"""What the W&B SDK wrote for an offline run, read back from its transaction log and media files."""

import json

import numpy as np
import pandas as pd
from PIL import Image

from zfnet import tracking
from zfnet.tracking import read_records, start_run


def offline_run(tmp_path):
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    logs = list(runs[0].glob("run-*.wandb"))
    assert len(logs) == 1
    return runs[0], list(read_records(logs[0]))


def test_offline_run_holds_config_group_metrics_table_and_image(tiny_cfg, tmp_path):
    picture = np.zeros((6, 9, 3), np.uint8)
    picture[:, :3, 0] = 255
    with start_run(tiny_cfg, "unit") as tracker:
        tracker.log({"loss": 0.25})
        tracker.table("scores", pd.DataFrame({"layer": ["conv5", "fc7"], "delta": [0.07, 0.069]}))
        tracker.image("picture", picture, caption="red stripe")
    run_dir, records = offline_run(tmp_path)
    kinds = [r.WhichOneof("record_type") for r in records]
    assert kinds[0] == "header" and "exit" in kinds

    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.project == "zfnet" and run.job_type == "unit"
    assert run.run_group == tracking.group_name(tiny_cfg)
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert config["profile"] == "tiny" and config["data"]["crop"] == 64

    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            for item in r.history.item:
                history[".".join(item.nested_key) or item.key] = json.loads(item.value_json)
    assert history["loss"] == 0.25
    assert history["scores._type"] == "table-file" and history["picture._type"] == "image-file"

    table = json.loads((run_dir / "files" / history["scores.path"]).read_text())
    assert table["columns"] == ["layer", "delta"] and table["data"] == [["conv5", 0.07], ["fc7", 0.069]]
    png = np.asarray(Image.open(run_dir / "files" / history["picture.path"]).convert("RGB"))
    assert np.array_equal(png, picture)


def test_group_is_shared_by_stages_and_changes_with_params(tiny_cfg):
    other = tiny_cfg.copy()
    other.train.epochs = 99
    assert tracking.group_name(tiny_cfg) == tracking.group_name(tiny_cfg.copy())
    assert tracking.group_name(tiny_cfg) != tracking.group_name(other)
    assert tracking.group_name(tiny_cfg).startswith("tiny-")


def test_wandb_failure_degrades_to_a_no_op_tracker(tiny_cfg, monkeypatch, caplog):
    import wandb

    def broken(**kwargs):
        raise RuntimeError("network is unreachable")

    monkeypatch.setattr(wandb, "init", broken)
    with start_run(tiny_cfg, "unit") as tracker:
        assert tracker.run is None
        tracker.log({"x": 1})
        tracker.image("y", np.zeros((2, 2, 3), np.uint8))
    assert "W&B could not start" in caplog.text


def test_disabled_mode_logs_nothing(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with start_run(tiny_cfg, "unit") as tracker:
        tracker.log({"x": 1})
    assert not list((tmp_path / "wandb").glob("offline-run-*"))
