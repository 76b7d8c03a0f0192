"""Activation maximization speed (issue 16): one image for each of 64 conv5 channels of our demo model,
a fixed number of steps, batched (``maximize`` with 64 objectives) against a one-at-a-time loop of the same
code, and against torch-lucent's ``render_vis`` (one call per channel) when it imports; one run, with the
mean objective each reaches.

Setting: ``zfnet.models.build("zfnet", 10, width=0.5, input_size=112)`` (the demo model; random weights,
``torch.manual_seed(0)``, eval mode), objective: the mean activation of a channel of ``conv5`` (the block's
output), ``--steps`` Adam steps at lr 0.05, Lucid's defaults otherwise (decorrelated Fourier
parameterization; ours: jitter 4 px, scale in {0.95..1.05}, rotation ±5°; L2 1e-3). The objective reported
for every method is the channel's mean activation of the final image, untransformed, evaluated by the same
forward. Lucent runs in its own [0, 1] image space, mapped to ours by ``x * 255 - 120`` as its first
transformation (``preprocess=False``); it is loaded from ``--lucent`` (a ``pip install --no-deps --target``
folder holding torch-lucent 0.1.8, kornia 0.4.1 and decorator; IPython, imported only for notebook display,
is stubbed).

Bound (``ratio_model_only``): the same steps of the bare model, forward to conv5 and the input-gradient
backward, 64 images at once against 64 calls of one: what batching itself buys on this machine, with the
parameterization, transforms and optimizer free. ``synthesis_share_of_batched`` is that bare model time
over the batched synthesis time (1.0: all of it is the model).

    .venv/bin/python benchmarks/bench_synthesis.py [--steps 16] [--channels 64] [--lucent /tmp/lucent]

Writes ``benchmarks/results/synthesis.json``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import LOG, machine, save, timed  # noqa: E402

from zfnet.analysis.synthesis import channel, maximize  # noqa: E402
from zfnet.models import build  # noqa: E402


def _conv5_means(model, images: torch.Tensor, chans) -> torch.Tensor:
    with torch.no_grad():
        a = model.conv5(model.conv4(model.conv3(model.conv2(model.conv1(images)))))
    return a[torch.arange(len(chans)), torch.as_tensor(chans)].mean((1, 2))


def _lucent(path: str):
    sys.path.insert(0, path)
    ip, disp = types.ModuleType("IPython"), types.ModuleType("IPython.display")
    disp.display = disp.HTML = disp.Image = lambda *a, **k: None
    ip.display = disp
    sys.modules.setdefault("IPython", ip)
    sys.modules.setdefault("IPython.display", disp)
    from lucent.optvis import param, render, transform  # noqa: F401

    return render, param, transform


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--lucent", default="/tmp/lucent")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--idle-wait", type=float, default=5.0)
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    _common.IDLE_WAIT_S = args.idle_wait
    torch.manual_seed(0)
    model = build("zfnet", 10, width=0.5, input_size=112).eval()
    chans = list(range(args.channels))
    objs = [channel("conv5", c) for c in chans]
    kw = dict(steps=args.steps, lr=0.05, size=112)
    maximize(model, objs[:2], **{**kw, "steps": 2})  # warm-up
    out = {}

    def batched():
        out["batched"] = maximize(model, objs, **kw)

    def loop():
        out["loop"] = [maximize(model, [o], **kw) for o in objs]

    # What batching can buy on this machine at best: the bare forward to conv5 and the input-gradient
    # backward, no parameterization, transforms or optimizer, for all 64 images at once against 64 calls of one.
    x_all = torch.randn(args.channels, 3, 112, 112)

    def fb(x):
        x = x.clone().requires_grad_(True)
        a = model.conv5(model.conv4(model.conv3(model.conv2(model.conv1(x)))))
        obj = a[torch.arange(len(x)), torch.as_tensor(chans[: len(x)])].mean()
        torch.autograd.grad(obj, x)  # the input's gradient only, as maximize computes it

    def fb_batched():
        for _ in range(args.steps):
            fb(x_all)

    def fb_loop():
        for _ in range(args.steps):
            for i in range(len(x_all)):
                fb(x_all[i : i + 1])

    times = {"model_only_batched": timed(fb_batched)}
    LOG[-1]["what"] = "model_only_batched"
    times["model_only_one_at_a_time"] = timed(fb_loop)
    LOG[-1]["what"] = "model_only_one_at_a_time"
    times["batched"] = timed(batched)
    LOG[-1]["what"] = "batched"
    times["one_at_a_time"] = timed(loop)
    LOG[-1]["what"] = "one_at_a_time"
    b_img = out["batched"].images
    l_img = torch.cat([r.images for r in out["loop"]])
    result = {
        "setting": {"model": "zfnet width 0.5, 112 input, random weights (seed 0)", "layer": "conv5",
                    "channels": args.channels, "steps": args.steps, "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "python": platform.python_version()},
        "seconds": {k: round(v, 3) for k, v in times.items()},
        "ratio_one_at_a_time_over_batched": round(times["one_at_a_time"] / times["batched"], 2),
        # the bound: the model's own forward+backward, batched vs one at a time (no synthesis code at all)
        "ratio_model_only": round(times["model_only_one_at_a_time"] / times["model_only_batched"], 2),
        "synthesis_share_of_batched": round(times["model_only_batched"] / times["batched"], 2),
        "mean_objective": {"batched": float(_conv5_means(model, b_img, chans).mean()),
                           "one_at_a_time": float(_conv5_means(model, l_img, chans).mean())},
        "batched_vs_loop_max_abs_image_diff": float((b_img - l_img).abs().max()),
        "image_abs_max": float(b_img.abs().max()),
    }
    try:
        render, param, transform = _lucent(args.lucent)
    except Exception as e:  # noqa: BLE001
        result["lucent"] = f"not run: {type(e).__name__}: {e}"
    else:
        to_ours = lambda x: x * 255.0 - 120.0  # noqa: E731

        def lucent_loop():
            imgs = []
            for c in chans:
                torch.manual_seed(c)
                r = render.render_vis(model, f"conv5:{c}", param_f=lambda: param.image(112),
                                      transforms=[to_ours] + transform.standard_transforms, thresholds=(args.steps,),
                                      show_image=False, progress=False, preprocess=False, fixed_image_size=112)
                imgs.append(torch.from_numpy(r[0]).permute(0, 3, 1, 2))
            out["lucent"] = torch.cat(imgs)

        times["lucent"] = timed(lucent_loop)
        LOG[-1]["what"] = "lucent"
        result["seconds"]["lucent_render_vis"] = round(times["lucent"], 3)
        result["ratio_lucent_over_batched"] = round(times["lucent"] / times["batched"], 2)
        result["mean_objective"]["lucent"] = float(_conv5_means(model, to_ours(out["lucent"]), chans).mean())
        result["lucent"] = "torch-lucent 0.1.8 with kornia 0.4.1, --no-deps into " + args.lucent + " (IPython stubbed)"
    result["log"] = LOG
    result["machine"] = machine()
    save("synthesis", result)
    return result


if __name__ == "__main__":
    main()
