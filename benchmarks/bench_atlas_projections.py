"""The unit atlas's projections (issue 28): the top-9 units of every map of conv1..conv5 of the demo model,
``project_top_units`` against the per-map ``project_units`` loop, values checked equal, at 1 and 2 threads.

Setting: the demo model's architecture, ``zfnet.models.zfnet.build("zfnet", 10, width=0.5, input_size=112)``
(688 maps in conv1..conv5), *random weights* (``torch.manual_seed(0)``, eval mode), ``--images`` random
images (N(0, 50^2) pixels, the mean-subtracted scale, seed 1). The top-9 images of every map are found once
with ``top_activations`` (not timed: both sides need them); the units: every map's top-9, 6,192 in all.

* baseline: ``for c in maps: project_units(model, images, layer, n[c], c, y[c], x[c])`` per layer (each call:
  a forward on the 9 images' receptive-field boxes, then the 9 projections on windows);
* ours: ``list(project_top_units(model, images, topk))`` (guided=False): one forward of the images for every
  layer, all units of a chunk (up to 1,024) in one engine call; the same work as the baseline (patches are cut
  on access, and this side does not access them);
* ours, guided: ``project_top_units(..., guided=True)`` with every chunk's ``patches`` accessed: patches +
  deconvnet projections + guided backprop of every unit, the atlas's part of the issue's 60 s CPU budget (the
  statistics pass is another module's).

Both sides run the same engine (:class:`~zfnet.analysis.deconvnet.Deconvnet`), whose CPU backward multiplies
only non-zero elements (:mod:`zfnet.analysis.deconvnet.sparse`): what ours gains over the loop is the shared
forward and the batching, not a different kernel.

Values: every unit of ours against the baseline's (an untimed pass), max abs difference relative to the
layer's max |baseline|, required <= 1e-5 (float32).

Timing: ``--rounds`` interleaved rounds per thread count (``_common.interleaved``, waiting up to ``--idle-wait``
s for the shared machine to go quiet, logging our cores and others'); medians; the ratio is the median of
per-round ratios (same thread count on both sides). Per layer: seconds per 1,000 units, the baseline timed map
by map, ours chunk by chunk (time between yields); ours' conv1 includes the one forward shared by every layer,
also timed alone (``forward_s``).

Arithmetic (``arithmetic``): per layer, the multiply-accumulates of the projections on receptive-field
windows, counted over every unit on the real signals: dense (every element), skipping all-zero positions, and
skipping zero elements (what the engine's sparse kernel multiplies); the forward's MACs; and a probe of the two
largest ops (conv2^T and conv1^T after unpooling) dense (oneDNN) against the sparse kernel.

    .venv/bin/python benchmarks/bench_atlas_projections.py [--rounds 3] [--images 200] [--idle-wait 20]

Writes ``benchmarks/results/atlas_projections.json`` (``atlas_projections_trained.json`` with ``--checkpoint``). About 6 minutes on 2 busy CPU cores with the defaults.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import LOG, interleaved, machine, median_ratio, save  # noqa: E402

from zfnet.analysis.deconvnet import Deconvnet, backward, project_top_units, project_units, sparse  # noqa: E402
from zfnet.analysis.topk import top_activations  # noqa: E402
from zfnet.models.weights import load_model  # noqa: E402
from zfnet.models.zfnet import build  # noqa: E402

LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]
REL_TOL = 1e-5


def baseline(model, images, topk, per_layer: dict) -> None:
    for layer in LAYERS:
        t = topk[layer]
        start = time.perf_counter()
        for c in range(t.values.shape[0]):
            project_units(model, images, layer, t.image_index[c], c, t.y[c], t.x[c])
        per_layer.setdefault(layer, []).append(time.perf_counter() - start)


def ours(model, images, topk, per_layer: dict, guided: bool = False) -> None:
    spent: dict[str, float] = {}
    last = time.perf_counter()
    for r in project_top_units(model, images, topk, guided=guided):
        if guided:  # the atlas's budget: patches too
            r.patches  # noqa: B018
        now = time.perf_counter()
        spent[r.layer] = spent.get(r.layer, 0.0) + now - last
        last = now
    for layer, s in spent.items():
        per_layer.setdefault(layer, []).append(s)


def check_values(model, images, topk) -> dict:
    """Every unit of ours against the baseline's, chunk by chunk (untimed)."""
    worst: dict[str, list[float]] = {}
    for r in project_top_units(model, images, topk):
        t = topk[r.layer]
        k = t.values.shape[1]
        for j, c in enumerate(r.channels):
            p = project_units(model, images, r.layer, t.image_index[c], c, t.y[c], t.x[c])
            if not torch.equal(p.top, r.deconv.top[j * k:(j + 1) * k]):
                raise AssertionError(f"{r.layer} map {c}: frames differ")
            d, m = worst.setdefault(r.layer, [0.0, 0.0])
            worst[r.layer] = [max(d, float((p.values - r.deconv.values[j * k:(j + 1) * k]).abs().max())),
                              max(m, float(p.values.abs().max()))]
    return {layer: d / m for layer, (d, m) in worst.items()}


