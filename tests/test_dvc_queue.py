"""DVC's experiment queue as a launcher: two Table 3 rows queued with `dvc exp run --queue` and run by
`dvc queue start -j 2` (two workers at once) in a copy of the tiny pipeline's repo; both rows' metrics
appear in `dvc exp show`, each recording that DVC ran it."""

import csv
import shutil
import time

import pytest

from helpers import pipeline_env, sh

pytestmark = pytest.mark.slow
ROWS = {"q-zfnet": "zfnet", "q-alexnet-no-3-4": "alexnet_no_3_4"}


def queue_rows(work, env, timeout=600) -> dict:
    """Queue both rows (table3.epochs=2, so both retrain), run the queue with 2 workers, wait; the rows of
    `dvc exp show --csv` by experiment name."""
    for name, row in ROWS.items():
        sh(["dvc", "exp", "run", "--queue", "-n", name, "-S", "profile=tiny", "-S", "table3.epochs=2", f"ablate@{row}"],
           work, env)
    sh(["dvc", "queue", "start", "-j", "2"], work, env)
    deadline = time.monotonic() + timeout
    try:
        while True:
            status = sh(["dvc", "queue", "status"], work, env)
            lines = [line for line in status.splitlines() if any(name in line for name in ROWS)]
            if len(lines) == len(ROWS) and not any(s in line for line in lines for s in ("Queued", "Running")):
                break
            assert time.monotonic() < deadline, status
            time.sleep(3)
    finally:
        sh(["dvc", "queue", "stop"], work, env)
    assert all("Success" in line for line in lines), status + "\n" + "\n".join(
        sh(["dvc", "queue", "logs", name], work, env)[-2000:] for name in ROWS)
    shown = list(csv.DictReader(sh(["dvc", "exp", "show", "--csv"], work, env).splitlines()))
    return {r["Experiment"]: r for r in shown if r.get("Experiment") in ROWS}


def test_two_table3_rows_through_the_dvc_queue(tiny_pipeline, tmp_path):
    work = tmp_path / "repo"  # a copy: the shared pipeline run stays as `dvc repro` left it
    shutil.copytree(tiny_pipeline.work, work, symlinks=True)
    env = pipeline_env(work, WANDB_MODE="disabled")
    start = time.monotonic()
    rows = queue_rows(work, env)
    print(f"dvc queue, 2 rows, -j 2: {time.monotonic() - start:.1f} s")
    assert sorted(rows) == sorted(ROWS)
    for name, row in ROWS.items():
        r = rows[name]
        assert r["table3.epochs"] == "2"
        assert float(r[f"metrics/ablation/{row}.json:epochs"]) == 2
        assert 0 <= float(r[f"metrics/ablation/{row}.json:val_top1_error"]) <= 1
        assert r[f"metrics/ablation/{row}.json:run.launcher"] == "dvc"
        assert r[f"metrics/ablation/{row}.json:run.dvc_stage"] == f"ablate@{row}"
        assert r[f"metrics/ablation/{row}.json:run.dvc_exp"] == name
