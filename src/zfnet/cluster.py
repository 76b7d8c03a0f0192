"""SLURM requests that fit the cluster, and jobs it can never run stopped early, naming SLURM's reason.

Used by ``conf/launcher/slurm.yaml`` (Hydra's submitit launcher):

- ``${zfnet_gpus:${trainer.accelerator},${trainer.devices}}``: GPUs per node for a GPU trainer, null (no
  ``--gpus-per-node``, no gres) for a CPU one;
- ``SlurmCheck``, a Hydra callback: before anything is submitted, the request (``hydra.launcher``: nodes,
  tasks x CPUs, memory, GPUs, time limit, partition) is compared with ``scontrol show partition`` and
  ``scontrol show node``; a request no node or partition can satisfy stops the sweep with what was asked and
  what the cluster has. While the sweep waits for its jobs, ``squeue`` is polled: a job pending for a reason
  that never clears by itself (``Reason=PartitionTimeLimit``, ``PartitionConfig``, ...) is cancelled and the
  sweep fails with that reason, instead of waiting forever.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

log = logging.getLogger(__name__)

# squeue's pending reasons that no amount of waiting clears (the request exceeds a limit of the partition,
# QOS or association, or names something that does not exist)
NEVER_REASONS = frozenset({
    "PartitionConfig", "PartitionTimeLimit", "PartitionNodeLimit", "BadConstraints", "InvalidAccount",
    "InvalidQOS", "DependencyNeverSatisfied", "QOSMaxWallDurationPerJobLimit", "QOSMaxCpuPerJobLimit",
    "QOSMaxMemoryPerJob", "QOSMaxNodePerJobLimit", "QOSMaxGRESPerJob", "AssocMaxWallDurationPerJobLimit",
    "AssocMaxCpuPerJobLimit", "AssocMaxNodePerJobLimit", "AssocMaxGRESPerJob",
})
GPU_ACCELERATORS = ("gpu", "cuda")


class ClusterError(RuntimeError):
    """A SLURM request the cluster can never run (the message names what was asked and why)."""


class NeverRuns(SystemExit):
    """Ends the sweep with the message and exit status 1. A SystemExit: Hydra 1.3 turns an Exception raised
    by a callback into a warning and goes on (here: waiting forever for a job that cannot start)."""

    def __init__(self, message: str):
        super().__init__(f"error: {message}")


def gpus_per_node(accelerator: Any, devices: Any) -> int | None:
    """``--gpus-per-node`` for a trainer: its device count on GPU accelerators, None (no gres) otherwise."""
    if str(accelerator) not in GPU_ACCELERATORS:
        return None
    if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        return len(devices)
    try:
        n = int(devices)
    except (TypeError, ValueError):
        n = -1
    if n < 1:
        raise ValueError(f"trainer.devices={devices!r}: a SLURM job needs a GPU count (an integer >= 1) "
                         f"to request --gpus-per-node")
    return n


if not OmegaConf.has_resolver("zfnet_gpus"):
    OmegaConf.register_new_resolver("zfnet_gpus", gpus_per_node)


# --------------------------------------------------------------------------------------- what SLURM has

def _scontrol(what: str, env: dict | None = None) -> list[dict[str, str]]:
    """``scontrol show <what> -o``, one dict of KEY=VALUE per line."""
    proc = subprocess.run(["scontrol", "show", *what.split(), "-o"], capture_output=True, text=True, timeout=60, env=env)
    if proc.returncode != 0:
        raise ClusterError(f"scontrol show {what}: {proc.stderr.strip() or proc.stdout.strip()}")
    rows = []
    for line in proc.stdout.splitlines():
        pairs = re.findall(r"(\S+?)=(.*?)(?=\s+\S+?=|$)", line.strip())
        if pairs:
            rows.append({k: v.strip() for k, v in pairs})
    return rows


def minutes(text: str) -> float | None:
    """SLURM's time limits in minutes ([days-]hh:mm:ss, mm:ss, mm); None for UNLIMITED/INFINITE."""
    text = str(text).strip()
    if text.upper() in ("UNLIMITED", "INFINITE", "NONE", ""):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if len(parts) == 1:
        h, m, s = 0, parts[0], 0
    elif len(parts) == 2:
        h, (m, s) = 0, parts
    else:
        h, m, s = parts[-3:]
    return (int(days) if days else 0) * 1440 + h * 60 + m + s / 60


