"""Process pools for decode-bound work that may run after torch has started its thread pools.

``fork`` after torch (or OpenMP / BLAS) has run threads can deadlock the children at their first torch
op (the inherited thread-pool state is dead in the child). ``forkserver`` forks workers from a clean
server process instead: safe whatever the parent has done, at the cost of importing the worker's module
once per worker.

Workers die with the process that started the pool (``zfnet.signals.die_with_parent``, set by the pool's
initializer): a killed stage never leaves workers behind. On an exception in the caller (including
``KeyboardInterrupt`` and SIGTERM under ``zfnet.signals.terminate_gracefully``) the pool is terminated.

``cap_workers(n, key)``: a configured worker count above this machine's cores (the CPUs this process may
run on) is lowered to the core count, with a warning naming the key; ``capped(cfg, *keys)`` does it to a
copy of a config. More processes than cores only add memory and switching.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Sequence
from multiprocessing import get_all_start_methods, get_context
from typing import Any

from zfnet.progress import bar
from zfnet.signals import die_with_parent

__all__ = ["cap_workers", "capped", "cores", "process_map", "readable"]

log = logging.getLogger(__name__)


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
    direct parent is the forkserver, which lives on as long as any worker does)."""
    die_with_parent(owner)


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
    with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker,
                  initargs=(os.getpid(),)) as pool:  # __exit__: terminate()
        return list(bar(pool.imap(fn, jobs, chunksize=chunksize), total=len(jobs), desc=desc, unit=unit,
                        disable=not progress))


def readable(paths: Sequence[str], results: Sequence[Any]) -> tuple[list[Any], list[int], list[tuple[str, str]]]:
    """Split per-image results where a failure is its reason string: (the arrays, their indices into
    ``paths``, [(path, reason)] of the others)."""
    keep = [i for i, r in enumerate(results) if not isinstance(r, str)]
    bad = [(str(paths[i]), r) for i, r in enumerate(results) if isinstance(r, str)]
    return [results[i] for i in keep], keep, bad
