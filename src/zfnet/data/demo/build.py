"""Entry point of the demo data: :func:`generate` plans every dataset, renders all images in one
process pool, writes each dataset's annotation files and ``summary.json``, and atomically replaces
``out_dir`` (see :mod:`zfnet.data.demo` for the layout and ground-truth conventions)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from zfnet.data.demo import broden, caltech, dogscats, imagenet, voc
from zfnet.data.demo.config import _config
from zfnet.data.demo.render import _run

__all__ = ["generate"]


def _remove_stale_siblings(out_dir: Path) -> None:
    """Delete ``<out_dir>.tmp-<pid>`` / ``.old-<pid>`` left by runs whose process is gone (killed)."""
    for sib in out_dir.parent.glob(f"{out_dir.name}.*-*"):
        kind, _, pid = sib.name[len(out_dir.name) + 1 :].partition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # that run is still going
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(sib, ignore_errors=True)


def generate(cfg: Mapping, out_dir: str | Path, progress: bool = True) -> dict:
    """Write the demo datasets under ``out_dir`` (atomically replacing it) and return the summary.

    Raises ``ValueError`` naming the offending key for a bad config.
    """
    c = _config(cfg)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_siblings(out_dir)
    tmp = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        summary = _generate_into(c, tmp, progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.is_symlink() or out_dir.is_file():
        out_dir.unlink()
    if out_dir.exists():
        old = out_dir.with_name(f"{out_dir.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)
    return summary


def _generate_into(c: dict, out: Path, progress: bool) -> dict:
    inet_root = out / "ILSVRC2012"
    inet_tasks, inet_meta, wnids = imagenet._imagenet_plan(c, inet_root)
    cal_tasks, cal_meta = {}, {}
    for ds in ("caltech101", "caltech256"):
        cal_tasks[ds], cal_meta[ds] = caltech._caltech_plan(c, ds, out / ds)
    dup_plans = caltech._plan_duplicates(c, cal_meta, inet_tasks, inet_meta)

    voc_root = out / "VOC2012"
    voc_ids, voc_tasks = voc.plan(c, voc_root)
    cats = c["dogscats"]["train_per_class"] + c["dogscats"]["test"] > 0
    cats_tasks, cats_meta = dogscats.plan(c, out / "dogscats") if cats else ([], [])

    # phase 1: everything drawn (duplicate slots are skipped and filled in phase 2)
    dup_slots = {ds: {d["slot"]: d for d in dup_plans[ds]} for ds in dup_plans}
    all_tasks: list[dict] = []
    refs: list[tuple[str, int]] = []
    for i, t in enumerate(inet_tasks):
        all_tasks.append(t)
        refs.append(("imagenet", i))
    for ds in ("caltech101", "caltech256"):
        for i, t in enumerate(cal_tasks[ds]):
            if cal_meta[ds][i]["slot"] in dup_slots[ds]:
                continue
            all_tasks.append(t)
            refs.append((ds, i))
    for i, t in enumerate(voc_tasks):
        all_tasks.append(t)
        refs.append(("voc", i))
    for i, t in enumerate(cats_tasks):  # after every other dataset's: their task ids stay as they were
        all_tasks.append(t)
        refs.append(("dogscats", i))
    for j, t in enumerate(all_tasks):
        t["id"] = j
        t["path"] = str(out / t["rel"])
    results = _run(all_tasks, c["workers"], progress, "demo data")
    res = {"imagenet": {}, "caltech101": {}, "caltech256": {}, "voc": {}, "dogscats": {}}
    for (ds, i), r in zip(refs, results):
        res[ds][i] = r

    # phase 2: planted duplicates, copied from the ImageNet-train JPEGs just written
    dup_tasks, dup_refs = [], []
    for ds in ("caltech101", "caltech256"):
        for i, m in enumerate(cal_meta[ds]):
            d = dup_slots[ds].get(m["slot"]) if m["slot"] else None
            if d is None:
                continue
            src = inet_tasks[d["source"]]
            dup_tasks.append(
                {"kind": "duplicate", "id": len(dup_tasks), "source": src["path"],
                 "path": str(out / cal_tasks[ds][i]["rel"]), "scale": d["scale"],
                 "quality": d["quality"]}
            )  # fmt: skip
            dup_refs.append((ds, i, d))
    for (ds, i, d), r in zip(dup_refs, _run(dup_tasks, 1, False, "duplicates")):
        res[ds][i] = r | {"duplicate": d}

    gt = out / "ground_truth"
    gt.mkdir()

    # ---- ImageNet files
    imagenet.write_files(c, inet_root, gt, inet_tasks, inet_meta, wnids, res["imagenet"])

    # ---- Caltech files
    cal_summary = caltech.write_files(c, gt, cal_tasks, cal_meta, inet_tasks, res)

    # ---- VOC files
    n_objects, splits = voc.write_files(c, voc_root, voc_ids, res["voc"])

    # ---- probe set for network dissection (Broden layout)
    probe = broden.write(c, out / "broden", progress) if c["broden"]["images"] > 0 else None

    # ---- Kaggle "Dogs vs. Cats" layout (fine-tuning)
    cats_results = [res["dogscats"][i] for i in range(len(cats_tasks))]
    cats_summary = dogscats.write_files(gt, cats_tasks, cats_meta, cats_results) if cats else None

    # ---- summary
    files, nbytes = 0, 0
    for p in out.rglob("*"):
        if p.is_file():
            files += 1
            nbytes += p.stat().st_size
    n_images = len(inet_tasks) + sum(len(v) for v in cal_tasks.values()) + len(voc_tasks)
    summary = {
        "seed": c["seed"],
        "imagenet": {
            "classes": c["imagenet"]["num_classes"],
            "train": sum(1 for m in inet_meta if m["split"] == "train"),
            "val": sum(1 for m in inet_meta if m["split"] == "val"),
        },
        **cal_summary,
        "voc": {
            "images": len(voc_ids),
            "objects": n_objects,
            "train": len(splits["train"]),
            "val": len(splits["val"]),
        },
        **({"broden": probe} if probe is not None else {}),
        **({"dogscats": cats_summary} if cats_summary is not None else {}),
        "images": n_images,
        "files": files,  # every file under out_dir except summary.json itself
        "bytes": nbytes,
    }
    with open(out / "summary.json", "w", encoding="utf-8", newline="\n") as f:
        json.dump(summary, f, indent=2, sort_keys=False)
        f.write("\n")
    return summary


if __name__ == "__main__":  # pragma: no cover - manual use: python -m zfnet.data.demo.build OUT_DIR
    import sys
    import time

    t0 = time.perf_counter()
    from omegaconf import OmegaConf

    conf = OmegaConf.load(Path(__file__).resolve().parents[4] / "conf" / "demo_data" / "demo.yaml")
    summ = generate(conf, sys.argv[1] if len(sys.argv) > 1 else "data/demo")
    print(json.dumps(summ, indent=2), f"\n{time.perf_counter() - t0:.1f} s")