def _gres_gpus(gres: str) -> int:
    """GPUs in a node's ``Gres=`` (``gpu:8``, ``gpu:a100:4(S:0-1),gpu:v100:2``); 0 without any."""
    total = 0
    for item in str(gres or "").split(","):
        fields = item.split("(")[0].split(":")
        if fields[0] == "gpu" and len(fields) >= 2 and fields[-1].isdigit():
            total += int(fields[-1])
    return total


def _expand(nodelist: str, env: dict | None = None) -> set[str]:
    if not nodelist or nodelist in ("(null)", "ALL"):
        return set()
    proc = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=60, env=env)
    return set(proc.stdout.split()) if proc.returncode == 0 else {nodelist}


@dataclass
class Request:
    """What one job of the sweep asks SLURM for (from ``hydra.launcher``)."""
    nodes: int = 1
    tasks_per_node: int = 1
    cpus_per_task: int = 1
    mem_gb: float | None = None
    gpus_per_node: int | None = None
    timeout_min: float | None = None
    partition: str | None = None

    @classmethod
    def from_launcher(cls, launcher) -> "Request":
        get = lambda key, default=None: OmegaConf.select(launcher, key, default=default)  # noqa: E731
        return cls(nodes=int(get("nodes", 1) or 1), tasks_per_node=int(get("tasks_per_node", 1) or 1),
                   cpus_per_task=int(get("cpus_per_task", 1) or 1), mem_gb=get("mem_gb"),
                   gpus_per_node=get("gpus_per_node"), timeout_min=get("timeout_min"), partition=get("partition"))


def check_request(req: Request, env: dict | None = None) -> None:
    """A ClusterError naming each way ``req`` exceeds what its partition and nodes can ever give."""
    partitions = _scontrol("partition", env)
    if req.partition:
        part = next((p for p in partitions if p.get("PartitionName") == req.partition), None)
        if part is None:
            known = ", ".join(p.get("PartitionName", "?") for p in partitions)
            raise ClusterError(f"hydra.launcher.partition={req.partition!r}: no such SLURM partition (has: {known})")
    else:
        part = next((p for p in partitions if p.get("Default") == "YES"), None)
        if part is None:
            raise ClusterError("hydra.launcher.partition is null and SLURM has no default partition: name one")
    name = part["PartitionName"]
    members = _expand(part.get("Nodes", ""), env)
    nodes = [n for n in _scontrol("node", env) if not members or n.get("NodeName") in members]
    problems = []
    limit = minutes(part.get("MaxTime", "UNLIMITED"))
    if req.timeout_min is not None and limit is not None and float(req.timeout_min) > limit:
        problems.append(f"hydra.launcher.timeout_min={req.timeout_min} exceeds partition {name}'s MaxTime="
                        f"{part.get('MaxTime')} ({limit:g} min; SLURM would hold it as PartitionTimeLimit)")
    cpus = req.tasks_per_node * req.cpus_per_task
    mem_mb = None if req.mem_gb is None else float(req.mem_gb) * 1024
    gpus = int(req.gpus_per_node or 0)

    def fits(node) -> list[str]:
        why = []
        have = int(node.get("CPUTot", 0) or 0)
        if cpus > have:
            why.append(f"{cpus} CPUs (tasks_per_node={req.tasks_per_node} x cpus_per_task={req.cpus_per_task}) > {have}")
        real = float(node.get("RealMemory", 0) or 0)
        if mem_mb is not None and mem_mb > real:
            why.append(f"mem_gb={req.mem_gb} > {real / 1024:g} GB (RealMemory={real:g} MB)")
        if gpus > _gres_gpus(node.get("Gres", "")):
            why.append(f"gpus_per_node={gpus} > {_gres_gpus(node.get('Gres', ''))} GPUs (Gres={node.get('Gres', '(null)')})")
        return why

    reasons = {n.get("NodeName", "?"): fits(n) for n in nodes}
    usable = [n for n, why in reasons.items() if not why]
    if len(usable) < req.nodes:
        shown = "; ".join(f"{n}: {', '.join(w)}" for n, w in list(reasons.items())[:4] if w)
        problems.append(f"hydra.launcher.nodes={req.nodes} node(s) needed, partition {name} has {len(usable)} of "
                        f"{len(nodes)} that fit one task set ({shown or 'too few nodes'}); SLURM would hold it as "
                        "PartitionConfig or reject it")
    mx = part.get("MaxNodes", "UNLIMITED")
    if mx.isdigit() and req.nodes > int(mx):
        problems.append(f"hydra.launcher.nodes={req.nodes} exceeds partition {name}'s MaxNodes={mx}")
    if problems:
        raise ClusterError("SLURM can never run this job: " + "; ".join(problems))


# ------------------------------------------------------------------------------------ while it waits

