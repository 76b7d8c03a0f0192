"""Shared fixtures: a tiny composed config (once per session, copied per test), repo paths."""

from __future__ import annotations

import copy
import os
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


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: OpenMP hand-offs between threads cost more than they save (on a busy 2-core
    machine up to hundreds of times more). Modules of small-model tests opt in with ``usefixtures``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
