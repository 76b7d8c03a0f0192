"""Multi-node without a cluster: two `torchrun --nnodes=2 --nproc-per-node=1` launches on 127.0.0.1 (c10d
rendezvous on the loopback), each a "node" of a `trainer=ddp_multinode` run on CPU (gloo). Both nodes join
one process group of world size 2, and the synchronized validation metrics equal a single process's."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from helpers import REPO
from test_prepare import make_imagenet, settings
from zfnet.data.prepare import prepare

pytestmark = pytest.mark.slow
VAL = ("val_top1_error", "val_top5_error", "val_10crop_top1_error", "val_10crop_top5_error")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_node_torchrun_on_loopback_equals_single_process(tmp_path):
    make_imagenet(tmp_path / "in", per_class=4, val_per_class=4, bad=False)  # 12 val images: 6 per node
    prepare(settings(size=72), tmp_path / "in", tmp_path / "prepared", progress=False)
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", "GLOO_SOCKET_IFNAME": "lo"}
    common = ["profile=tiny", f"prepare.out_dir={tmp_path / 'prepared'}", "train.epochs=1", "train.checkpoint_epochs=[1]",
              "train.batch_size=6", "train.lr=0.0",  # weights stay at their seeded init: metrics must match
              "trainer.threads=1"]
    multinode = ["trainer=ddp_multinode", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=2",
                 "trainer.precision=32-true", f"train.out_dir={tmp_path / 'mn' / 'model'}",
                 f"train.metrics_path={tmp_path / 'mn' / 'metrics.json'}",
                 f"train.history_path={tmp_path / 'mn' / 'history.csv'}"]
    port, start = _free_port(), time.monotonic()
    nodes = []
    for rank in (0, 1):
        log = open(tmp_path / f"node{rank}.log", "w")
        nodes.append(subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", f"--node-rank={rank}",
             "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=zfnet-test", "--max-restarts=0",
             str(REPO / "pipelines" / "train.py"), *common, *multinode, f"hydra.run.dir={tmp_path / f'node{rank}'}"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    try:
        codes = [p.wait(timeout=400) for p in nodes]
    finally:
        for p in nodes:
            if p.poll() is None:
                p.kill()
    logs = [(tmp_path / f"node{r}.log").read_text() for r in (0, 1)]
    assert codes == [0, 0], "\n".join(text[-3000:] for text in logs)
    print(f"torchrun 2 nodes x 1 process: {time.monotonic() - start:.1f} s")
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in logs[0] + logs[1] and "GLOBAL_RANK: 1, MEMBER: 2/2" in logs[0] + logs[1]
    mn = json.loads((tmp_path / "mn" / "metrics.json").read_text())
    assert mn["run"]["launcher"] == "torchrun" and mn["run"]["world_size"] == 2 and mn["run"]["num_nodes"] == 2

    proc = subprocess.run([sys.executable, str(REPO / "pipelines" / "train.py"), *common,
                           f"hydra.run.dir={tmp_path / 'single'}"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())
    for key in VAL:
        assert mn[key] == pytest.approx(single[key], abs=1e-6), key
