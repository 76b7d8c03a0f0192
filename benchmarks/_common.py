"""Shared bits of the benchmarks: timing (interleaved rounds, waiting for the shared machine to be idle, logging
the cores used by us and by others), natural-looking JPEGs of ImageNet sizes, results as JSON."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results"


def best_of(fn, repeats: int = 3) -> float:
    """Smallest wall time of ``repeats`` calls (the least disturbed run)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _busy_jiffies() -> tuple[int, int] | None:
    """(busy, total) CPU jiffies of the whole machine since boot, or None off Linux."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    return sum(values) - values[3] - values[4], sum(values)  # minus idle and iowait


def wait_for_idle(max_wait_s: float, window_s: float = 0.5, busy_cores: float = 0.15) -> float:
    """Wait (at most ``max_wait_s``) until the machine's other users keep fewer than ``busy_cores`` cores
    busy over ``window_s``; returns the seconds waited. The machine is shared: this keeps a timing from
    starting in the middle of someone else's burst."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_wait_s:
        before = _busy_jiffies()
        if before is None:
            break
        time.sleep(window_s)
        after = _busy_jiffies()
        if (after[0] - before[0]) / os.sysconf("SC_CLK_TCK") / window_s < busy_cores:
            break
    return time.perf_counter() - start


IDLE_WAIT_S = float(os.environ.get("BENCH_IDLE_WAIT", 60))
def _live_children_cpu() -> float:
    """CPU seconds of this process's live children (e.g. persistent DataLoader workers), which
    ``os.times`` counts only once they have exited and been waited for."""
    me, total = os.getpid(), 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me:  # ppid; then utime and stime
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system + _live_children_cpu()


LOG: list[dict] = []  # one entry per timed call: wall, our CPU seconds, CPU seconds everyone else used


def timed(fn) -> float:
    """Wall time of ``fn()``; also logs how many cores this process (and its children) and the rest of
    the machine kept busy meanwhile, so a ratio disturbed by other users of the machine shows it."""
    waited = wait_for_idle(IDLE_WAIT_S)
    jiffies, ours = _busy_jiffies(), _own_cpu()
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    after, own = _busy_jiffies(), _own_cpu() - ours
    entry = {"wall_s": round(wall, 4), "our_cores": round(own / wall, 2), "waited_for_idle_s": round(waited, 1)}
    if jiffies and after:
        hz = os.sysconf("SC_CLK_TCK")
        entry["other_cores"] = round(max(0.0, (after[0] - jiffies[0]) / hz - own) / wall, 2)
    LOG.append(entry)
    return wall


def interleaved(fns: dict, rounds: int = 3) -> dict[str, list[float]]:
    """Wall times of each function, ``rounds`` times, alternating between them within each round, so a
    burst of load from other users of the machine hits baseline and candidate alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(timed(fn))
            LOG[-1]["what"] = name
    return times


def median_ratio(slow: list[float], fast: list[float]) -> float:
    """Median over rounds of the per-round ratio slow/fast (both measured back to back)."""
    return statistics.median(a / b for a, b in zip(slow, fast))


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def imagenet_like_jpegs(folder: Path, n: int, classes: int = 4, seed: int = 0) -> list[Path]:
    """JPEGs at ImageNet's typical sizes (most 500x375 / 375x500 / 500x333, one in six larger), in
    train/<wnid>/ folders, with smooth content and edges so they compress like photographs."""
    rng = np.random.default_rng(seed)
    sizes = [(500, 375), (375, 500), (500, 333), (500, 375), (500, 400), (1024, 768)]
    paths = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        base = rng.integers(0, 256, (h // 24 + 2, w // 24 + 2, 3), dtype=np.uint8)
        arr = np.asarray(Image.fromarray(base).resize((w, h), Image.BICUBIC)).copy()
        for _ in range(8):
            y, x = rng.integers(0, h - 30), rng.integers(0, w - 30)
            arr[y : y + rng.integers(10, h // 3), x : x + rng.integers(10, w // 3)] = rng.integers(0, 256, 3)
        arr = np.clip(arr.astype(int) + rng.normal(0, 6, arr.shape), 0, 255).astype(np.uint8)
        path = folder / "train" / f"n{i % classes:08d}" / f"img_{i:05d}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path, quality=90)
        paths.append(path)
    return paths


def save(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return path
