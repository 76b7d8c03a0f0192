"""The train stage's validation at N and 10 N images: memory flat in the number of images (issue 24).

On a generated ImageNet-shaped prepared set (``_imagenet_like.make_prepared``: 1,000 classes, 256 x 256 npy
shards of 1,000 images, made under /tmp/val/ and deleted after), the train stage's own validation runs: the
real ``ShardDataModule`` (``in_memory=False``: validation streamed from the shards) and ``Classifier``'s
validation loop through ``pl.Trainer.validate`` at crop 224, centre-crop and ten-crop metrics, batch 128,
``train.eval_crop_chunk`` at its default. Each size runs in its own fresh subprocess (one torch thread, no
loader workers, so one process holds everything): peak RSS is that process's ``ru_maxrss``, wall time that of
``validate`` (index build, reads, crops, forwards, metrics). The model is ZFNet at ``model.width`` 0.0625 (a
narrow network, so 10 N images x 10 crops fit in ~20 minutes on a shared 2-core machine; the data path, the
crops and the chunking are those of full width).

Targets: peak RSS at 10 N within 10 % of N's; time at 10 N at most 12 x N's.

For the record, the old path at N: the validation split loaded whole (``shards.load_split`` + ``np.stack``,
what ``in_memory: false`` did before and ``in_memory: true`` still does); its RSS grows with N.

Separately, the memory the chunk bounds: ``Classifier.ten_crop_logits`` on one batch of 128 images (256 px,
float) at full width, crop 224, 1,000 classes, in fresh subprocesses: peak RSS with the default chunk (320
crops per forward) and without a chunk (all 1,280 crops in one forward, as before). The unchunked forward at
batch 128 needs ~10 GB more; it runs only when the machine has that much memory available, and batches 32 and
64 unchunked are always measured (the growth is linear in the crops per forward).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_scale_validation.py     # BENCH_N=2000
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

N = int(os.environ.get("BENCH_N", 2000))
WIDTH = float(os.environ.get("BENCH_WIDTH", 0.0625))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 1))
TENCROP = os.environ.get("BENCH_TENCROP", "1") == "1"  # 0: skip the ten-crop memory figure (a quick try)
BATCH, CROP, SIZE, CLASSES = 128, 224, 256, 1000
SHARD = min(1000, N // 2)  # images per shard (ImageNet's prepare default: 1000); N is a whole number of shards
GB = 1 << 30


def _rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def child_validate(prepared: str, in_memory: bool, width: float, chunk: int) -> dict:
    import pytorch_lightning as pl
    import torch

    from zfnet.data.datamodule import ShardDataModule
    from zfnet.training.lightning_module import Classifier

    torch.set_num_threads(1)
    torch.manual_seed(0)
    module = Classifier({"name": "zfnet", "width": width}, num_classes=CLASSES, crop=CROP, eval_crop_chunk=chunk)
    dm = ShardDataModule(prepared, crop=CROP, batch_size=BATCH, in_memory=in_memory, num_workers=0)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False)
    before = _rss_now()
    start = time.perf_counter()
    (metrics,) = trainer.validate(module, datamodule=dm, verbose=False)
    wall = time.perf_counter() - start
    return {"wall_s": round(wall, 2), "peak_rss_bytes": _peak_rss(), "rss_before_validate_bytes": before,
            "batches": int(trainer.num_val_batches[0]), "val_10crop_top1_error": round(metrics["val_10crop/top1_error"], 4)}


def child_tencrop(batch: int, chunk: int) -> dict:
    import torch

    from zfnet.training.lightning_module import Classifier

    torch.set_num_threads(1)
    torch.manual_seed(0)
    module = Classifier({"name": "zfnet", "width": 1.0}, num_classes=CLASSES, crop=CROP, eval_crop_chunk=chunk).eval()
    x = torch.randint(0, 256, (batch, 3, SIZE, SIZE), dtype=torch.uint8).float() - 118  # a normalized batch
    before = _rss_now()
    start = time.perf_counter()
    with torch.inference_mode():
        logits = module.ten_crop_logits(x)
    wall = time.perf_counter() - start
    assert logits.shape == (batch, 10, CLASSES)
    peak = _peak_rss()
    return {"batch": batch, "crops": batch * 10, "crops_per_forward": min(batch * 10, (chunk // 10) * 10),
            "peak_rss_bytes": peak, "rss_before_bytes": before, "peak_above_before_bytes": peak - before,
            "wall_s": round(wall, 2)}


def _child(*args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(HERE.parent / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, __file__, "--child", *args], env=env, check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _subset(full: Path, out: Path, shards: int) -> Path:
    """The first ``shards`` val shards of ``full`` (and its train shard, mean, classes) as links."""
    out.mkdir()
    for path in full.iterdir():
        if not path.name.startswith("val-") or int(path.stem.split("-")[1]) < shards:
            (out / path.name).symlink_to(path)
    return out


def main() -> None:
    from _common import IDLE_WAIT_S, machine, save, wait_for_idle
    from _imagenet_like import make_prepared

    defaults = __import__("yaml").safe_load((HERE.parent / "conf" / "train" / "default.yaml").read_text())
    chunk = int(defaults["eval_crop_chunk"])
    base = Path("/tmp/val")
    base.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="scale-validation-", dir=base))
    result: dict = {"what": __doc__.split("    PYTHONPATH")[0].strip(), "machine_before": machine(),
                    "settings": {"n": N, "ten_n": 10 * N, "image": SIZE, "crop": CROP, "batch": BATCH,
                                 "classes": CLASSES, "model": "zfnet", "model.width": WIDTH,
                                 "eval_crop_chunk": chunk, "num_workers": 0, "torch_threads": 1,
                                 "shard_size": SHARD, "rounds": ROUNDS}}
    try:
        start = time.perf_counter()
        full = make_prepared(root / "ten_n", val=10 * N, train=64, classes=CLASSES, size=SIZE, shard_size=SHARD)
        small = _subset(full, root / "n", shards=N // SHARD)
        result["generate_s"] = round(time.perf_counter() - start, 1)

        runs: dict[str, list[dict]] = {"n": [], "ten_n": []}
        for _ in range(ROUNDS):  # alternating sizes within a round: a burst of load hits both
            for name, folder in (("n", small), ("ten_n", full)):
                waited = wait_for_idle(IDLE_WAIT_S)
                entry = _child("validate", str(folder), "0", str(WIDTH), str(chunk))
                entry["waited_for_idle_s"] = round(waited, 1)
                entry["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
                runs[name].append(entry)
                print(name, entry, flush=True)
        old = _child("validate", str(small), "1", str(WIDTH), str(chunk))
        print("old path at N", old, flush=True)

        def med(name: str, key: str) -> float:
            values = sorted(r[key] for r in runs[name])
            return values[len(values) // 2]

        rss_n, rss_10n = med("n", "peak_rss_bytes"), med("ten_n", "peak_rss_bytes")
        t_n, t_10n = med("n", "wall_s"), med("ten_n", "wall_s")
        result["streaming_validation"] = {
            "runs": runs,
            "peak_rss_gb": {"n": round(rss_n / GB, 3), "ten_n": round(rss_10n / GB, 3)},
            "rss_ratio_10n_over_n": round(rss_10n / rss_n, 3),
            "wall_s": {"n": t_n, "ten_n": t_10n},
            "time_ratio_10n_over_n": round(t_10n / t_n, 2),
            "targets": {"rss_ratio_at_most": 1.10, "time_ratio_at_most": 12.0},
            "met": {"rss": rss_10n / rss_n <= 1.10, "time": t_10n / t_n <= 12.0},
        }
        result["old_path_load_split_at_n"] = {**old, "peak_rss_gb": round(old["peak_rss_bytes"] / GB, 3),
                                              "note": "validation split stacked in memory (in_memory: true path)"}
    finally:
        shutil.rmtree(root, ignore_errors=True)

    if not TENCROP:
        save("scale_validation_try", result)
        return
    tencrop = {"chunked": _child("tencrop", str(BATCH), str(chunk)), "unchunked": {}}
    for batch in (32, 64):
        tencrop["unchunked"][str(batch)] = _child("tencrop", str(batch), str(10 * batch))
    a, b = (tencrop["unchunked"][k]["peak_above_before_bytes"] for k in ("32", "64"))
    predicted = b + (b - a) * 2  # linear in the crops per forward: batch 128 from 32 and 64
    tencrop["unchunked_128_predicted_above_before_gb"] = round(predicted / GB, 2)
    if _mem_available() > predicted + 6 * GB:  # never squeeze the machine's other users
        tencrop["unchunked"]["128"] = _child("tencrop", str(BATCH), str(10 * BATCH))
    else:
        tencrop["unchunked"]["128"] = {"skipped": f"needs ~{predicted / GB:.1f} GB; {_mem_available() / GB:.1f} GB available"}
    for entry in [tencrop["chunked"], *tencrop["unchunked"].values()]:
        if "peak_rss_bytes" in entry:
            entry["peak_rss_gb"] = round(entry["peak_rss_bytes"] / GB, 3)
            entry["peak_above_before_gb"] = round(entry["peak_above_before_bytes"] / GB, 3)
    result["ten_crop_batch_128_full_width"] = {"eval_crop_chunk": chunk, **tencrop}
    result["machine_after"] = machine()
    save("scale_validation", result)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, args = sys.argv[2], sys.argv[3:]
        if kind == "validate":
            out = child_validate(args[0], args[1] == "1", float(args[2]), int(args[3]))
        else:
            out = child_tencrop(int(args[0]), int(args[1]))
        print(json.dumps(out))
    else:
        main()