def pending_reasons(job_ids: list[str], env: dict | None = None) -> dict[str, str]:
    """{job id: squeue's reason} for the pending jobs among ``job_ids`` (array ids as ``123_4``)."""
    if not job_ids:
        return {}
    base = sorted({j.split("_")[0] for j in job_ids})
    proc = subprocess.run(["squeue", "-h", "-j", ",".join(base), "-t", "PENDING", "-o", "%i|%r"],
                          capture_output=True, text=True, timeout=60, env=env)
    if proc.returncode != 0:
        return {}
    out = {}
    for line in proc.stdout.splitlines():
        jid, _, reason = line.partition("|")
        out[jid.strip()] = reason.strip()
    return out


def never_runs(reasons: dict[str, str]) -> dict[str, str]:
    return {j: r for j, r in reasons.items() if r in NEVER_REASONS}


def job_summary(job_id: str, env: dict | None = None) -> str:
    """The request as ``scontrol show job`` reads it (partition, time limit, CPUs, memory, gres)."""
    rows = _scontrol_job(job_id, env)
    if not rows:
        return ""
    keep = ("Partition", "TimeLimit", "NumNodes", "NumCPUs", "MinMemoryNode", "TresPerNode")
    return ", ".join(f"{k}={rows[0][k]}" for k in keep if k in rows[0])


def _scontrol_job(job_id: str, env: dict | None = None) -> list[dict[str, str]]:
    try:
        return _scontrol(f"job {job_id.split('_')[0]}", env)
    except ClusterError:
        return []


class _Watch(threading.Thread):
    """Polls squeue for the sweep's jobs (the folders submitit makes under ``folder``); on a job that can
    never start: scancel the sweep's jobs, then raise ClusterError in the main thread (through SIGUSR1)."""

    def __init__(self, folder: Path, poll_s: float):
        super().__init__(daemon=True, name="zfnet-slurm-watch")
        self.folder, self.poll_s, self.stop_event, self.error = folder, poll_s, threading.Event(), None

    def job_ids(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return [p.name for p in self.folder.iterdir() if p.is_dir() and re.fullmatch(r"\d+(_\d+)?", p.name)]

    def run(self) -> None:
        while not self.stop_event.wait(self.poll_s):
            try:
                ids = self.job_ids()
                bad = never_runs(pending_reasons(ids))
            except (OSError, subprocess.SubprocessError) as err:
                log.debug("squeue: %s", err)
                continue
            if bad:
                jid, reason = sorted(bad.items())[0]
                detail = job_summary(jid)
                self.error = (f"SLURM job {jid} can never start: Reason={reason}"
                              f"{f' ({detail})' if detail else ''}; cancelled the sweep's jobs "
                              f"{', '.join(sorted({i.split('_')[0] for i in ids}))} (squeue -j {jid} -o %r)")
                log.error(self.error)
                subprocess.run(["scancel", *sorted({i.split("_")[0] for i in ids})], capture_output=True, timeout=60)
                os.kill(os.getpid(), signal.SIGUSR1)
                return


try:  # a Hydra callback where Hydra is installed (it is a dependency; the check functions need none)
    from hydra.experimental.callback import Callback as _Callback
except ImportError:  # pragma: no cover
    _Callback = object


class SlurmCheck(_Callback):
    """Hydra callback of ``conf/launcher/slurm.yaml``: ``check_request`` before submitting, ``_Watch``
    while the sweep waits. ``validate: false`` skips the first (the scheduler's reason still stops it)."""

    def __init__(self, poll_s: float = 5.0, validate: bool = True):
        self.poll_s, self.validate, self._watch = float(poll_s), bool(validate), None

    def on_multirun_start(self, config, **kwargs) -> None:
        launcher = config.hydra.launcher
        if "submitit_folder" not in launcher:
            return
        if self.validate:
            try:
                check_request(Request.from_launcher(launcher))
            except ClusterError as err:
                log.error("%s", err)
                raise NeverRuns(str(err)) from None
        folder = Path(str(launcher.submitit_folder).replace("%j", "")).resolve()
        folder = folder if folder.name else folder.parent
        self._watch = _Watch(folder, self.poll_s)

        def fail(signum, frame):
            raise NeverRuns(self._watch.error if self._watch else "a SLURM job of this sweep can never start")

        signal.signal(signal.SIGUSR1, fail)
        self._watch.start()

    def __getstate__(self) -> dict:  # submitit pickles Hydra's callbacks into every job: not the thread
        return {**self.__dict__, "_watch": None}

    def on_multirun_end(self, config, **kwargs) -> None:
        if self._watch is not None:
            self._watch.stop_event.set()
