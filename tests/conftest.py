"""Shared fixtures: a tiny composed config (once per session, copied per test), repo paths, and one
`dvc repro` of the whole pipeline on the tiny profile (once per session, shared by the end-to-end tests)."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def _tiny_cfg_session(tmp_path_factory):
    from zfnet.config import compose_params

    out = tmp_path_factory.mktemp("cfg") / "params.yaml"
    compose_params(out, overrides=["profile=tiny"])
    return OmegaConf.load(out)


@pytest.fixture
def tiny_cfg(_tiny_cfg_session, tmp_path, monkeypatch):
    """The tiny profile with every output path inside this test's tmp_path (cwd = tmp_path)."""
    cfg = copy.deepcopy(_tiny_cfg_session)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    return cfg


def offline_records(log: Path, timeout: float = 60.0) -> list:
    """The records of an offline run's transaction log once the SDK has written all of it (its ``exit``
    record): ``run.finish()`` can return while W&B's service process is still flushing the file."""
    from zfnet.tracking import read_records

    deadline = time.monotonic() + timeout
    while True:
        records = list(read_records(log))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: OpenMP hand-offs between threads cost more than they save (on a busy 2-core
    machine up to hundreds of times more). Modules of small-model tests opt in with ``usefixtures``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def as_from_a_terminal() -> None:
    """``preexec_fn`` for a command the tests then signal: SIGINT and SIGHUP at their defaults, as a command
    started from a terminal has them (a shell without job control, `cmd &` or nohup, starts its children
    with them ignored, and an ignored disposition is inherited through exec and rightly kept by the stages)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def sh(args, cwd, env, timeout=None):
    # a hang guard, not a speed target: 25 minutes (the tiny pipeline takes about 6 on 2 idle cores);
    # ZFNET_TEST_SH_TIMEOUT raises it on a loaded machine
    timeout = timeout or float(os.environ.get("ZFNET_TEST_SH_TIMEOUT", 1500))
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


@dataclass(frozen=True)
class PipelineRun:
    work: Path  # the temporary git repo the pipeline ran in
    env: dict  # the environment it ran with (W&B offline, runs under work/wandb)
    first: str  # output of the first `dvc repro`
    second: str  # output of the second (nothing to do)
    status: str  # output of `dvc status` afterwards


def pipeline_env(work: Path, **extra) -> dict:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "WANDB_MODE": "offline", "WANDB_DIR": str(work), "DVC_NO_ANALYTICS": "1",
           "WANDB_DATA_DIR": str(work / "wandb-data"), **extra}  # offline artifacts' files stay in work, not ~
    env.pop("WANDB_SILENT", None)
    return env


def tiny_repo(work: Path) -> dict:
    """A git repo at ``work``: the tracked files as they are in the working tree (untracked files may be
    outputs of a local run), params.yaml composed for the tiny profile, one commit. Returns its environment."""
    files = subprocess.run(["git", "ls-files", "--cached", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / rel)
    env = pipeline_env(work)
    sh([sys.executable, "-m", "zfnet.config", "--out", str(work / "params.yaml"), "profile=tiny"], work, env)
    sh(["git", "init", "-q"], work, env)
    sh(["git", "add", "-A"], work, env)
    # a fixed date: two copies of the same files are the same commit (the report shows its revision)
    dated = {**env, "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"}
    sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "tiny"], work, dated)
    return env


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> PipelineRun:
    """`dvc repro` of the whole pipeline on the tiny profile in a temporary git copy of the repo, run twice,
    then `dvc status`. Tests must not change it (copy `work` to experiment on it)."""
    work = tmp_path_factory.mktemp("e2e") / "repo"
    env = tiny_repo(work)
    # 33 stages, each a process (torch, Hydra and a W&B run: ~8 s of start-up each on a busy 2-core machine)
    first = sh(["dvc", "repro"], work, env)
    second = sh(["dvc", "repro"], work, env)
    status = sh(["dvc", "status"], work, env)
    return PipelineRun(work, env, first, second, status)


@pytest.fixture(autouse=True)
def _torch_global_state():
    """Torch's process-wide settings as each test found them: a test that trains in-process (Lightning's
    ``deterministic=True`` sets ``torch.use_deterministic_algorithms``, the train stage sets the thread
    count) must not change what later tests run with (max_unpool2d, for one, refuses deterministic mode)."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    yield
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
