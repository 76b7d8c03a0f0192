"""Activation maximization speed (issues 16, 26): one image for each of 64 conv5 channels of our demo model,
a fixed number of steps, timed in interleaved rounds (each method once per round, in turn) with the median
over rounds; the images of every method compared with those of one-at-a-time runs.

Setting: ``zfnet.models.build("zfnet", 10, width=0.5, input_size=112)`` (the demo model; random weights,
``torch.manual_seed(0)``, eval mode), objective: the mean activation of a channel of ``conv5`` (the block's
output), ``--steps`` Adam steps at lr 0.05, Lucid's decorrelated Fourier parameterization, jitter 4 px, scale
in {0.95..1.05}, rotation ±5°, L2 1e-3, 1 thread. Methods, all doing that same work:

* ``batched``: ``maximize`` with the 64 objectives (one forward of 64 images per step).
* ``batched_chunk1``: the same with ``chunk=1`` (the model runs one image at a time, the rest batched), whose
  images are those of one-at-a-time runs.
* ``one_at_a_time``: 64 calls of ``maximize`` with one objective.
* ``hand_batched``: the strongest baseline a user would write by hand: a plain PyTorch loop over the same 64
  images at once, same parameterization, same per-image transformations (same seeds), same objective and
  L2, ``torch.optim.Adam``, the model called directly up to conv5 (no hooks). The same work: with the model
  and parameterization in float64 its images equal ``batched``'s to 2e-16 of their range (8 steps, 4
  channels, checked once by hand).

torch-lucent is not installed in the project's environment, so it is not compared (the earlier 3.42x against
its ``render_vis`` compared unequal work: other transformations, objective 0.019 against our 0.050).

``model_only_*``: the same steps of the bare model only, forward to conv5 and the input-gradient backward,
64 images at once and 64 calls of one. ``ceiling_if_only_model_cost`` = one_at_a_time / model_only_batched:
what ``batched`` would reach over ``one_at_a_time`` if everything but the model's batched forward and
backward cost nothing: a ceiling for our algorithm at this batch size and with these kernels, not a bound on
every exact algorithm. ``model_only_ratio`` (one at a time / batched on the bare model) is what batching
buys the model itself; the synthesis ratio can exceed it, as the per-call work around the model (parameter-
ization, transformations, Adam, Python) gains more from batching than the convolutions do.

Ratios are of this process's CPU seconds (one thread, so its CPU time is its work whatever others run on
the shared machine), per round, median over rounds; ``wall_ratios`` are the same of wall-clock times.

Images: ``max_abs_image_diff_vs_one_at_a_time`` of each method, absolute and relative to the range of the
one-at-a-time images. In float32 the batched kernels round differently from a batch of one and the ascent
amplifies it (see ``zfnet.analysis.synthesis``): only ``batched_chunk1`` is expected to be equal.

    .venv/bin/python benchmarks/bench_synthesis.py [--steps 16] [--channels 64] [--rounds 3] [--threads 1]

Writes ``benchmarks/results/synthesis.json``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import LOG, interleaved, machine, median_ratio, save  # noqa: E402

from zfnet.analysis.synthesis.parameterization import Parameterization, random_affine  # noqa: E402
from zfnet.analysis.synthesis import channel, maximize
from zfnet.analysis.synthesis.optimize import _seed  # noqa: E402
from zfnet.models import build  # noqa: E402

SIZE, LR, L2, SCALE = 112, 0.05, 1e-3, 64.0
TRANSFORMS = dict(jitter=4.0, scale=(1.0, 0.975, 1.025, 0.95, 1.05), rotate=5.0)  # maximize's defaults


def _to_conv5(model, x):
    return model.conv5(model.conv4(model.conv3(model.conv2(model.conv1(x)))))


def _conv5_means(model, images: torch.Tensor, chans) -> torch.Tensor:
    with torch.no_grad():
        a = _to_conv5(model, images)
    return a[torch.arange(len(chans)), torch.as_tensor(chans)].mean((1, 2))


def hand_batched(model, chans, steps: int) -> torch.Tensor:
    """A plain PyTorch activation-maximization loop, all images at once: Lucid's parameterization, per-image
    random transformations from per-image generators, Adam from torch.optim, the model called directly."""
    objs = [channel("conv5", c) for c in chans]
    gens = [torch.Generator().manual_seed(_seed(0, o.key())) for o in objs]  # the same seeds as maximize
    P = Parameterization("fft", SIZE, SIZE, scale=SCALE)
    theta = P.init(gens, 0.01).requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=LR)
    rows, cols = torch.arange(len(chans)), torch.as_tensor(chans)
    for p in model.parameters():
        p.requires_grad_(False)
    for _ in range(steps):
        x = P.image(theta)
        a = _to_conv5(model, random_affine(x, gens, **TRANSFORMS))
        total = a[rows, cols].mean((1, 2)) - L2 * (x / SCALE).pow(2).flatten(1).mean(1)
        opt.zero_grad(set_to_none=True)
        (-total.sum()).backward()
        opt.step()
    with torch.no_grad():
        return P.image(theta)


def ratios(t: dict[str, list[float]]) -> dict[str, float]:
    r = {"ratio_hand_batched_over_batched": median_ratio(t["hand_batched"], t["batched"]),
         "ratio_one_at_a_time_over_batched": median_ratio(t["one_at_a_time"], t["batched"]),
         "ratio_one_at_a_time_over_batched_chunk1": median_ratio(t["one_at_a_time"], t["batched_chunk1"]),
         "model_only_ratio": median_ratio(t["model_only_one_at_a_time"], t["model_only_batched"]),
         "ceiling_if_only_model_cost": median_ratio(t["one_at_a_time"], t["model_only_batched"]),
         "model_share_of_batched": median_ratio(t["model_only_batched"], t["batched"])}
    return {k: round(v, 2) for k, v in r.items()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--idle-wait", type=float, default=5.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    _common.IDLE_WAIT_S = args.idle_wait
    torch.manual_seed(0)
    model = build("zfnet", 10, width=0.5, input_size=SIZE).eval()
    chans = list(range(args.channels))
    objs = [channel("conv5", c) for c in chans]
    kw = dict(steps=args.steps, lr=LR, l2=L2, size=SIZE, scale=SCALE)
    out: dict[str, torch.Tensor] = {}
    x_all = torch.randn(args.channels, 3, SIZE, SIZE)

    def fb(x):
        x = x.clone().requires_grad_(True)
        a = _to_conv5(model, x)
        obj = a[torch.arange(len(x)), torch.as_tensor(chans[: len(x)])].mean()
        torch.autograd.grad(obj, x)  # the input's gradient only, as maximize computes it

    methods = {
        "batched": lambda: out.__setitem__("batched", maximize(model, objs, **kw).images),
        "batched_chunk1": lambda: out.__setitem__("batched_chunk1", maximize(model, objs, chunk=1, **kw).images),
        "one_at_a_time": lambda: out.__setitem__(
            "one_at_a_time", torch.cat([maximize(model, [o], **kw).images for o in objs])),
        "hand_batched": lambda: out.__setitem__("hand_batched", hand_batched(model, chans, args.steps)),
        "model_only_batched": lambda: [fb(x_all) for _ in range(args.steps)],
        "model_only_one_at_a_time": lambda: [fb(x_all[i:i + 1]) for _ in range(args.steps) for i in range(len(x_all))],
    }
    cpu: dict[str, list[float]] = {k: [] for k in methods}  # this process's CPU seconds (1 thread: robust to others' load)

    def cpu_timed(name, fn):
        def run():
            start = time.process_time()
            fn()
            cpu[name].append(time.process_time() - start)
        return run

    methods = {k: cpu_timed(k, f) for k, f in methods.items()}
    # warm-up on the shapes each method times: the full batch (or single images) for 2 steps
    maximize(model, objs, **{**kw, "steps": 2})
    maximize(model, objs, chunk=1, **{**kw, "steps": 2})
    maximize(model, objs[:1], **{**kw, "steps": 2})
    hand_batched(model, chans, 2)
    fb(x_all), fb(x_all[:1])
    times = interleaved(methods, rounds=args.rounds)
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = out["one_at_a_time"]
    span = float(ref.max() - ref.min())
    diffs = {k: float((out[k] - ref).abs().max()) for k in ("batched", "batched_chunk1", "hand_batched")}
    result = {
        "setting": {"model": "zfnet width 0.5, 112 input, random weights (seed 0)", "layer": "conv5",
                    "objective": "mean activation of one channel per image", "channels": args.channels,
                    "steps": args.steps, "rounds": args.rounds, "transforms": "jitter 4 px, scale {0.95..1.05}, "
                    "rotation 5 deg (each image its own draws, same seeds in every method)",
                    "parameterization": "Lucid decorrelated FFT, scale 64", "lr": LR, "l2": L2,
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "python": platform.python_version()},
        "seconds_median": {k: round(v, 3) for k, v in med.items()},
        "seconds_rounds": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "cpu_seconds_median": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
        "ratios_from": "CPU seconds of this process (1 thread), per-round ratios, median over rounds; "
                       "wall-clock ratios beside them (wall_ratios) are disturbed when others load the machine",
        **ratios(cpu),
        "wall_ratios": ratios(times),
        "strongest_baseline": "hand_batched (plain PyTorch loop, all images at once, torch.optim.Adam); "
                              "torch-lucent not installed, not compared",
        "mean_objective": {k: float(_conv5_means(model, out[k], chans).mean())
                           for k in ("batched", "batched_chunk1", "one_at_a_time", "hand_batched")},
        "max_abs_image_diff_vs_one_at_a_time": {k: round(v, 6) for k, v in diffs.items()},
        "max_abs_image_diff_vs_one_at_a_time_relative_to_range": {k: float(f"{v / span:.3g}") for k, v in diffs.items()},
        "one_at_a_time_image_range": round(span, 3),
        "log": LOG,
        "machine": {**machine(), "note": "shared 2-core machine; rounds interleaved, medians"},
    }
    save("synthesis", result)
    return result


if __name__ == "__main__":
    main()
