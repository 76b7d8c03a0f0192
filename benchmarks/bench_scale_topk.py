"""The visualize stage's top-k search at N and 10 N validation images: peak memory flat, time linear (issue 24).

On a generated ImageNet-shaped prepared set (``_imagenet_like.make_prepared``: 1,000 classes, 256 x 256
shards of 1,000 images, made in a temporary folder and deleted afterwards), each measurement runs in a fresh
subprocess (peak RSS = the child's ``ru_maxrss``):

* ``stream`` (the stage's own path, ``zfnet.stages.visualize.stream.ValidationStream`` + ``top_activations``, then
  ``pick`` of the winners of 4 maps per layer, as ``zfnet.stages.visualize.deconv.fig2_and_fig4`` does): conv1..conv5 of our
  zfnet at 224 (width ``BENCH_WIDTH``, 0.25 by default so that 10 N images run in minutes on 2 cores), k = 9,
  batches of ``visualize.batch_size`` (64), at N and 10 N images, ``BENCH_REPEATS`` times each, interleaved;
* ``stacked`` (the path before issue 24, for the record): every searched image decoded into one float tensor
  (the old ``zfnet.visualize.network_inputs``), then the same search on that tensor, at N only (at 10 N it
  would need 10x its memory).

Targets: peak RSS at 10 N within 10 % of N's; time at 10 N at most 12x N's (median over repeats).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_scale_topk.py    # BENCH_N=2000, BENCH_REPEATS=3
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

N = int(os.environ.get("BENCH_N", 2000))
REPEATS = int(os.environ.get("BENCH_REPEATS", 3))
WIDTH = float(os.environ.get("BENCH_WIDTH", 0.25))
THREADS = int(os.environ.get("BENCH_THREADS", 1))
BATCH, K, MAPS, CROP = 64, 9, 4, 224
LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def stacked_inputs(prepared: Path, crop: int, n: int):
    """The visualize stage's inputs before issue 24 (``zfnet.visualize.network_inputs``): n images, one tensor."""
    import numpy as np
    import torch

    from zfnet.data import shards
    from zfnet.data.crops import crop_offsets

    mean = torch.from_numpy(np.load(prepared / "mean.npy")).float().permute(2, 0, 1)
    images = []
    for shard in shards.shards(prepared, "val"):
        for _key, image, _label in shards.iter_shard(shard):
            images.append(torch.from_numpy(image.copy()).permute(2, 0, 1).float())
            if len(images) == n:
                break
        if len(images) == n:
            break
    top, left = crop_offsets(mean.shape[-1], crop)[4]
    x = torch.stack(images) - mean
    return x[..., top:top + crop, left:left + crop]


def child(mode: str, prepared: Path, n: int) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    from zfnet.analysis.topk import choose_maps, pick, top_activations
    from zfnet.models import build
    from zfnet.stages.visualize.stream import ValidationStream

    torch.manual_seed(0)
    model = build("zfnet", 1000, width=WIDTH, input_size=CROP, init="kaiming").eval()
    before = _rss_mb()
    start = time.perf_counter()
    data = ValidationStream(prepared, CROP, n, BATCH) if mode == "stream" else stacked_inputs(prepared, CROP, n)
    top = top_activations(model, data, LAYERS, k=K, batch_size=BATCH)
    searched = time.perf_counter()
    winners = torch.cat([top[l].image_index[choose_maps(top[l], MAPS, 0)].reshape(-1) for l in LAYERS])
    picked = pick(data, winners)
    end = time.perf_counter()
    return {"mode": mode, "images": n, "search_s": round(searched - start, 2), "pick_s": round(end - searched, 2),
            "wall_s": round(end - start, 2), "picked_images": len(picked.index),
            "rss_before_mb": round(before, 1), "peak_rss_mb": round(_rss_mb(), 1)}


def run_child(mode: str, prepared: Path, n: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "ZFNET_PROGRESS": "off"}
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(prepared), str(n)], env=env,
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    from _common import machine, save
    from _imagenet_like import make_prepared

    tmp = Path(tempfile.mkdtemp(prefix="zfnet-scale-topk-", dir=os.environ.get("BENCH_TMP")))
    try:
        start = time.perf_counter()
        prepared = make_prepared(tmp / "prepared", val=10 * N, classes=1000, size=256, shard_size=1000)
        made = time.perf_counter() - start
        runs = {"stream_N": [], "stream_10N": [], "stacked_N": []}
        for _ in range(REPEATS):  # interleaved: the machine is shared
            runs["stream_N"].append(run_child("stream", prepared, N))
            runs["stream_10N"].append(run_child("stream", prepared, 10 * N))
        runs["stacked_N"].append(run_child("stacked", prepared, N))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(key, field):
        return statistics.median(r[field] for r in runs[key])

    rss_ratio = med("stream_10N", "peak_rss_mb") / med("stream_N", "peak_rss_mb")
    time_ratio = med("stream_10N", "wall_s") / med("stream_N", "wall_s")
    result = {
        "what": "visualize stage top-k search (ValidationStream + top_activations, conv1..conv5, k=9, then pick of "
                "the winners of 4 maps per layer) at N and 10 N validation images, 256/224; each run a fresh "
                "subprocess, peak RSS = ru_maxrss; 'stacked' = the pre-issue-24 path (all images in one tensor)",
        "model": f"zfnet width {WIDTH} at {CROP}, 1000 classes", "batch_size": BATCH, "threads": THREADS,
        "N": N, "repeats": REPEATS, "dataset_seconds": round(made, 1), "machine": machine(),
        "note": "shared 2-core machine (other jobs running): times are indicative",
        "median": {key: {"wall_s": med(key, "wall_s"), "peak_rss_mb": med(key, "peak_rss_mb"),
                         "images_per_s": round(runs[key][0]["images"] / med(key, "wall_s"), 1)} for key in runs},
        "rss_10N_over_N": round(rss_ratio, 3), "time_10N_over_N": round(time_ratio, 2),
        "targets": {"rss_within_10_percent": bool(rss_ratio <= 1.10), "time_at_most_12x": bool(time_ratio <= 12)},
        "stacked_N_over_stream_N_rss": round(med("stacked_N", "peak_rss_mb") / med("stream_N", "peak_rss_mb"), 2),
        "runs": runs,
    }
    save("scale_topk", result)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))))
    else:
        main()
