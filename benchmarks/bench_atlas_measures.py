"""The atlas's per-unit measures on the demo-size model (issue 28): seconds to ablate every unit, and the
one-pass statistics, to set the atlas's ablation budget.

Setting: ``build("zfnet", 10, width=0.5, input_size=112, init="kaiming")`` (the demo model's shape, random
weights, eval mode): conv1..conv5 = 48 + 128 + 192 + 192 + 128 = 688 maps; N(0, 1) images at 112, random
labels (the time does not depend on the weights' values or the labels); ``--threads`` torch threads.

* ablation, every unit: ``unit_ablation(model, (x, y), every conv map, images=n)`` for n in ``--images``
  (the cached path: the layer's output kept, only the layers above run on ``batch_units`` ablated copies,
  the next conv / fc by subtracting the zeroed map's contribution), one run each;
* against the general path at equal work: the same model wrapped so that it has no ``forward_from``
  (``unit_ablation`` then runs full forwards with a zeroing hook, batched the same way), on every
  ``--subset``-th unit of each layer over the first n images (the full set at 1 thread would take minutes);
  ``--rounds`` interleaved rounds, ratio = median of per-round ratios; the drops checked equal;
* statistics: ``unit_statistics`` of the 5 conv layers over ``max(--images)`` images in batches of 64, one
  pass (best of 2).

    .venv/bin/python benchmarks/bench_atlas_measures.py [--images 50 100 200] [--threads 1]

Writes ``benchmarks/results/atlas_measures.json``. About 4 minutes on 2 busy cores at 1 thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import LOG, best_of, interleaved, machine, median_ratio, save  # noqa: E402

from zfnet.atlas.ablation import unit_ablation  # noqa: E402
from zfnet.atlas.statistics import unit_statistics  # noqa: E402
from zfnet.models import build  # noqa: E402

LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]


class Plain(nn.Module):
    """The model without ``forward_from``: unit_ablation's general path (hooks, full forwards)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, nargs="+", default=[50, 100, 200])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--subset", type=int, default=8, help="every n-th unit per layer for the general-path ratio")
    ap.add_argument("--ratio-images", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-units", type=int, default=16)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build("zfnet", 10, width=0.5, input_size=112, init="kaiming").eval()
    n_max = max(args.images + [args.ratio_images])
    x = torch.randn(n_max, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (n_max,), generator=torch.Generator().manual_seed(2))
    units = {l: list(range(model.block(l).conv.out_channels)) for l in LAYERS}
    _common.wait_for_idle(_common.IDLE_WAIT_S)

    every = {}
    for n in args.images:
        per_layer = {}
        for layer in LAYERS:
            start = time.perf_counter()
            unit_ablation(model, (x, y), {layer: units[layer]}, images=n, batch_units=args.batch_units, progress=False)
            per_layer[layer] = round(time.perf_counter() - start, 2)
        every[str(n)] = {"seconds": round(sum(per_layer.values()), 1), "per_layer": per_layer,
                         "units": sum(map(len, units.values())), "loadavg_1m_after": machine()["loadavg_1m"]}
        print(n, every[str(n)], flush=True)

    sub = {l: c[:: args.subset] for l, c in units.items()}
    plain, r = Plain(model).eval(), args.ratio_images
    got = {}
    times = interleaved({
        "cached": lambda: got.__setitem__("cached", unit_ablation(
            model, (x, y), sub, images=r, batch_units=args.batch_units, progress=False)),
        "hooked": lambda: got.__setitem__("hooked", unit_ablation(
            plain, (x, y), {f"net.{l}": c for l, c in sub.items()}, images=r, batch_units=args.batch_units,
            progress=False)),
    }, rounds=args.rounds)
    equal = all(got["cached"].drop[l][c] == got["hooked"].drop[f"net.{l}"][c] for l in sub for c in sub[l])
    worst = max(abs(got["cached"].drop[l][c] - got["hooked"].drop[f"net.{l}"][c]) for l in sub for c in sub[l])

    stats_s = best_of(lambda: unit_statistics(model, (x[:n_max], y[:n_max]), LAYERS, n_classes=10), repeats=2)
    result = {
        "what": "unit ablation of every conv unit of the demo-size model (zfnet width 0.5 at 112, random weights)",
        "threads": torch.get_num_threads(), "batch_units": args.batch_units,
        "ablate_every_unit": every,
        "general_path_ratio": {
            "units": sum(map(len, sub.values())), "images": r, "rounds": args.rounds,
            "cached_s": [round(t, 2) for t in times["cached"]], "hooked_s": [round(t, 2) for t in times["hooked"]],
            "median_ratio_hooked_over_cached": round(median_ratio(times["hooked"], times["cached"]), 2),
            "drops_equal": equal, "max_drop_difference": worst,
        },
        "statistics_one_pass_s": {"images": n_max, "maps": 688, "seconds": round(stats_s, 2)},
        "machine": machine(), "note": "2-core machine shared with other sessions; times are wall clock",
        "log": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in e.items()} for e in LOG],
        "median_cached_s": round(statistics.median(times["cached"]), 2),
    }
    save("atlas_measures", result)
    return result


if __name__ == "__main__":
    main()
