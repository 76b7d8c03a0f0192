"""Deconvnet speed on torchvision ``vgg16`` at 224 (issues 14, 26): top-9 projections of a fixed set of units,
ours against the strongest autograd loop a user would write and against Captum's per-unit loop, each ratio
from one run, with the values checked equal.

Setting: ``torchvision.models.vgg16(weights=None)`` (random weights, ``torch.manual_seed(0)``, eval mode),
``--images`` random images (N(0, 50^2) pixels: mean-subtracted scale, seed 1), layer ``features.29`` (conv5_3's
ReLU). The top-9 images of every map are found once with ``top_activations`` (not timed: every method
needs the units); the fixed set is the first ``--channels`` maps whose 9th-strongest activation is positive,
each with its top-9 (image, y, x): ``channels x 9`` units (4 x 9 = 36 by default).

* ours: ``project_units(model, images, layer, image_index, channels, ys, xs)``, all units in one call: one
  forward per distinct image on its units' receptive-field boxes only (``Deconvnet.cache(units=...)``), then
  the projections on receptive-field windows, units of the same window geometry batched;
* shared forward (:class:`SharedForwardDeconvnet`): one forward per image, one backward per unit from that
  graph (``retain_graph=True``), ReLU backward hooks returning ``relu(grad)`` (the deconvnet rule), max-pool's
  autograd backward as the unpooling;
* Captum: ``NeuronDeconvolution(model, model.features[29]).attribute(image, (c, y, x)) * value``, one call
  per unit (each a whole forward and a backward; Captum seeds the unit with 1, the deconvnet with the
  unit's activation, hence ``* value``).

Values: our projections pasted into full frames (``Projections.full()``) against both baselines, max abs
difference, required <= 1e-5 x max |Captum| (float32; observed about 1e-6 relative). Our seeds come from the
forward on boxes, equal to the top-k values to float rounding (``seed_values_max_rel_diff_topk``).

Timing: ``--rounds`` interleaved rounds (``_common.interleaved``: each round runs every candidate back to
back, waiting up to ``--idle-wait`` s for other users of the machine to go quiet, logging the cores we and
others used); a ratio is the median over rounds of baseline / ours. Also timed, to show where our time goes:
our forward on boxes alone, the whole plain forward to the layer (``torch.no_grad``, batches of 2), and the
projections given cached switches (a component timing: the pipeline's top-k search keeps no switches).

Arithmetic (``arithmetic``): multiply-accumulates of the convolutions and linear layers, counted from the
recorded chain. Captum pays per unit a whole forward and the input-gradient backward from the layer; the
shared-forward loop one forward to the layer per image plus that backward (the transposed convolutions on
whole maps, as many MACs as the forward) per unit; we pay the forward on the boxes plus each unit's projection
on its windows. ``ratio_at_equal_throughput``: baseline MACs over ours. ``ceiling_ours_free_forward``:
baseline MACs of the per-unit part over our projections' MACs, what *our* (dense) algorithm approaches as the
forward is shared by ever more units: a ceiling of this algorithm, not a bound on exact deconvnets (the
earlier ``ratio_bound_free_forward`` 9.96x claimed that; it is not one, see ``zero_skipping``).

Zero skipping (``zero_skipping``): after unpooling through a 2x2/2 pool at most one value in four is
non-zero, and after the rectification about half of the rest; the transposed convolutions run densely over
those zeros. Counted: the projections' MACs if every transposed convolution skipped the unpooled zeros, and
every zero; and a probe on the largest of them (conv1_2, on the real rectified unpooled signal): dense (what we
run) against the same sums over the non-zeros only (torch's sparse CSR product, then ``fold``), CPU times.

    .venv/bin/python benchmarks/bench_deconvnet.py [--rounds 3] [--images 12] [--channels 4] [--threads 1]

Writes ``benchmarks/results/deconvnet.json``. About 8 minutes on 2 busy CPU cores with the defaults.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import LOG, interleaved, machine, median_ratio, save  # noqa: E402

from zfnet.analysis import hooks  # noqa: E402
from zfnet.analysis.deconvnet import Deconvnet, project_units  # noqa: E402
from zfnet.analysis.topk import top_activations  # noqa: E402

REL_TOL = 1e-5


def _conv_macs(op, rows: int | None = None, cols: int | None = None) -> int:
    """MACs of a recorded conv op, over its whole output or an output window of rows x cols."""
    c_out, h, w = op.out_shape
    kh, kw = op.weight.shape[-2:]
    return (rows if rows is not None else h) * (cols if cols is not None else w) * c_out * op.weight.shape[1] * kh * kw


def _model_macs(model, x) -> int:
    """MACs of one whole forward of ``x`` (one image): every Conv2d and Linear."""
    total = [0]

    def hook(m, _i, out):
        if isinstance(m, torch.nn.Conv2d):
            total[0] += out[0].numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        else:
            total[0] += out[0].numel() * m.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return total[0]


def arithmetic(model, images, dn: Deconvnet, layer: str, n, y, x) -> dict:
    """MAC counts (convolutions and linear layers) of the three methods, and the ceilings they imply at equal
    MACs per second (see the module docstring). ``dn``: cached as ``project_units`` caches (on boxes)."""
    ops, end = dn.ops, dn.ends[layer]
    convs = [i for i in range(end) if ops[i].kind == "conv"]
    fwd_one = sum(_conv_macs(ops[i]) for i in convs)
    distinct = torch.unique(n).tolist()
    proj = 0
    for yy, xx in zip(y.tolist(), x.tolist()):
        py, px = dn._profile(end, yy, 0), dn._profile(end, xx, 1)
        for i in convs:  # the transposed conv scatters every input pixel of the window: its input window
            op = ops[i]
            proj += py.lengths[i + 1] * px.lengths[i + 1] * op.weight.shape[0] * op.weight.shape[1] * op.k[0] * op.k[1]
    boxes = dn._boxes  # (B, levels, 4): what the forward on boxes computed at every level
    fwd_boxes = sum(int((b[i + 1, 1] - b[i + 1, 0]) * (b[i + 1, 3] - b[i + 1, 2])) * _conv_macs(ops[i], 1, 1)
                    for b in boxes for i in convs)
    captum_unit = _model_macs(model, images[:1]) + fwd_one  # whole forward + input gradients of the convs below
    captum = captum_unit * len(n)
    shared = fwd_one * (len(distinct) + len(n))  # one forward per image + one input-gradient backward per unit
    ours = fwd_boxes + proj
    return {"gmacs": {"captum": captum / 1e9, "captum_per_unit": captum_unit / 1e9, "shared_forward": shared / 1e9,
                      "shared_forward_backward_per_unit": fwd_one / 1e9, "whole_forward": fwd_one * len(distinct) / 1e9,
                      "ours_forward_on_boxes": fwd_boxes / 1e9, "ours_projections": proj / 1e9, "ours": ours / 1e9},
            "ratio_at_equal_throughput": {"captum": captum / ours, "shared_forward": shared / ours},
            # our dense projections with a free forward (ever more units per image): what our algorithm can
            # reach, not a bound on exact deconvnets (skipping zeros, below, needs fewer MACs)
            "ceiling_ours_free_forward": {"captum": captum / proj, "shared_forward": fwd_one * len(n) / proj}}


def zero_skipping(dn: Deconvnet, layer: str, inv, c, y, x) -> dict:
    """MACs of our projections if their transposed convolutions skipped zero inputs: the structural zeros of
    unpooling only (each unpooled value scatters to C_out x k x k outputs; counted before the rectification)
    and every zero (unpooling and ReLU); plus a probe: the largest transposed convolution (the first conv's
    successor, conv1_2 on vgg16) on the real rectified unpooled signal, dense (what we run) against the same
    sums over its non-zeros only (torch sparse CSR x weight, then fold), best of 3 CPU times."""
    end = dn.ends[layer]
    ops = dn.ops
    counts = {"dense": 0, "unpool_zeros_skipped": 0, "all_zeros_skipped": 0}
    state = {"after_unpool": None, "probe": None}
    conv_t, unpool = dn._conv_t, dn._unpool

    def count_unpool(g, i, *a):
        state["after_unpool"] = g.numel()  # values the unpooling places (one per pooled value)
        return unpool(g, i, *a)

    def count_conv(g, i):
        op = ops[i]
        per = op.weight.shape[1] * op.k[0] * op.k[1]  # C_out / groups x k x k outputs per input value
        counts["dense"] += g.numel() * per
        counts["unpool_zeros_skipped"] += (state["after_unpool"] or g.numel()) * per
        counts["all_zeros_skipped"] += int((g != 0).sum()) * per
        state["after_unpool"] = None
        if i == 2 and state["probe"] is None:
            state["probe"] = g.clone()
        return conv_t(g, i)

    dn._conv_t, dn._unpool = count_conv, count_unpool
    try:
        dn.project_units(layer, inv, c, y, x)
    finally:
        del dn._conv_t, dn._unpool
    out = {k: v / 1e9 for k, v in counts.items()}
    out = {"gmacs": out, "ratio_unpool_zeros": counts["dense"] / counts["unpool_zeros_skipped"],
           "ratio_all_zeros": counts["dense"] / counts["all_zeros_skipped"]}
    g = state["probe"]
    if g is not None and ops[2].kind == "conv" and ops[2].groups == 1:
        op = ops[2]
        w = op.weight.reshape(op.weight.shape[0], -1)  # (C_in of the transpose, C_out x kh x kw)
        u, ci, h, ww = g.shape

        def sparse():
            rows = g.permute(0, 2, 3, 1).reshape(u * h * ww, ci).to_sparse_csr()
            cols = (rows @ w).view(u, h * ww, -1).transpose(1, 2)
            return F.fold(cols, (h + op.k[0] - 1, ww + op.k[1] - 1), op.k)

        def dense():
            return conv_t(g, 2)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sparse CSR is beta
            diff = float((sparse() - dense()).abs().max() / dense().abs().max())
            t = {k: min(_cpu_time(f) for _ in range(3)) for k, f in (("dense", dense), ("sparse_csr", sparse))}
        out["probe_conv1_2"] = {"units": u, "input": [ci, h, ww], "density": float((g != 0).float().mean()),
                                "cpu_s": t, "sparse_over_dense_time": t["sparse_csr"] / t["dense"],
                                "rel_diff": diff}
    return out


def _cpu_time(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


class SharedForwardDeconvnet:
    """The baseline a user would write with autograd: ONE forward per image through the layers up to ``layer``
    (a copy of ``model.features`` up to it, ReLUs not in place, parameters frozen), then one backward per
    unit of that image from the same graph (``retain_graph=True``), seeded with the unit's value. The
    deconvnet rule is a full backward hook on every ReLU returning ``relu(grad_output)`` (the rectification of
    the signal going down, Captum's rule); unpooling is max-pool's own autograd backward (scatter at the
    switches, summing at shared ones); convolutions' input gradients are the transposed convolutions."""

    def __init__(self, model, layer: str):
        parent, idx = layer.rsplit(".", 1)
        self.net = copy.deepcopy(model.get_submodule(parent)[: int(idx) + 1]).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        for m in self.net.modules():
            if isinstance(m, torch.nn.ReLU):
                m.inplace = False
                m.register_full_backward_hook(lambda _m, _gi, go: (go[0].clamp(min=0),))

    def __call__(self, images, n, c, y, x, values) -> torch.Tensor:
        out = torch.zeros((len(n), *images.shape[1:]), dtype=images.dtype)
        for img in torch.unique(n).tolist():
            xi = images[img:img + 1].clone().requires_grad_(True)
            act = self.net(xi)
            units = (n == img).nonzero()[:, 0].tolist()
            for k, j in enumerate(units):
                (g,) = torch.autograd.grad(act[0, c[j], y[j], x[j]], xi, values[j],
                                           retain_graph=k + 1 < len(units))
                out[j] = g[0]
        return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--channels", type=int, default=4, help="feature maps in the fixed set")
    ap.add_argument("--k", type=int, default=9)
    ap.add_argument("--layer", default="features.29")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--idle-wait", type=float, default=5.0, help="max seconds to wait for a quiet machine per call")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    _common.IDLE_WAIT_S = args.idle_wait
    from captum.attr import NeuronDeconvolution

    torch.manual_seed(0)
    model = torchvision.models.vgg16(weights=None).eval()
    images = torch.randn(args.images, 3, 224, 224, generator=torch.Generator().manual_seed(1)) * 50.0
    layer = args.layer
    top = top_activations(model, images, [layer], k=args.k, batch_size=4)[layer]
    maps = (top.values[:, -1] > 0).nonzero()[: args.channels, 0]
    if len(maps) < args.channels:
        sys.exit(f"only {len(maps)} maps of {layer} have {args.k} positive activations")
    n = top.image_index[maps].reshape(-1)
    c = maps.repeat_interleave(args.k)
    y, x = top.y[maps].reshape(-1), top.x[maps].reshape(-1)
    values = top.values[maps].reshape(-1)
    distinct = torch.unique(n)
    module = model.get_submodule(layer)

    def ours():
        return project_units(model, images, layer, n, c, y, x)

    def captum():
        nd = NeuronDeconvolution(model, module)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Captum warns about the in-place ReLUs and input grads
            return torch.cat([nd.attribute(images[i:i + 1], (ch, yy, xx)).detach() * v for i, ch, yy, xx, v in
                              zip(n.tolist(), c.tolist(), y.tolist(), x.tolist(), values.tolist())])

    shared = SharedForwardDeconvnet(model, layer)

    def shared_forward():
        return shared(images, n, c, y, x, values)

    inv = torch.searchsorted(distinct, n)

    def cache_forward():  # what ours runs first: the forward on the units' receptive-field boxes
        return Deconvnet(model, [layer]).cache(images[distinct], units=(layer, inv, y, x))

    def plain_forward():  # the whole forward to the layer of the same images, nothing kept (batches of 2)
        sub = images[distinct]
        with torch.no_grad():
            for s in range(0, len(sub), 2):
                hooks.run(model, sub[s:s + 2], [layer])

    dn = cache_forward()

    def projections_only():
        return dn.project_units(layer, inv, c, y, x)

    # warm-up (oneDNN primitive caches, allocator) and the value checks
    mine = ours()
    ref = captum()
    base = shared_forward()
    full = mine.full()
    scale = float(ref.abs().max())
    diff = float((full - ref).abs().max())
    diff_shared = float((full - base).abs().max())
    seed_rel = float(((mine.units["value"] - values).abs() / values.abs()).max())
    equal = diff <= REL_TOL * scale and diff_shared <= REL_TOL * scale and scale > 0

    LOG.clear()
    cpu: dict[str, list[float]] = {}

    def cpu_timed(name, fn):  # also this process's CPU seconds: one thread's work, whatever the machine's load
        def run():
            start = time.process_time()
            fn()
            cpu.setdefault(name, []).append(time.process_time() - start)
        return run

    fns = {"captum": captum, "shared_forward": shared_forward, "ours": ours,
           "ours_cache_forward_on_boxes": cache_forward, "plain_forward_to_layer": plain_forward,
           "ours_projections_given_switches": projections_only}
    times = interleaved({k: cpu_timed(k, f) for k, f in fns.items()}, rounds=args.rounds)
    macs = arithmetic(model, images, dn, layer, n, y, x)
    zeros = zero_skipping(dn, layer, inv, c, y, x)
    ratio = median_ratio(times["captum"], times["ours"])
    ratio_shared = median_ratio(times["shared_forward"], times["ours"])
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "deconvnet: top-9 projections of a fixed set of units of torchvision vgg16 at 224, "
                     "project_units against the shared-forward autograd loop and Captum NeuronDeconvolution",
        "baselines": {
            "shared_forward": "the strongest a user would write: one forward per image (features up to the layer, "
                              "ReLUs not in place, parameters frozen), then one backward per unit of that image from "
                              "the same graph (retain_graph=True) seeded with the unit's value; the deconvnet rule as "
                              "a full backward hook on every ReLU returning relu(grad_output); unpooling by max-pool's "
                              "own backward (its switches)",
            "captum": "NeuronDeconvolution(model, features[29]).attribute per unit (a whole forward, classifier "
                      "included, and a backward per unit) x the unit's value",
        },
        "ours": "project_units: one forward per distinct image on its units' receptive-field boxes (the chain "
                "replayed on windows, cache(units=...)), then each unit's projection on its receptive-field windows "
                "(units of equal geometry batched), transposed convolutions (non-zero elements only on the CPU)",
        "config": {"model": "torchvision vgg16, weights=None, torch.manual_seed(0), eval", "layer": layer,
                   "images": args.images, "distinct_images_in_units": len(distinct), "channels": maps.tolist(),
                   "k": args.k, "units": len(c), "rounds": args.rounds, "threads": torch.get_num_threads(),
                   "torch": torch.__version__, "cpu": platform.processor() or platform.machine()},
        "seconds": times,
        "median_s": med,
        "cpu_seconds": cpu,
        "median_cpu_s": {k: statistics.median(v) for k, v in cpu.items()},
        "ratio_vs_shared_forward": ratio_shared,
        "ratio_vs_shared_forward_target": 3.0,
        "target_met": ratio_shared >= 3.0,
        "ratio_vs_captum": ratio,
        "ratios_cpu_time": {"vs_shared_forward": median_ratio(cpu["shared_forward"], cpu["ours"]),
                            "vs_captum": median_ratio(cpu["captum"], cpu["ours"]),
                            "note": "medians over rounds of CPU-second ratios (1 thread): the work done, robust when "
                                    "other users of the machine take the core away (log: our_cores < 1)"},
        "arithmetic": macs,
        "zero_skipping": zeros,
        "ratio_projections_given_switches": median_ratio(times["captum"], times["ours_projections_given_switches"]),
        "ratio_projections_given_switches_note": "Captum over our projections alone: a component timing, not a "
                                                 "configuration the pipeline runs (its top-k search keeps no switches)",
        "ours_split": {"cache_forward_share": med["ours_cache_forward_on_boxes"] / med["ours"],
                       "projections_share": med["ours_projections_given_switches"] / med["ours"],
                       "cache_forward_over_whole_plain_forward": median_ratio(times["ours_cache_forward_on_boxes"],
                                                                              times["plain_forward_to_layer"])},
        "captum_s_per_unit": med["captum"] / len(c),
        "shared_forward_s_per_unit": med["shared_forward"] / len(c),
        "values": {"max_abs_diff_captum": diff, "max_abs_diff_shared_forward": diff_shared, "max_abs_captum": scale,
                   "tolerance": f"{REL_TOL} x max |captum|", "equal": equal,
                   "seed_values_max_rel_diff_topk": seed_rel},
        "machine": machine(),
        "log": LOG,
    }
    save("deconvnet", result)
    print(f"{len(c)} units over {len(distinct)} images: shared-forward loop {med['shared_forward']:.1f} s, Captum "
          f"{med['captum']:.1f} s, ours {med['ours']:.2f} s (forward on boxes {med['ours_cache_forward_on_boxes']:.2f} s"
          f" + projections {med['ours_projections_given_switches']:.2f} s; whole plain forward "
          f"{med['plain_forward_to_layer']:.2f} s) -> {ratio_shared:.2f}x the shared-forward loop (target 3x), "
          f"{ratio:.2f}x Captum (CPU time: {result['ratios_cpu_time']['vs_shared_forward']:.2f}x / "
          f"{result['ratios_cpu_time']['vs_captum']:.2f}x); values equal: {equal} (max |diff| {diff:.1e} / {diff_shared:.1e}, max |value| "
          f"{scale:.1e})", file=sys.stderr)
    if not equal:
        sys.exit("projections differ from Captum's or the shared-forward loop's")
    return result


if __name__ == "__main__":
    main()