def arithmetic(model, images, topk) -> dict:
    """MACs per unit per layer (dense windows; skipping zero positions; skipping zero elements), counted on the
    real signals by watching the engine's transposed convolutions, and the forward's MACs."""
    counts: dict[str, dict[str, float]] = {}
    cur = {"layer": None}
    orig = backward.conv_transpose

    def spy(g, op, poly, key):
        per = op.weight.shape[1] * op.k[0] * op.k[1]  # outputs per input value
        c = counts[cur["layer"]]
        c["dense"] += g.numel() * per
        c["skip_zero_positions"] += float((g != 0).any(1).sum()) * g.shape[1] * per
        c["skip_zero_elements"] += float((g != 0).sum()) * per
        return orig(g, op, poly, key)

    dn = Deconvnet(model, LAYERS).cache(images, batch_size=32)
    backward.conv_transpose = spy
    try:
        for layer in LAYERS:
            t = topk[layer]
            cur["layer"] = layer
            counts[layer] = {"dense": 0.0, "skip_zero_positions": 0.0, "skip_zero_elements": 0.0}
            ch = torch.arange(t.values.shape[0]).repeat_interleave(t.values.shape[1])
            dn.project_units(layer, t.image_index.reshape(-1), ch, t.y.reshape(-1), t.x.reshape(-1))
    finally:
        backward.conv_transpose = orig
    fwd = sum(o.out_shape[0] * o.out_shape[1] * o.out_shape[2] * o.weight[0].numel() for o in dn.ops if o.kind == "conv")
    units = {layer: topk[layer].values.numel() for layer in LAYERS}
    return {"mmacs_per_unit": {layer: {k: v / units[layer] / 1e6 for k, v in c.items()} for layer, c in counts.items()},
            "gmacs_total": {k: sum(c[k] for c in counts.values()) / 1e9 for k in ("dense", "skip_zero_positions",
                                                                                   "skip_zero_elements")},
            "forward_gmacs": fwd * images.shape[0] / 1e9, "units": units}


def probe_big_ops(model, images, topk) -> dict:
    """The two largest transposed convolutions (conv2^T and conv1^T, right after unpooling) of 64 conv5 units:
    dense (oneDNN; the polyphase form for conv1^T) against the sparse kernel the engine runs, best of 3."""
    dn = Deconvnet(model, ["conv5"]).cache(images, batch_size=32)
    caught = {}
    orig = backward.conv_transpose

    def spy(g, op, poly, key):
        caught.setdefault(key, (g.clone(), op))
        return orig(g, op, poly, key)

    t = topk["conv5"]
    backward.conv_transpose = spy
    try:
        ch = torch.arange(t.values.shape[0]).repeat_interleave(9)[:64]
        dn.project_units("conv5", t.image_index.reshape(-1)[:64], ch, t.y.reshape(-1)[:64], t.x.reshape(-1)[:64])
    finally:
        backward.conv_transpose = orig
    out = {}
    for key, name in ((4, "conv2_T"), (0, "conv1_T")):
        g, op = caught[key]
        nz = (g != 0).any(1)
        w = op.weight.to(g.dtype)
        keep = sparse.MAX_DENSITY
        try:
            sparse.MAX_DENSITY = 0.0  # the engine's dense path
            dense = min(_common.best_of(lambda: orig(g, op, {}, ("probe", key)), 1) for _ in range(3))
        finally:
            sparse.MAX_DENSITY = keep
        sparse_s = min(_common.best_of(lambda: sparse.conv_transpose(g, w, op.s), 1) for _ in range(3))
        ref = F.conv_transpose2d(g, w, stride=op.s)
        out[name] = {"input": list(g.shape), "position_density": float(nz.float().mean()),
                     "element_density": float((g != 0).float().mean()), "dense_s": dense, "sparse_s": sparse_s,
                     "sparse_over_dense": sparse_s / dense,
                     "rel_diff": float((sparse.conv_transpose(g, w, op.s) - ref).abs().max() / ref.abs().max())}
    return out


