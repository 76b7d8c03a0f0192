"""Shared fixtures: a tiny composed config (once per session, copied per test), repo paths, and one
`dvc repro` of the whole pipeline on the tiny profile (once per session, shared by the end-to-end tests)."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from omegaconf import OmegaConf

from helpers import REPO, PipelineRun, sh, tiny_repo  # noqa: F401  (REPO: fixtures below)

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


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: OpenMP hand-offs between threads cost more than they save (on a busy 2-core
    machine up to hundreds of times more). Modules of small-model tests opt in with ``usefixtures``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
