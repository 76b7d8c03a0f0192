"""What the W&B SDK wrote for an offline run, read back from its transaction log and media files."""

import json

import numpy as np
import pandas as pd
from PIL import Image

from helpers import offline_records
from zfnet import tracking
from zfnet.tracking import start_run


def offline_run(tmp_path):
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    logs = list(runs[0].glob("run-*.wandb"))
    assert len(logs) == 1
    return runs[0], offline_records(logs[0])  # finish() can return before the log is fully written


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
    quieter = tiny_cfg.copy()
    quieter.wandb.quiet = False
    assert tracking.group_name(tiny_cfg) == tracking.group_name(quieter)  # W&B settings are not params
    assert tracking.group_name(tiny_cfg).startswith("adhoc-tiny-")  # by hand: not a `dvc repro` (test_wandb_runs)


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


# --- W&B without a network ------------------------------------------------------------------------
_ONLINE_STAGE = r"""
import json, sys, time
from omegaconf import OmegaConf
from zfnet.tracking import start_run

cfg = OmegaConf.load(sys.argv[1])
t0 = time.monotonic()
tracker = start_run(cfg, "netless")
started = time.monotonic() - t0
tracker.log({"loss": 0.5})
tracker.finish()
print("RESULT", json.dumps({"started_s": started}), flush=True)
"""


def test_online_without_a_server_falls_back_to_offline_within_the_timeout(tiny_cfg, tmp_path):
    """A loopback server that accepts connections and never answers: the stage's W&B start gives up after
    ``wandb.init_timeout`` (not W&B's 90 s + account look-ups) and the run is logged offline instead."""
    import os
    import socket
    import subprocess
    import sys
    import threading
    import time

    from omegaconf import OmegaConf


    init_timeout = 2
    tiny_cfg.wandb.init_timeout = init_timeout
    cfg_path = tmp_path / "cfg.yaml"
    OmegaConf.save(tiny_cfg, cfg_path)
    script = tmp_path / "stage.py"
    script.write_text(_ONLINE_STAGE)

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    held, stop = [], threading.Event()

    def accept_and_say_nothing():
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_MODE="online",
        WANDB_BASE_URL=f"http://127.0.0.1:{server.getsockname()[1]}",
        WANDB_API_KEY="0123456789abcdef" * 2 + "01234567",  # 40 characters: no login prompt
        WANDB_DIR=str(tmp_path),
        WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
    )
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, str(script), str(cfg_path)], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=init_timeout + 60,
        )
    finally:
        wall = time.monotonic() - t0
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert held, "the stage never tried the (unanswering) server: it did not run online"
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert result, proc.stdout[-3000:]
    started = json.loads(result[0][len("RESULT "):])["started_s"]
    assert started < init_timeout + 10, f"start_run took {started:.1f} s with init_timeout={init_timeout}"
    # the whole stage (imports, start, log, finish, interpreter exit with W&B's teardown) returns too
    assert wall < init_timeout + 15, f"the stage took {wall:.1f} s with init_timeout={init_timeout}"

    warnings = [line for line in proc.stderr.splitlines() if "could not start online" in line]
    assert len(warnings) == 1, proc.stderr[-3000:]
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    assert "netless" in warnings[0] and f"wandb sync {runs[0]}" in warnings[0], warnings[0]

    records = offline_records(next(runs[0].glob("run-*.wandb")))
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.job_type == "netless" and run.project == "zfnet"
    history = {
        ".".join(item.nested_key) or item.key: json.loads(item.value_json)
        for r in records if r.WhichOneof("record_type") == "history" for item in r.history.item
    }
    assert history["loss"] == 0.5


def test_wandb_timeouts_reach_the_sdk_settings(tiny_cfg):
    tiny_cfg.wandb.init_timeout = 7.5
    tiny_cfg.wandb.finish_timeout = 42
    with start_run(tiny_cfg, "unit") as tracker:
        assert tracker.run.settings.init_timeout == 7.5
        assert tracker.run.settings.finish_timeout == 42.0


def test_bad_wandb_timeouts_name_the_key(tiny_cfg):
    import pytest

    for key, value in [("init_timeout", 0), ("init_timeout", "soon"), ("finish_timeout", -1), ("init_timeout", True)]:
        cfg = tiny_cfg.copy()
        cfg.wandb[key] = value
        with pytest.raises(ValueError, match=f"wandb.{key}: expected"):
            start_run(cfg, "unit")


def test_a_run_that_fails_at_finish_still_returns(tiny_cfg, caplog):
    with start_run(tiny_cfg, "unit") as tracker:
        run = tracker.run
        real_finish = run.finish

        def failing_finish(*args, **kwargs):
            real_finish()  # the local transaction log is complete; only the "upload" fails
            raise ConnectionError("upload failed: 502 Bad Gateway")

        run.finish = failing_finish
    assert tracker.run is None
    assert "W&B finish failed (upload failed: 502 Bad Gateway)" in caplog.text
    assert f"wandb sync {run.settings.sync_dir}" in caplog.text
