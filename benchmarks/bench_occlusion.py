"""Occlusion speed on torchvision ``vgg16`` at 224 (issue 14): ``occlusion_maps`` against Captum's
``Occlusion`` with the same sliding window, strides, baseline and chunk, as one ratio in one run, with the
values checked equal.

Setting: ``torchvision.models.vgg16(weights=None)`` (random weights, ``torch.manual_seed(0)``, eval mode),
one N(0, 50^2) image (mean-subtracted scale, seed 1), target = the unoccluded image's most probable class
(so the probability reacts to the square), a 32-pixel square at stride 16 (the paper's proportions at 224:
13 x 13 = 169 positions), ``--chunk`` positions per batch for both (Captum's ``perturbations_per_eval``).

* ours: ``occlusion_maps(model, image, target, 32, 16, layer="features.28", chunk=chunk)`` (all three of
  Fig. 7's maps: the strongest conv5_3 map's total activation, P(target), the most probable class; vgg's
  layers allow the incremental sweep, which recomputes only the squares' receptive fields);
* Captum: ``Occlusion(lambda b: softmax(model(b))).attribute(image, sliding_window_shapes=(3, 32, 32),
  strides=(3, 16, 16), baselines=0.0, target=target, perturbations_per_eval=chunk)`` (P(target) only).

Equivalence: our square is filled with ``fill=0`` (the default: the images are mean-subtracted, so 0 is the
mean, the paper's grey), Captum's baseline is 0.0: the same occluded images. Captum's attribution of a pixel
is the mean, over the windows covering it, of P(unoccluded) - P(occluded at that window); ours gives
P(occluded) per position, and ``pixel_attribution(prob, unoccluded_prob, 32, 16, (224, 224))`` spreads it
the same way. Since stride 16 divides 224 - 32, both use the same 169 positions, and the spreading is
invertible (the top-left 16 x 16 block of window (i, j) is covered only by windows (i', j') with i' <= i,
j' <= j: solve in raster order), so equal pixel maps mean equal per-position probabilities. Values: max abs
difference <= 1e-4 x max |attribution| (float32; observed about 2e-5 relative: the incremental sweep sums
in another order).

Timing: ``--rounds`` interleaved rounds (``_common.interleaved``, waiting up to ``--idle-wait`` s for a
quiet machine, logging the cores used by us and by others); ratio = median over rounds of Captum / ours.

    .venv/bin/python benchmarks/bench_occlusion.py [--rounds 2] [--chunk 32] [--threads 1]

Writes ``benchmarks/results/occlusion.json``. About 4.5 minutes on 2 busy CPU cores with the defaults
(Captum about 67 s per sweep at 1 thread, ours about 12 s; the warm-up runs each once more).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import LOG, interleaved, machine, median_ratio, save  # noqa: E402

from zfnet.analysis.occlusion import occlusion_maps, pixel_attribution  # noqa: E402

REL_TOL = 1e-4


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=32, help="positions per batch, both methods")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--stride", type=int, default=16)
    ap.add_argument("--layer", default="features.28", help="our feature map's layer (conv5_3)")
    ap.add_argument("--idle-wait", type=float, default=5.0, help="max seconds to wait for a quiet machine per call")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    _common.IDLE_WAIT_S = args.idle_wait
    from captum.attr import Occlusion

    torch.manual_seed(0)
    model = torchvision.models.vgg16(weights=None).eval()
    image = torch.randn(3, 224, 224, generator=torch.Generator().manual_seed(1)) * 50.0
    with torch.no_grad():
        target = int(model(image[None]).argmax())
    size, stride, chunk = args.size, args.stride, args.chunk
    if (224 - size) % stride:
        sys.exit("--stride must divide 224 - size (else Captum adds a truncated window at the border)")

    def ours():
        return occlusion_maps(model, image, target, size, stride, layer=args.layer, chunk=chunk)

    occ = Occlusion(lambda batch: torch.softmax(model(batch), dim=1))

    def captum():
        with torch.no_grad():
            return occ.attribute(image[None], sliding_window_shapes=(3, size, size), strides=(3, stride, stride),
                                 baselines=0.0, target=target, perturbations_per_eval=chunk)[0, 0]

    mine = ours()  # warm-up (oneDNN primitive caches, allocator) and the values
    ref = captum()
    expected = pixel_attribution(mine["prob"], mine["unoccluded"]["prob"], size, stride, (224, 224))
    diff = float((ref.double() - expected).abs().max())
    scale = float(expected.abs().max())
    equal = diff <= REL_TOL * scale and scale > 0

    LOG.clear()
    times = interleaved({"captum": captum, "ours": ours}, rounds=args.rounds)
    ratio = median_ratio(times["captum"], times["ours"])
    result = {
        "benchmark": "occlusion on torchvision vgg16 at 224: occlusion_maps (3 maps, incremental) vs "
                     "captum.attr.Occlusion (probability only), same window, strides, baseline and chunk",
        "config": {"model": "torchvision vgg16, weights=None, torch.manual_seed(0), eval", "input": 224,
                   "size": size, "stride": stride, "positions": int(mine["prob"].numel()), "chunk": chunk,
                   "target": target, "fill": "0 (ours) / baselines=0.0 (Captum)", "layer": args.layer,
                   "method": mine["method"], "rounds": args.rounds, "threads": torch.get_num_threads(),
                   "torch": torch.__version__, "cpu": platform.processor() or platform.machine()},
        "seconds": times,
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "ratio": ratio,
        "ratio_target": 2.0,
        "target_met": ratio >= 2.0,
        "values": {"compared": "Captum attribution vs pixel_attribution(our prob map, our unoccluded prob)",
                   "max_abs_diff": diff, "max_abs_attribution": scale, "tolerance": f"{REL_TOL} x max |attribution|",
                   "equal": equal, "prob_range": [float(mine["prob"].min()), float(mine["prob"].max())]},
        "machine": machine(),
        "log": LOG,
    }
    save("occlusion", result)
    print(f"{result['config']['positions']} positions, chunk {chunk}: Captum {result['median_s']['captum']:.1f} s, "
          f"ours {result['median_s']['ours']:.1f} s -> {ratio:.1f}x (target 2x); values equal: {equal} "
          f"(max |diff| {diff:.1e}, max |attribution| {scale:.1e})", file=sys.stderr)
    if not equal:
        sys.exit("probability maps differ from Captum's")
    return result


if __name__ == "__main__":
    main()
