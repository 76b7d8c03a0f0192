"""Deconvnet speed: the top 9 of EVERY feature map of conv1-conv5, ours vs a per-unit Captum loop.

Setup: random-weight ZFNet (full width, 224x224 input, kaiming init so deep activations are not tiny),
16 random images (fixed seeds). The top-9 units per map are found once (``top_activations``, timed
separately; both methods need them). Then

* ours: ``Deconvnet(model, layers, lrn=...).cache(images)`` (one forward per image: every pool's
  switches; timed, counted in the overall total) and ``Deconvnet._iter_units`` over all 9 x C units of each
  layer (receptive-field windows, units batched);
* baseline: Captum's ``NeuronDeconvolution(model, layer).attribute(image, (c, y, x)) * value``, one call
  per unit (each call runs the model's forward and a backward). Captum is timed on a deterministic sample
  of ``--samples`` units per layer, measured right after our pass over that layer, and extrapolated to all
  units of the layer (mean ms/unit x units). The sampled units are also compared value by value.

Captum differentiates LRN (it only replaces ReLU backwards), so the comparison runs our engine with
``lrn="gradient"`` (same semantics). Our default, the paper's deconvnet (``lrn="identity"``), is timed too
(column ``ours_identity_ms``), against the same baseline.

Usage: ``python benchmarks/bench_deconvnet.py [--threads 1] [--samples 8] [--images 16]``. Writes
``benchmarks/results/deconvnet.json``. Runtime about 1-2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

from zfnet.analysis.deconvnet import Deconvnet
from zfnet.analysis.projections import _paste
from zfnet.analysis.topk import top_activations
from zfnet.models import build

LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]
HERE = Path(__file__).resolve().parent


def run_ours(dn: Deconvnet, layer: str, units: torch.Tensor, keep: set[int]):
    """Project all units; returns seconds and {unit position: (frame, top, left)} for the kept ones."""
    kept = {}
    t0 = time.perf_counter()
    for part, p in dn._iter_units(layer, units[:, 0], units[:, 1], units[:, 2], units[:, 3]):
        for q, j in enumerate(part.tolist()):
            if j in keep:
                kept[j] = (p.values[q].clone(), p.top[q:q + 1].clone(), p.left[q:q + 1].clone())
    return time.perf_counter() - t0, kept


def run_captum(model, layer: str, images, units: torch.Tensor, sample: list[int], values: torch.Tensor):
    from captum.attr import NeuronDeconvolution

    nd = NeuronDeconvolution(model, model.get_submodule(layer))
    out, times = {}, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n, c, y, x = units[sample[0]].tolist()
        nd.attribute(images[n:n + 1], (c, y, x))  # warm-up (not timed)
        for j in sample:
            n, c, y, x = units[j].tolist()
            t0 = time.perf_counter()
            a = nd.attribute(images[n:n + 1], (c, y, x)) * values[j]
            times.append(time.perf_counter() - t0)
            out[j] = a[0].detach()
    return times, out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--k", type=int, default=9)
    ap.add_argument("--samples", type=int, default=8, help="Captum units timed per layer")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--memory-mb", type=float, default=192.0)
    ap.add_argument("--out", default=str(HERE / "results" / "deconvnet.json"))
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = build("zfnet", 1000, input_size=args.size, init="kaiming").eval()
    images = torch.randn(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))

    t0 = time.perf_counter()
    topk = top_activations(model, images, LAYERS, k=args.k, batch_size=8)
    topk_s = time.perf_counter() - t0

    dn = Deconvnet(model, LAYERS, lrn="gradient", memory_mb=args.memory_mb)
    t0 = time.perf_counter()
    dn.cache(images, batch_size=8)
    cache_s = time.perf_counter() - t0
    dn_id = Deconvnet(model, LAYERS, lrn="identity", memory_mb=args.memory_mb)
    t0 = time.perf_counter()
    dn_id.cache(images, batch_size=8)
    cache_id_s = time.perf_counter() - t0

    rows = []
    gen = torch.Generator().manual_seed(2)
    for layer in LAYERS:
        t = topk[layer]
        n_maps, k = t.values.shape
        units = torch.stack([t.image_index.reshape(-1), torch.arange(n_maps).repeat_interleave(k),
                             t.y.reshape(-1), t.x.reshape(-1)], 1)
        values = t.values.reshape(-1)
        sample = sorted(torch.randperm(len(units), generator=gen)[: args.samples].tolist())

        ours_s, kept = run_ours(dn, layer, units, set(sample))
        ours_id_s, _ = run_ours(dn_id, layer, units, set())
        times, ref = run_captum(model, layer, images, units, sample, values)

        errs = []
        for j in sample:
            frame, top, left = kept[j]
            full = _paste(frame[None], top, left, (args.size, args.size))[0]
            errs.append(float((full - ref[j]).abs().max() / ref[j].abs().max().clamp_min(1e-30)))
        captum_ms = 1e3 * sum(times) / len(times)
        rows.append({
            "layer": layer,
            "units": len(units),
            "rf": list(dn.project_units(layer, [0], [0], [0], [0]).values.shape[-2:]),
            "ours_s": ours_s,
            "ours_ms": 1e3 * ours_s / len(units),
            "ours_identity_ms": 1e3 * ours_id_s / len(units),
            "captum_ms": captum_ms,
            "captum_sampled": len(times),
            "captum_extrapolated_s": captum_ms * len(units) / 1e3,
            "ratio": captum_ms / (1e3 * ours_s / len(units)),
            "ratio_identity": captum_ms / (1e3 * ours_id_s / len(units)),
            "max_rel_err": max(errs),
        })
        print(f"{layer}: ours {rows[-1]['ours_ms']:.3f} ms/unit, captum {captum_ms:.1f} ms/unit "
              f"-> {rows[-1]['ratio']:.1f}x (max rel err {max(errs):.1e})", file=sys.stderr, flush=True)

    units_total = sum(r["units"] for r in rows)
    ours_total = cache_s + sum(r["ours_s"] for r in rows)
    ours_id_total = cache_id_s + sum(r["ours_identity_ms"] * r["units"] / 1e3 for r in rows)
    captum_total = sum(r["captum_extrapolated_s"] for r in rows)
    overall = {
        "units": units_total,
        "ours_s": ours_total,
        "ours_cache_forward_s": cache_s,
        "ours_ms": 1e3 * ours_total / units_total,
        "ours_identity_s": ours_id_total,
        "captum_extrapolated_s": captum_total,
        "captum_ms": 1e3 * captum_total / units_total,
        "ratio": captum_total / ours_total,
        "ratio_identity": captum_total / ours_id_total,
        "max_rel_err": max(r["max_rel_err"] for r in rows),
        "topk_search_s": topk_s,
    }
    result = {
        "benchmark": "deconvnet top-9 of every conv1-conv5 map: Deconvnet (cached switches, receptive-field "
                     "windows, batched units) vs per-unit captum NeuronDeconvolution",
        "config": {"model": "zfnet width 1.0, init kaiming, random weights", "images": args.images,
                   "size": args.size, "k": args.k, "captum_samples_per_layer": args.samples,
                   "threads": torch.get_num_threads(), "memory_mb": args.memory_mb, "torch": torch.__version__,
                   "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                   "lrn": "gradient (Captum's semantics); ours_identity_*: lrn='identity'"},
        "notes": "Captum ms/unit is the mean over the sampled units of the layer, extrapolated to all units "
                 "(captum_extrapolated_s). Ours covers all units; overall ours_s includes the one cached "
                 "forward over the images. The top-k search is shared and reported separately.",
        "rows": rows,
        "overall": overall,
    }
    hdr = f"{'layer':<8}{'units':>7}{'RF':>9}{'ours ms/unit':>14}{'(identity)':>12}{'captum ms/unit':>16}{'ratio':>8}{'max rel err':>13}"
    print(hdr)
    for r in rows:
        print(f"{r['layer']:<8}{r['units']:>7}{'x'.join(map(str, r['rf'])):>9}{r['ours_ms']:>14.3f}"
              f"{r['ours_identity_ms']:>12.3f}{r['captum_ms']:>13.1f}({r['captum_sampled']}){r['ratio']:>8.1f}"
              f"{r['max_rel_err']:>13.1e}")
    o = overall
    print(f"{'overall':<8}{o['units']:>7}{'':>9}{o['ours_ms']:>14.3f}{1e3 * o['ours_identity_s'] / o['units']:>12.3f}"
          f"{o['captum_ms']:>16.1f}{o['ratio']:>8.1f}{o['max_rel_err']:>13.1e}")
    print(f"ours total {o['ours_s']:.1f} s (incl. cached forward {cache_s:.1f} s); Captum extrapolated "
          f"{captum_total:.0f} s; top-k search {topk_s:.1f} s; threads {torch.get_num_threads()}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out)
    return result


if __name__ == "__main__":
    main()
