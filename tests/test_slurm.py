"""The project's SLURM preset (`+launcher=slurm`) against a real one-node SLURM started by the fixture
(tests/slurm_cluster.py: Debian's munged, slurmctld, slurmd as this test's own processes, 2 CPUs):
a two-variant Table 3 sweep equal to the same sweep run sequentially, a 2-task DDP job (gloo) equal to a
single process of the same global batch, and requests the cluster can never run stopped within seconds
with the reason."""

import csv
import json
import subprocess
import sys
import time

import pytest

from helpers import REPO
from slurm_cluster import SlurmCluster
from test_prepare import make_imagenet, settings
from zfnet.data.prepare import prepare

pytestmark = pytest.mark.slow
TRAIN = str(REPO / "pipelines" / "train.py")
METRICS = ("train_top1_error", "train_top5_error", "val_top1_error", "val_top5_error", "val_10crop_top1_error",
           "val_10crop_top5_error")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_imagenet(root / "in", per_class=4, val_per_class=4, bad=False)  # 12 val images: divisible by 2 ranks
    prepare(settings(size=72), root / "in", root / "prepared", progress=False)
    return root / "prepared"


def train(cwd, env, *args, timeout=400):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, TRAIN, *args], cwd=cwd, env={**env, "WANDB_MODE": "disabled"},
                          capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    return proc.returncode, "\n".join(line for line in out.splitlines() if "sacct" not in line), time.monotonic() - start


def history(path):
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def test_table3_sweep_on_slurm_equals_sequential(slurm, prepared, tmp_path):
    common = ["-m", "+sweep=ablation", "profile=tiny", f"prepare.out_dir={prepared}",
              "train.variant=zfnet,alexnet_no_3_4"]
    rc, log, seconds = train(tmp_path, slurm.env, *common, "+launcher=slurm", f"hydra.sweep.dir={tmp_path / 'slurm'}")
    assert rc == 0, log[-4000:]
    print(f"SLURM sweep of 2 variants: {seconds:.1f} s")
    rc, log2, _ = train(tmp_path, slurm.env, *common, f"hydra.sweep.dir={tmp_path / 'seq'}")
    assert rc == 0, log2[-4000:]
    for job, variant in enumerate(("zfnet", "alexnet_no_3_4")):
        folder = tmp_path / "slurm" / f"{job}_{variant}"
        m = json.loads((folder / "metrics.json").read_text())
        assert m["epochs"] == 1 and m["num_classes"] == 3
        assert m["run"]["launcher"] == "submitit_slurm" and m["run"]["slurm_job_id"] and m["run"]["threads"] == 2
        assert m["run"]["variant"] == variant and m["run"]["world_size"] == 1 and m["run"]["job"] == job
        assert (folder / "model" / "model.pt").is_file()
        seq = tmp_path / "seq" / f"{job}_{variant}"
        s = json.loads((seq / "metrics.json").read_text())
        assert s["run"]["launcher"] == "basic"
        for key in METRICS:  # the launcher does not change the numbers (threads set per job)
            assert m[key] == pytest.approx(s[key], abs=1e-6), (variant, key)
        for a, b in zip(history(folder / "history.csv"), history(seq / "history.csv"), strict=True):
            assert a == pytest.approx(b, abs=1e-5), variant
    # submitit's logs live under the sweep dir; nothing lands in the working directory's multirun/
    assert list((tmp_path / "slurm" / ".submitit").glob("*/*_log.out"))
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "models").exists()


