"""Occlusion sweep speed: ``zfnet.analysis.occlusion.occlusion_maps`` (the three maps of Fig. 7: feature,
P(correct), most probable class) against Captum's ``Occlusion`` producing the probability map alone.

Setting (issue 7): full-width ZFNet (random weights) at 224, one image, 32-pixel square, stride 16
(13 x 13 = 169 positions), the same chunk size for both (Captum's ``perturbations_per_eval``; default 64,
which keeps Captum's batch near 1 GB; ours is also timed with its own memory-derived chunk). Weights are
kaiming-initialised (conv and fc) so that the class probabilities react to occlusion and the agreement
check means something; the speed does not depend on the weights.

Checks that the two probability maps agree (ours spread onto pixels the way Captum attributes:
``pixel_attribution``), prints the ratio, writes ``benchmarks/results/occlusion.json`` (atomically).

    .venv/bin/python benchmarks/bench_occlusion.py [--repeats 3] [--chunk N] [--threads N] [--no-full]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from zfnet.analysis.occlusion import occlusion_maps, pixel_attribution
from zfnet.models import build

OUT = Path(__file__).resolve().parent / "results" / "occlusion.json"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=64, help="positions per batch, both methods (default 64)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--stride", type=int, default=16)
    ap.add_argument("--no-full", action="store_true", help="skip our method='full' reference timing")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from captum.attr import Occlusion

    torch.manual_seed(0)
    model = build("zfnet", 1000, init="kaiming").eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight)
    image = torch.randn(3, 224, 224, generator=torch.Generator().manual_seed(1)) * 50.0  # mean-subtracted scale
    with torch.no_grad():
        target = int(model(image[None]).argmax())
    size, stride = args.size, args.stride

    # warm-up (allocator, oneDNN primitive caches) and the chunk size
    first = occlusion_maps(model, image, target, size, stride, chunk=args.chunk)
    chunk = first["chunk"]

    def ours():
        return occlusion_maps(model, image, target, size, stride, chunk=chunk)

    def forward(batch):
        return torch.softmax(model(batch), dim=1)

    occ = Occlusion(forward)

    def captum():
        with torch.no_grad():
            return occ.attribute(image[None], sliding_window_shapes=(3, size, size), strides=(3, stride, stride),
                                 baselines=0.0, target=target, perturbations_per_eval=chunk)[0]

    t_ours, t_captum, t_full, t_auto = [], [], [], []
    result = attr = None
    for _ in range(args.repeats):  # interleaved, so background load hits both alike
        t = time.perf_counter()
        result = ours()
        t_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        attr = captum()
        t_captum.append(time.perf_counter() - t)
        t = time.perf_counter()
        auto = occlusion_maps(model, image, target, size, stride)
        t_auto.append(time.perf_counter() - t)
    if not args.no_full:
        t = time.perf_counter()
        full = occlusion_maps(model, image, target, size, stride, chunk=chunk, method="full")
        t_full.append(time.perf_counter() - t)

    expected = pixel_attribution(result["prob"], result["unoccluded"]["prob"], size, stride, (224, 224))
    diff = float((attr[0].double() - expected).abs().max())
    scale = float(expected.abs().max())
    agree = diff <= 1e-5 + 1e-3 * scale
    med_ours, med_captum = statistics.median(t_ours), statistics.median(t_captum)
    report = {
        "benchmark": "occlusion",
        "setting": {"model": "zfnet", "width": 1.0, "input": 224, "size": size, "stride": stride,
                    "positions": int(result["prob"].numel()), "chunk": chunk, "target": target},
        "ours": {"what": "feature + P(correct) + most probable class maps (method=incremental)",
                 "seconds": t_ours, "median_s": med_ours, "method": result["method"]},
        "captum": {"what": "captum.attr.Occlusion, probability attribution only", "seconds": t_captum,
                   "median_s": med_captum},
        "ours_auto_chunk": {"what": "ours with chunk=None (from the memory budget)", "chunk": auto["chunk"],
                            "seconds": t_auto, "median_s": statistics.median(t_auto)},
        "speedup": med_captum / med_ours,
        "agreement": {"max_abs_diff": diff, "max_abs_attribution": scale, "agree": agree},
        "machine": {"threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                    "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                    "torch": torch.__version__, "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
    }
    if t_full:
        report["ours_full"] = {"what": "our direct sweep (method=full), all three maps", "seconds": t_full,
                               "max_abs_prob_diff_vs_incremental": float((full["prob"] - result["prob"]).abs().max())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(f"positions {report['setting']['positions']}, chunk {chunk}, threads {torch.get_num_threads()}")
    print(f"ours (3 maps)      median {med_ours:.2f} s  {[round(t, 2) for t in t_ours]}")
    print(f"captum (prob only) median {med_captum:.2f} s  {[round(t, 2) for t in t_captum]}")
    print(f"ours, chunk=None ({auto['chunk']}) median {statistics.median(t_auto):.2f} s")
    if t_full:
        print(f"ours, method=full  {t_full[0]:.2f} s")
    print(f"speedup {report['speedup']:.1f}x; probability maps agree: {agree} (max |diff| {diff:.2e}, "
          f"max |attribution| {scale:.2e})")
    print(f"wrote {args.out}")
    if not agree:
        sys.exit("probability maps disagree")
    return report


if __name__ == "__main__":
    main()
