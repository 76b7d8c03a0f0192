"""Process pools for decode-bound work that may run after torch has started its thread pools.

``fork`` after torch (or OpenMP / BLAS) has run threads can deadlock the children at their first torch
op (the inherited thread-pool state is dead in the child). ``forkserver`` forks workers from a clean
server process instead: safe whatever the parent has done, at the cost of importing the worker's module
once per worker.

Workers die with the process that started the pool (``zfnet.signals.die_with_parent``, set by the pool's
initializer): a killed stage never leaves workers behind. On an exception in the caller (including
``KeyboardInterrupt`` and SIGTERM / SIGINT / SIGHUP under ``zfnet.signals.terminate_gracefully``) the pool
is terminated within seconds, whatever its workers were doing:

- workers unwind on SIGTERM / SIGHUP / SIGINT (a signal to the process group reaches them too) instead
  of dying on the spot: a worker waiting for a task holds the pool's task-queue lock, which a worker
  killed there never releases, and ``Pool.terminate()`` waits for that lock, forever;
- that is not enough: a signal to the group also ends the forkserver, whose death SIGKILLs its children
  (``die_with_parent``'s ``PR_SET_PDEATHSIG``), and SIGKILL or the OOM killer give no chance to unwind
  at all; so ``terminate()`` runs in a thread, and once every worker has exited while it still waits (on
  a lock no process will release), or after ``STOP_GRACE`` seconds, the workers left are killed and the
  caller goes on.

``cap_workers(n, key)``: a configured worker count above this machine's cores (the CPUs this process may
run on) is lowered to the core count, with a warning naming the key; ``capped(cfg, *keys)`` does it to a
copy of a config. More processes than cores only add memory and switching.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing import get_all_start_methods, get_context
from typing import Any

from zfnet.progress import bar
from zfnet.signals import die_with_parent, install

__all__ = ["cap_workers", "capped", "cores", "process_map", "readable"]

log = logging.getLogger(__name__)

STOP_GRACE = 5.0  # seconds Pool.terminate() may take before the workers are killed


def cores() -> int:
    """The CPUs this process may run on (its affinity: what SLURM, taskset or a container grant), else
    the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def cap_workers(n: int, key: str) -> int:
    """``n`` processes, at most ``cores()``; a warning names ``key`` when it lowers ``n``."""
    n, available = int(n), cores()
    if n <= available:
        return n
    log.warning("%s=%d exceeds this machine's %d cores; using %d", key, n, available, available)
    return available


def capped(cfg, *keys: str):
    """A copy of ``cfg`` (an OmegaConf config) with each worker count ``keys`` (dotted) capped by
    ``cap_workers``; ``cfg`` itself is left as it was."""
    from omegaconf import OmegaConf

    out = copy.deepcopy(cfg)
    for key in keys:
        value = OmegaConf.select(out, key)
        if value is not None:
            OmegaConf.update(out, key, cap_workers(value, key))
    return out


def _init_worker(owner: int) -> None:
    """Pool initializer: the worker ends when ``owner``, the process that made the pool, dies (its
    direct parent is the forkserver, which lives on as long as any worker does), and unwinds quietly on
    SIGTERM, SIGINT and SIGHUP (releasing the task-queue lock it may hold; no KeyboardInterrupt traceback
    per worker when Ctrl-C reaches the whole process group)."""
    die_with_parent(owner)
    install()


def _stop(pool, grace: float = STOP_GRACE, stuck: float = 0.5) -> None:
    """``pool.terminate()``; when it still waits ``stuck`` seconds after every worker has exited (a
    worker died holding a pool lock), or ``grace`` seconds in all, the workers left are killed and the
    pool's threads (daemons, one of them waiting on that lock) left behind."""
    workers = list(getattr(pool, "_pool", []))
    stopper = threading.Thread(target=pool.terminate, name="pool-terminate", daemon=True)
    stopper.start()
    start, all_gone = time.monotonic(), None
    while stopper.is_alive() and time.monotonic() - start < grace:
        stopper.join(0.05)
        if all_gone is None and all(w.exitcode is not None for w in workers):
            all_gone = time.monotonic()
        if all_gone is not None and time.monotonic() - all_gone >= stuck:
            break
    if stopper.is_alive():
        for worker in list(getattr(pool, "_pool", [])) + workers:
            with contextlib.suppress(Exception):
                worker.kill()
        log.warning("process pool: terminate() did not return (a worker died holding one of its locks); "
                    "its workers were killed")


def process_map(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int = 1, desc: str = "", unit: str = "img",
                progress: bool = True, chunksize: int = 8) -> list[Any]:
    """``[fn(j) for j in jobs]`` in order, in ``workers`` processes (in this process when 1), with a bar."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(j) for j in bar(jobs, desc=desc, unit=unit, disable=not progress)]
    if "forkserver" in get_all_start_methods():
        ctx = get_context("forkserver")
        # the server would import the caller's __main__ (a script without a __main__ guard re-runs);
        # workers only need ``fn``'s module, which unpickling imports
        ctx.set_forkserver_preload([])
    else:
        ctx = get_context("spawn")
    pool = ctx.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(os.getpid(),))
    try:
        return list(bar(pool.imap(fn, jobs, chunksize=chunksize), total=len(jobs), desc=desc, unit=unit,
                        disable=not progress))
    finally:
        _stop(pool)


def readable(paths: Sequence[str], results: Sequence[Any]) -> tuple[list[Any], list[int], list[tuple[str, str]]]:
    """Split per-image results where a failure is its reason string: (the arrays, their indices into
    ``paths``, [(path, reason)] of the others)."""
    keep = [i for i, r in enumerate(results) if not isinstance(r, str)]
    bad = [(str(paths[i]), r) for i, r in enumerate(results) if isinstance(r, str)]
    return [results[i] for i in keep], keep, bad
