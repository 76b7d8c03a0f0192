"""Shared helpers of the demo writers: per-image RNGs, scene drawing (runs in worker processes; a pure
function of the task), the process pool that renders tasks, and CSV cell formatting."""

from __future__ import annotations

import csv
import math
import multiprocessing
import os
from pathlib import Path

import numpy as np
from PIL import Image

from zfnet.data.demo import canvas
from zfnet.data.demo import shapes as S



def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _distractors(rng, img, n, exclude, rmin, rmax):
    h, w = img.shape[:2]
    s = min(w, h)
    fams = [f for f in S.FAMILIES if f not in exclude]
    for _ in range(n):
        fam = fams[int(rng.integers(len(fams)))]
        tex = S.TEXTURES[int(rng.integers(len(S.TEXTURES)))]
        r = s * rng.uniform(rmin, rmax)
        spec = S.random_object(
            rng, fam, tex, rng.uniform(0, w), rng.uniform(0, h), r, canvas.random_colours(rng)
        )
        S.paint(img, spec)


def _face_scale(family: str) -> float:
    return 0.8 if family == S.FACE else 1.0


def _render_scene(task: dict) -> dict:
    rng = _rng(*task["key"])
    w = int(rng.integers(task["min_side"], task["max_side"] + 1))
    h = int(rng.integers(task["min_side"], task["max_side"] + 1))
    s = min(w, h)
    img = canvas.background(rng, w, h)
    objects = []
    kind = task["kind"]
    if kind == "single":
        fam, tex, hue = task["classes"][0]
        _distractors(rng, img, int(rng.integers(3, 8)), {fam, S.FACE}, 0.04, 0.11)
        r = s * rng.uniform(0.2, 0.34) * _face_scale(fam)
        off = max(0.0, 0.4375 * s - 1.0 * r)  # keep the object (mostly) inside the centre crop
        cx = w / 2 + rng.uniform(-off, off)
        cy = h / 2 + rng.uniform(-off, off)
        spec = S.random_object(rng, fam, tex, cx, cy, r, canvas.class_colours(rng, hue))
        box, lm = S.paint(img, spec)
        objects.append({"family": fam, "texture": tex, "box": box, "landmarks": lm})
    elif kind == "clutter":
        _distractors(rng, img, int(rng.integers(6, 15)), {S.FACE}, 0.04, 0.2)
    elif kind == "voc":
        k = int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))
        picks = rng.choice(len(task["classes"]), size=k, replace=False)
        radii = sorted((s * rng.uniform(0.12, 0.3) for _ in range(k)), reverse=True)
        fams = {task["classes"][i][1] for i in picks}
        _distractors(rng, img, int(rng.integers(2, 7)), fams | {S.FACE}, 0.03, 0.09)
        centres: list[tuple[float, float, float]] = []
        for i, r0 in zip(picks, radii):
            name, fam, tex, hue = task["classes"][i]
            r = r0 * _face_scale(fam)
            for _ in range(30):
                cx, cy = rng.uniform(0.12 * w, 0.88 * w), rng.uniform(0.12 * h, 0.88 * h)
                if all(math.hypot(cx - x, cy - y) >= 0.9 * (r + rr) for x, y, rr in centres):
                    break
            centres.append((cx, cy, r))
            spec = S.random_object(rng, fam, tex, cx, cy, r, canvas.class_colours(rng, hue))
            box, lm = S.paint(img, spec)
            difficult = bool(rng.random() < 0.1)
            if box is None:
                continue
            objects.append(
                {"name": name, "family": fam, "texture": tex, "box": box, "landmarks": lm,
                 "difficult": difficult}
            )  # fmt: skip
    else:  # pragma: no cover
        raise ValueError(kind)
    arr = canvas.add_noise(rng, img)
    Image.fromarray(arr, "RGB").save(task["path"], format="JPEG", quality=task["quality"])
    return {"id": task["id"], "width": w, "height": h, "objects": objects}


def _render_duplicate(task: dict) -> dict:
    with Image.open(task["source"]) as src:
        src = src.convert("RGB")
        w = max(1, round(src.width * task["scale"]))
        h = max(1, round(src.height * task["scale"]))
        out = src.resize((w, h), Image.BICUBIC)
    out.save(task["path"], format="JPEG", quality=task["quality"])
    return {"id": task["id"], "width": w, "height": h, "objects": []}


def _render(task: dict) -> dict:
    if task["kind"] == "duplicate":
        return _render_duplicate(task)
    return _render_scene(task)




def _write_csv(path: Path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(header)
        wr.writerows(rows)


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def _box_landmark_cells(obj):
    if obj is None or obj.get("box") is None:
        return [""] * 4 + [""] * 6
    cells = [str(v) for v in obj["box"]]
    lm = obj.get("landmarks")
    if lm:
        for k in ("left_eye", "right_eye", "nose"):
            cells += [_fmt(lm[k][0]), _fmt(lm[k][1])]
    else:
        cells += [""] * 6
    return cells


_POOL_MIN_TASKS = 64  # below this a process pool costs more than it saves


def _run(tasks: list[dict], workers: int, progress: bool, desc: str, fn=None) -> list[dict]:
    """Render ``tasks`` with ``fn`` (default :func:`_render`; a module-level function returning a dict with
    the task's ``id``), in any order, any number of processes: every task has its own RNG."""
    fn = _render if fn is None else fn
    from zfnet.progress import bar

    results: list[dict | None] = [None] * len(tasks)
    pool = None
    if workers > 1 and len(tasks) >= max(_POOL_MIN_TASKS, 1):
        # fork before a tqdm bar starts its monitor thread; the workers only need numpy and PIL
        ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        pool = ctx.Pool(workers)
    shown = bar(total=len(tasks), desc=desc, unit="img", disable=not progress)
    try:
        it = pool.imap_unordered(fn, tasks, chunksize=8) if pool else map(fn, tasks)
        for r in it:
            results[r["id"]] = r
            shown.update(1)
    finally:
        shown.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    return results  # type: ignore[return-value]


