"""The prepare stage: ILSVRC2012 -> 256×256 centre crops in WebDataset shards + the per-pixel mean image.

Work is split into shards of ``shard_size`` images (sorted file order, so shard contents are stable);
worker processes write them in parallel, each shard atomically with a JSON sidecar (its counts, its
rejected images and the settings it was made with). A finished shard is never redone: an interrupted
run resumes, and ``shard_index``/``shard_count`` let several machines prepare disjoint shards of one
dataset. When every shard exists, the run finalizes: ``stats.json`` (seen = written + rejected per
split), ``rejected.csv`` (path, reason), ``classes.json`` and the mean image as ``mean.npy`` (H, W, 3,
float64) and ``mean.png``. Each worker sums the training images of its shards as it writes them (exact integer
sums): the mean is their total over the count, so no second pass over the shards in one process; only
shards finished by an earlier run or another machine are read back.

Interrupting is safe: Ctrl-C, or SIGTERM under ``zfnet.signals.terminate_gracefully`` (the stage entry
point's), stops the helper processes and deletes the unfinished shards' temp files; finished shards
stay and a rerun resumes from them. Helpers also die when this process is killed outright (SIGKILL, OOM
killer): ``zfnet.signals.die_with_parent``. A full disk stops the run with ``OSError(ENOSPC)`` naming the
shard and the free space left on its file system.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
import queue
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from zfnet.data import imagenet, shards
from zfnet.data.preprocess import BadImage, center_crop
from zfnet.io import atomic_path, disk_full_error, write_json
from zfnet.progress import bar
from zfnet.signals import die_with_parent
from zfnet.signals import install as terminate_gracefully


@dataclass(frozen=True)
class ShardJob:
    split: str
    index: int
    items: list[tuple[str, int, int]]  # (path, label, global sample index)
    out_dir: str
    size: int
    encoding: str
    quality: int
    max_pixels: int
    fast_decode: bool = False  # reduced-scale JPEG decoding (preprocess.center_crop): not the exact default

    @property
    def settings(self) -> dict:
        files = hashlib.sha1("\n".join(f"{p}\t{l}" for p, l, _ in self.items).encode()).hexdigest()
        return {"size": self.size, "encoding": self.encoding, "quality": self.quality, "files": files,
                "fast_decode": self.fast_decode}

    @property
    def path(self) -> Path:
        return Path(self.out_dir) / shards.shard_name(self.split, self.index)

    @property
    def sidecar(self) -> Path:
        return self.path.with_suffix(".json")

    def done(self) -> bool:
        if not (self.path.is_file() and self.sidecar.is_file()):
            return False
        try:
            return json.loads(self.sidecar.read_text()).get("settings") == self.settings
        except (OSError, ValueError):
            return False


@contextlib.contextmanager
def _disk_full_names(path: Path):
    """Re-raise a full disk while writing ``path`` as ``OSError(ENOSPC, "disk full while writing <path>:
    N bytes free on <mount>; ...")`` (the atomic writer has already deleted its temp file)."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        full = disk_full_error(path, err)
        if full is None:
            raise
        raise OSError(errno.ENOSPC, f"{full.strerror}; free space or set prepare.out_dir elsewhere, then rerun: "
                                    "finished shards are kept") from err


def run_shard(job: ShardJob) -> tuple[dict, np.ndarray]:
    """Write one shard and its sidecar; returns the sidecar's info and the exact sum of the shard's images.
    Run on one torch thread (``_run`` and ``_worker`` set it once per process: one process, one core)."""
    samples, rejected = [], []
    # uint32 holds the sum of 16.8 M uint8 images: half int64's bytes to add up and to send to the parent
    total = np.zeros((job.size, job.size, 3), np.uint32 if len(job.items) < 2**24 else np.int64)
    for path, label, n in job.items:
        try:
            image = center_crop(path, job.size, max_pixels=job.max_pixels, fast_decode=job.fast_decode)
        except BadImage as err:
            rejected.append({"path": path, "reason": err.reason, "detail": err.detail})
            continue
        total += image
        ext, data = shards.encode(image, job.encoding, job.quality)
        samples.append({"__key__": f"{job.split}_{n:08d}", ext: data, "cls": str(label).encode(),
                        "json": json.dumps({"path": path}).encode()})
    with _disk_full_names(job.path):
        shards.write_shard(job.path, samples)
    info = {"split": job.split, "index": job.index, "seen": len(job.items), "written": len(samples),
            "rejected": rejected, "settings": job.settings}
    with _disk_full_names(job.sidecar):
        write_json(job.sidecar, info)
    return info, total


def plan(cfg, root: Path, out_dir: Path) -> tuple[list[ShardJob], dict]:
    wnids, names = imagenet.classes(root)
    jobs = []
    for split in (imagenet.train_split(root, exclude=cfg.get("exclude")), imagenet.val_split(root)):
        items = [(str(p), l, n) for n, (p, l) in enumerate(zip(split.paths, split.labels))]
        size = int(cfg.shard_size)
        for index, start in enumerate(range(0, len(items), size)):
            jobs.append(ShardJob(split.name, index, items[start : start + size], str(out_dir), int(cfg.size),
                                 cfg.encoding, int(cfg.quality), int(cfg.max_image_pixels),
                                 bool(cfg.get("fast_decode", False))))
    return jobs, {"wnids": wnids, "names": [names[w] for w in wnids]}


def mean_image(out_dir: Path, size: int, summed: tuple[np.ndarray, set[str]] | None = None,
               progress: bool = True) -> tuple[np.ndarray, int]:
    """Per-pixel mean over the training shards: the exact integer sum of every image over their count.

    ``summed``: (int64 sum, names of the shards it covers), added up from this run's workers; every other
    shard is read back. Integer sums make the result independent of the order and of the split into runs
    (bit-identical to a float64 running sum, which is exact for integers too)."""
    total, done = summed if summed is not None else (np.zeros((size, size, 3), np.int64), set())
    total, count = total.copy(), 0
    for shard in bar(shards.shards(out_dir, "train"), desc="mean image", unit="shard", disable=not progress):
        count += json.loads(shard.with_suffix(".json").read_text())["written"]
        if shard.name not in done:
            for _key, image, _label in shards.iter_shard(shard):
                total += image
    if count == 0:
        raise ValueError(f"{out_dir}: no training image survived preprocessing; see rejected.csv")
    return total / count, count


def finalize(jobs: list[ShardJob], classes: dict, out_dir: Path, size: int,
             summed: tuple[np.ndarray, set[str]] | None = None, progress: bool = True) -> dict:
    stats: dict[str, dict[str, int]] = {}
    rejected = []
    for job in jobs:
        info = json.loads(job.sidecar.read_text())
        s = stats.setdefault(job.split, {"seen": 0, "written": 0, "rejected": 0, "shards": 0})
        s["seen"] += info["seen"]
        s["written"] += info["written"]
        s["rejected"] += len(info["rejected"])
        s["shards"] += 1
        rejected += [{"split": job.split, **r} for r in info["rejected"]]
    planned = {job.path.name for job in jobs} | {job.sidecar.name for job in jobs}
    for stale in [*out_dir.glob("*-*.tar"), *out_dir.glob("*-*.json")]:
        if stale.name not in planned:  # shards of an earlier, larger dataset
            stale.unlink()
    mean, _ = mean_image(out_dir, size, summed, progress)
    with atomic_path(out_dir / "mean.npy") as tmp:
        np.save(tmp, mean)
    with atomic_path(out_dir / "mean.png") as tmp:
        # a picture to look at: fast zlib level (default 6 took ~14 ms of the run's serial end)
        Image.fromarray(mean.round().clip(0, 255).astype(np.uint8)).save(tmp, compress_level=1)
    with atomic_path(out_dir / "rejected.csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["split", "path", "reason", "detail"])
        writer.writeheader()
        writer.writerows(rejected)
    write_json(out_dir / "classes.json", classes)
    write_json(out_dir / "stats.json", stats)
    return stats


def _claim(todo: list[ShardJob], counter) -> Iterator[ShardJob]:
    """The jobs not yet taken by any process, one at a time (a shared counter: no process idles while
    another still has a queue of jobs, so the processes finish within one shard of each other)."""
    while True:
        with counter.get_lock():
            n = counter.value
            counter.value += 1
        if n >= len(todo):
            return
        yield todo[n]


class _Summed:
    """A running exact sum of training images and the names of the shards it covers."""

    def __init__(self, size: int):
        self.total, self.shards = np.zeros((size, size, 3), np.int64), set()

    def add(self, info: dict, total: np.ndarray) -> None:
        if info["split"] == "train":
            self.total += total
            self.shards.add(shards.shard_name(info["split"], info["index"]))

    def merge(self, other: "_Summed") -> None:
        self.total += other.total
        self.shards |= other.shards


def _worker(todo: list[ShardJob], counter, results, size: int, parent: int) -> None:
    die_with_parent(parent)  # a killed parent must not leave this process working for nobody
    terminate_gracefully()  # SIGTERM (the parent stopping it): unwind, so the shard's temp file is deleted
    torch.set_num_threads(1)  # before any torch op: a forked OpenMP pool must not be entered
    summed = _Summed(size)
    try:
        for job in _claim(todo, counter):
            info, total = run_shard(job)
            summed.add(info, total)
            results.put(("done", info))
        results.put(("summed", summed))  # once: not a 1.5 MB array per shard for the parent to unpickle and add
    except (KeyboardInterrupt, SystemExit) as err:  # stopped (Ctrl-C, SIGTERM): nobody waits for results
        results.cancel_join_thread()  # exit without flushing the queue into a pipe no one may read
        raise SystemExit(err.code if isinstance(err, SystemExit) else 130) from None
    except BaseException as err:  # the parent re-raises it, naming the worker's error
        results.put(("failed", f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))
        raise


def _run(todo: list[ShardJob], workers: int, summed: _Summed) -> Iterator[dict]:
    """``run_shard`` over ``todo`` in ``workers`` processes (this one and ``workers - 1`` forked helpers),
    yielding each shard's info as it is done and adding the training images up into ``summed``.

    The parent works too (one fork fewer, and no parent idling on a pool), takes jobs from the same
    counter, and reads the helpers' results between its own shards; helpers put results on a queue with a
    feeder thread, so they never wait for the parent, and send their sum once, at the end. A helper that
    dies leaves its shards out of ``summed`` (finalize then reads them back)."""
    # fork: helpers start in milliseconds (spawn re-imports torch in each, seconds per worker)
    ctx = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
    counter, results = ctx.Value("q", 0), ctx.Queue()
    helpers = [ctx.Process(target=_worker, args=(todo, counter, results, summed.total.shape[0], os.getpid()),
                           daemon=True) for _ in range(workers - 1)]
    for helper in helpers:
        helper.start()
    pending = {"shards": len(todo), "sums": len(helpers)}

    def received(block: bool):
        while pending["shards"] or pending["sums"]:
            try:
                status, payload = results.get(timeout=1.0) if block else results.get_nowait()
            except queue.Empty:
                if not block:
                    return
                if not any(h.is_alive() for h in helpers) and results.empty():
                    if pending["shards"]:
                        raise RuntimeError(f"prepare: a worker process died with {pending['shards']} shards unreported")
                    return  # all shards reported, a sum lost: finalize reads those shards back
                continue
            if status == "failed":
                raise RuntimeError(f"prepare: a worker failed: {payload}")
            if status == "summed":
                summed.merge(payload)
                pending["sums"] -= 1
            else:
                pending["shards"] -= 1
                yield payload

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one process, one core: the resize would otherwise spread over every core
    try:
        for job in _claim(todo, counter):
            info, total = run_shard(job)
            summed.add(info, total)
            pending["shards"] -= 1
            yield info
            yield from received(block=False)
        yield from received(block=True)
    finally:
        torch.set_num_threads(threads)  # once per run: not per shard
        if pending["shards"] or pending["sums"]:  # an error or an interruption: stop the helpers
            _stop(helpers, Path(todo[0].out_dir))
        for helper in helpers:
            helper.join()


def _stop(helpers: list, out_dir: Path, grace: float = 5.0) -> None:
    """SIGTERM the helpers (they unwind: their temp files are deleted), SIGKILL any still running after
    ``grace`` seconds and delete its temp files (``zfnet.io.atomic_path``'s ``.<name>.tmp-<pid>.<ext>``)."""
    for helper in helpers:
        if helper.is_alive():
            helper.terminate()
    for helper in helpers:
        helper.join(grace)
        if helper.is_alive():
            helper.kill()
            helper.join()
            for tmp in out_dir.glob(f".*.tmp-{helper.pid}.*"):
                tmp.unlink(missing_ok=True)


def prepare(cfg, root: str | Path, out_dir: str | Path, progress: bool = True) -> dict:
    """Prepare ``root`` (an ILSVRC2012 layout) into ``out_dir``; returns stats (or progress when partial).

    ``cfg``: size, shard_size, workers, shard_index, shard_count, encoding, quality, max_image_pixels, and
    optionally fast_decode (default false: exact preprocessing, see ``preprocess``) and exclude (training
    image paths to leave out: the overlap stage's removed list).
    """
    root, out_dir = Path(root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs, classes = plan(cfg, root, out_dir)
    mine = [j for n, j in enumerate(jobs) if n % int(cfg.shard_count) == int(cfg.shard_index)]
    todo = [j for j in mine if not j.done()]
    workers = max(1, min(int(cfg.workers), len(todo)))
    summed = _Summed(int(cfg.size))
    # closing: an exception here (Ctrl-C, SIGTERM) stops the helpers now, not when the generator is collected
    with bar(total=sum(len(j.items) for j in todo), desc="prepare", unit="img", disable=not progress) as shown, \
            contextlib.closing(_run(todo, workers, summed)) as done:
        for info in done:
            shown.update(info["seen"])
    missing = [j for j in jobs if not j.done()]
    if missing:
        return {"complete": False, "shards_done": len(jobs) - len(missing), "shards_total": len(jobs)}
    return finalize(jobs, classes, out_dir, int(cfg.size), (summed.total, summed.shards), progress)
