"""Where a training run writes, and how it was run.

``train.out_dir``, ``train.metrics_path`` and ``train.history_path`` default to null: a run started by hand
or by a Hydra sweep writes into its own folder, Hydra's output dir of this job (``outputs/<date>/<time>/``,
or ``<sweep dir>/<job subdir>/`` for every job of a multirun, whatever keys are swept):
``model/`` (checkpoints, ``model.pt``), ``metrics.json`` and ``history.csv``. ``dvc.yaml`` pins the
pipeline's own paths on its command lines, so only DVC writes what DVC tracks.

``how_run`` is what each metrics file records about how the run was made (launcher, world size, threads),
so results from different launchers are never mixed without saying so.
"""

from __future__ import annotations

import os
from pathlib import Path

# torch threads are set per job from trainer.threads: a job's numbers do not depend on what launched it
# (joblib's workers, for one, start with fewer threads than a sequential run)
LAUNCHERS = {"BasicLauncher": "basic", "JoblibLauncher": "joblib", "SlurmLauncher": "submitit_slurm",
             "LocalLauncher": "submitit_local", "RayLauncher": "ray"}


def _hydra():
    try:
        from hydra.core.hydra_config import HydraConfig
    except ImportError:  # pragma: no cover - hydra is a dependency
        return None
    return HydraConfig.get() if HydraConfig.initialized() else None


def run_dir() -> Path:
    """This job's Hydra output dir; a ValueError naming the keys to set when there is none (a Python call)."""
    hc = _hydra()
    out = hc.runtime.output_dir if hc is not None else None
    if not out:
        raise ValueError("train.out_dir, train.metrics_path, train.history_path: null means this run's Hydra output "
                         "dir, and there is none (not started through pipelines/train.py); give all three paths")
    return Path(out)


def resolve_paths(cfg, metrics_path=None, history_path=None) -> tuple[Path, Path, Path]:
    """(out_dir, metrics_path, history_path): the arguments, else the configured ones, each null one
    inside ``run_dir()``."""
    keys = ("out_dir", "metrics_path", "history_path")
    given = {k: cfg.train.get(k) for k in keys}
    given.update({k: v for k, v in (("metrics_path", metrics_path), ("history_path", history_path)) if v is not None})
    if all(given[k] is not None for k in keys):
        return tuple(Path(given[k]) for k in keys)
    base = run_dir()
    default = {"out_dir": base / "model", "metrics_path": base / "metrics.json", "history_path": base / "history.csv"}
    return tuple(Path(given[k]) if given[k] is not None else default[k] for k in keys)


def launcher_name() -> str:
    """What started this process: dvc (a dvc.yaml stage or an experiment), a Hydra launcher of a multirun
    (basic, joblib, submitit_slurm, ...), torchrun, srun, or python (a single run by hand)."""
    if os.environ.get("DVC_STAGE"):
        return "dvc"
    hc = _hydra()
    if hc is not None and str(hc.mode) == "RunMode.MULTIRUN":
        target = str(hc.launcher.get("_target_", ""))
        cls = target.rsplit(".", 1)[-1]
        return LAUNCHERS.get(cls, cls or "multirun")
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        return "torchrun"
    if os.environ.get("SLURM_JOB_ID"):
        return "srun"
    return "python"


def set_threads(threads: int) -> int:
    """Set torch's intra-op threads for this process (every rank); returns the count now in effect.
    OMP_NUM_THREADS too: Lightning's DDP would otherwise pick cores / ranks, and child ranks inherit it."""
    import torch

    os.environ["OMP_NUM_THREADS"] = str(int(threads))
    torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def how_run(cfg, world_size: int) -> dict:
    """The record of how the run was made, stored in its metrics file."""
    import torch

    hc = _hydra()
    info = {
        "launcher": launcher_name(),
        "world_size": int(world_size),
        "num_nodes": int(cfg.trainer.num_nodes),
        "devices": cfg.trainer.devices,
        "accelerator": str(cfg.trainer.accelerator),
        "threads": torch.get_num_threads(),
        "variant": cfg.train.get("variant"),
    }
    if hc is not None:
        info["overrides"] = list(hc.overrides.task)
        if str(hc.mode) == "RunMode.MULTIRUN":
            info["job"] = int(hc.job.num)
    for key, env in (("dvc_stage", "DVC_STAGE"), ("dvc_exp", "DVC_EXP_NAME"), ("slurm_job_id", "SLURM_JOB_ID")):
        if os.environ.get(env):
            info[key] = os.environ[env]
    return info