def test_two_task_ddp_job_on_slurm_equals_single_process(slurm, prepared, tmp_path):
    common = ["profile=tiny", f"prepare.out_dir={prepared}", "train.epochs=1", "train.checkpoint_epochs=[1]",
              "train.batch_size=6", "train.lr=0.0",  # weights stay at their seeded init: metrics must match
              "trainer.threads=1"]
    rc, log, seconds = train(tmp_path, slurm.env, "-m", "+launcher=slurm", *common, "trainer.devices=2",
                             "trainer.strategy=ddp", f"hydra.sweep.dir={tmp_path / 'ddp'}")
    assert rc == 0, log[-4000:]
    print(f"SLURM 2-task DDP job: {seconds:.1f} s")
    rc, log1, _ = train(tmp_path, slurm.env, *common, f"hydra.run.dir={tmp_path / 'single'}")
    assert rc == 0, log1[-4000:]
    ddp = json.loads((tmp_path / "ddp" / "0" / "metrics.json").read_text())
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert ddp["run"]["world_size"] == 2 and ddp["run"]["launcher"] == "submitit_slurm"
    assert single["run"]["world_size"] == 1 and single["run"]["launcher"] == "python"
    for key in METRICS[2:]:  # validation: no dropout or random crop, each rank sees half the images
        assert ddp[key] == pytest.approx(single[key], abs=1e-6), key
    # both ranks ran as SLURM tasks of one job, each with its own log
    logs = {p.name: p.read_text() for p in (tmp_path / "ddp" / ".submitit").glob("*/*_log.*")}
    text = "\n".join(logs.values())
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in text and "GLOBAL_RANK: 1, MEMBER: 2/2" in text
    assert "distributed_backend=gloo" in text
    assert sum(name.endswith("_log.out") for name in logs) == 2


@pytest.mark.parametrize("request_, expected", [
    (["hydra.launcher.timeout_min=120"], "exceeds partition debug's MaxTime=01:00:00"),
    (["trainer.threads=8"], "8 CPUs (tasks_per_node=1 x cpus_per_task=8) > 2"),
    (["hydra.launcher.timeout_min=120", "hydra.callbacks.slurm_check.validate=false"], "can never start: Reason=Partition"),
], ids=["time-checked", "cpus-checked", "time-scheduler-reason"])
def test_impossible_request_fails_fast_with_the_reason(slurm, prepared, tmp_path, request_, expected):
    rc, log, seconds = train(tmp_path, slurm.env, "-m", "+launcher=slurm", "profile=tiny", f"prepare.out_dir={prepared}",
                             "train.epochs=1", *request_, f"hydra.sweep.dir={tmp_path / 'bad'}", timeout=120)
    assert rc == 1 and expected in log, log[-3000:]
    assert seconds < 60, seconds
    queue = subprocess.run(["squeue", "-h", "-o", "%i %r"], env=slurm.env, capture_output=True, text=True).stdout
    assert queue.strip() == "", queue  # a submitted job that can never start was cancelled
    assert not (tmp_path / "bad" / "0" / "metrics.json").exists()


@pytest.mark.parametrize("trainer, overrides, gpus, tasks", [
    ("cpu", [], None, 1), ("ddp", [], 8, 8), ("ddp_multinode", ["trainer.devices=4"], 4, 4), ("gpu", [], 1, 1),
    ("cpu", ["trainer.devices=2", "trainer.strategy=ddp"], None, 2)])
def test_preset_requests_gpus_only_for_gpu_trainers(trainer, overrides, gpus, tasks):
    from hydra import compose, initialize_config_dir

    import zfnet.cluster  # noqa: F401  (registers ${zfnet_gpus:...}, as the preset's callback does)

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+launcher=slurm", f"trainer={trainer}", *overrides], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher.gpus_per_node == gpus and launcher.gres is None and launcher.tasks_per_node == tasks
    assert launcher.cpus_per_task == cfg.trainer.threads and launcher.mem_gb == 4 and launcher.timeout_min == 60
    assert launcher.nodes == cfg.trainer.num_nodes and launcher.partition is None and launcher.account is None
    assert launcher.submitit_folder == f"{cfg.hydra.sweep.dir}/.submitit/%j"  # under the sweep's own folder


def test_slurm_formats():
    from zfnet.cluster import _gres_gpus, gpus_per_node, minutes

    assert minutes("01:00:00") == 60 and minutes("2-00:30:00") == 2 * 1440 + 30 and minutes("45") == 45
    assert minutes("10:30") == 10.5 and minutes("UNLIMITED") is None
    assert _gres_gpus("gpu:a100:4(S:0-1),gpu:v100:2") == 6 and _gres_gpus("(null)") == 0
    assert gpus_per_node("cpu", 8) is None and gpus_per_node("cuda", [0, 1]) == 2
    with pytest.raises(ValueError, match="trainer.devices='auto'"):
        gpus_per_node("gpu", "auto")