def peak_matmul() -> float:
    """GMAC/s of a large float32 matmul at the current thread count (best of 3): the GEMM roofline."""
    a, b = torch.randn(2048, 1024), torch.randn(1024, 1024)
    return 2048 * 1024 * 1024 / _common.best_of(lambda: a @ b, 3) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--k", type=int, default=9)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,2", help="torch intra-op thread counts, comma-separated")
    ap.add_argument("--idle-wait", type=float, default=20.0, help="max seconds to wait for a quiet machine per call")
    ap.add_argument("--checkpoint", help="a trained model (model.pt) instead of random weights, e.g. the demo's "
                    "models/zfnet/model.pt")
    ap.add_argument("--prepared", help="a prepare stage's folder (data/prepared): its first --images validation "
                    "images, as the network sees them, instead of random ones")
    args = ap.parse_args()
    _common.IDLE_WAIT_S = args.idle_wait
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = (load_model(args.checkpoint) if args.checkpoint else build("zfnet", 10, width=0.5, input_size=112)).eval()
    g = torch.Generator().manual_seed(1)
    if args.prepared:
        from zfnet.stages.visualize.stream import ValidationStream

        images = ValidationStream(args.prepared, 112, args.images, 64).head(args.images)[0]
    else:
        images = torch.randn(args.images, 3, 112, 112, generator=g) * 50
    topk = top_activations(model, images, LAYERS, k=args.k)
    units = {layer: topk[layer].values.numel() for layer in LAYERS}
    rel = check_values(model, images, topk)
    if max(rel.values()) > REL_TOL:
        raise AssertionError(f"values differ: {rel}")
    arith = arithmetic(model, images, topk)
    probe = probe_big_ops(model, images, topk)

    result = {"benchmark": "atlas projections: top-9 units of every map of conv1..conv5 of the demo model (width 0.5, "
                           f"112 px, {'trained' if args.checkpoint else 'random'} weights), project_top_units against the per-map project_units loop",
              "config": {"model": args.checkpoint or "zfnet width 0.5, input 112, random weights (seed 0), eval",
                         "images": args.images,
                         "image_pixels": f"{args.prepared}: validation, centre crop minus the mean" if args.prepared
                         else "N(0, 50^2), seed 1", "k": args.k, "units": units,
                         "units_total": sum(units.values()), "rounds": args.rounds, "torch": torch.__version__,
                         "cpu": platform.machine()},
              "values_max_rel_diff": rel, "threads": {}}
    for threads in [int(v) for v in args.threads.split(",")]:
        torch.set_num_threads(threads)
        per = {"baseline": {}, "ours": {}, "ours_guided": {}}
        times = interleaved({
            "baseline": lambda: baseline(model, images, topk, per["baseline"]),
            "ours": lambda: ours(model, images, topk, per["ours"]),
            "ours_guided": lambda: ours(model, images, topk, per["ours_guided"], guided=True),
            "forward": lambda: Deconvnet(model, LAYERS).cache(images, batch_size=32),
        }, rounds=args.rounds)
        entries = [e for e in LOG[-4 * args.rounds:] if e["what"] == "ours_guided"]
        cpu_guided = statistics.median(e["wall_s"] * e["our_cores"] for e in entries)
        med = {k: statistics.median(v) for k, v in times.items()}
        per_layer = {layer: {side: statistics.median(per[side][layer]) / units[layer] * 1000
                             for side in ("baseline", "ours", "ours_guided")} for layer in LAYERS}
        for layer in LAYERS:
            per_layer[layer]["ratio"] = per_layer[layer]["baseline"] / per_layer[layer]["ours"]
        peak = peak_matmul()
        gm = arith["gmacs_total"]
        result["threads"][str(threads)] = {
            "seconds": times, "median_s": med,
            "ratio_baseline_over_ours": median_ratio(times["baseline"], times["ours"]),
            "seconds_per_1000_units": per_layer,
            "forward_s": med["forward"],
            "patches_projections_guided_cpu_s": cpu_guided,
            "dense_equivalent_gmacs_per_s_ours_projections": gm["dense"] / (med["ours"] - med["forward"]),
            "nonzero_gmacs_per_s_ours_projections": gm["skip_zero_elements"] / (med["ours"] - med["forward"]),
            "peak_matmul_gmacs_per_s": peak,
            # ceilings: the baseline's median over each algorithm's MACs at the GEMM roofline, forward included
            "ratio_ceiling_dense_at_peak": med["baseline"] / (gm["dense"] / peak + med["forward"]),
            "ratio_ceiling_skip_zero_positions_at_peak": med["baseline"] / (gm["skip_zero_positions"] / peak
                                                                             + med["forward"]),
            "ratio_ceiling_skip_zero_elements_at_peak": med["baseline"] / (gm["skip_zero_elements"] / peak
                                                                            + med["forward"]),
        }
    result["arithmetic"] = arith
    result["zero_skipping_probe"] = probe
    result["machine"] = machine()
    result["log"] = LOG
    save("atlas_projections_trained" if args.checkpoint else "atlas_projections", result)


if __name__ == "__main__":
    main()
