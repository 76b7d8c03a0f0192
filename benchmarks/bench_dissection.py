"""Dissecting conv5 of our model (ZFNet, width 0.5, seeded init) over the demo probe set (60 images, 112 x 112
masks) at input 112 / 224 / 448 px (``--input``; conv5 maps 3x3 / 6x6 / 13x13): zfnet.analysis.dissection
(exact top-K quantile, sparse batched tallies) against the tests' direct numpy implementation of
NetDissect-Lite's formulas (``tests/test_dissection.py``: np.percentile; per image, per unit: the map's max
against the threshold, PIL bilinear resize, argwhere, bincount), interleaved rounds in the same run, medians.

Equal work: both sides get the same decoded input images, run the same forward (``model.forward_to(b,
"conv5")`` in ours' batches of 16: the model stops at the probed layer, no classifier), read and decode the
same mask PNGs with the same reader (``zfnet.data.broden``), and must give the same thresholds and IoUs
(checked: every timed call of both sides, compared bit for bit).

Threads, stated: torch at one thread everywhere. ``compute``, ``with_masks`` and ``end_to_end`` (the headline)
run one thread each: ours with its mask prefetch replaced by inline decoding (``_Inline`` below), the
reference sequential. ``end_to_end_prefetch``: one torch thread plus one mask-decoding thread on both sides:
ours as shipped (``dissect`` decodes the masks on a second thread while the model runs), the reference reads
every mask on a second thread while its forward runs, then tallies.

* ``compute``: conv5's features in memory, the masks already decoded: quantile + tallies only;
* ``with_masks``: features in memory, each side reads and decodes the mask PNGs itself;
* ``end_to_end``: each side runs the forward and reads the masks (the input images decoded beforehand).

Bounds (the Amdahl limit of the equal work): any exact dissection here runs this forward to conv5
(``forward_only``) and decodes every mask (``masks_only``: the label pixel counts ``|L_c|`` need all of them);
the quantile and the tallies can cost no less than 0. So on one thread no exact algorithm takes less than
``forward_only + masks_only`` and none can beat the reference by more than ``bound_one_thread`` = reference /
(forward_only + masks_only); with a second decoding thread, by more than ``bound_two_threads`` = reference
(prefetching) / max(forward_only, masks_only). Both hold for any algorithm given this forward and this PNG
decoder, which the comparison keeps fixed (a faster convolution or decoder would speed both sides).

Agreement: labels, detectors and the largest threshold / IoU difference (0: same formulas, exact quantile).
-> benchmarks/results/dissection.json (112 px), dissection_224.json, dissection_448.json"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import LOG, interleaved, machine, median_ratio, save  # noqa: E402
from test_dissection import netdissect_reference  # noqa: E402  (the tests' reference, not a copy)

import zfnet.analysis.dissection.passes as dissection  # noqa: E402
from zfnet.analysis.dissection import dissect, probe_loader  # noqa: E402
from zfnet.data.broden import Broden, read_broden  # noqa: E402
from zfnet.data.demo import broden as demo_broden  # noqa: E402
from helpers import demo_conf  # noqa: E402
from zfnet.data.demo.config import _config  # noqa: E402
from zfnet.models import build  # noqa: E402

Q = 0.005
BATCH = 16  # dissect's default batch size, used by both sides


def _features(model, x):
    """The forward both sides run: the probe's images to conv5, no further, in batches of ``BATCH``."""
    with torch.no_grad():
        return torch.cat([model.forward_to(b, "conv5") for b in x.split(BATCH)])


class _Replay(nn.Module):
    """``forward(indices)`` -> the stored features of those images, through the layer ``feat``."""

    def __init__(self, features: torch.Tensor):
        super().__init__()
        self.features = features
        self.feat = nn.Identity()

    def forward(self, idx):
        return self.feat(self.features[idx])


class _Decoded(Broden):
    """The probe with its masks decoded once and kept (the ``compute`` timing)."""

    segmentation = lru_cache(maxsize=None)(Broden.segmentation)
    concept_planes = lru_cache(maxsize=None)(Broden.concept_planes)
    __hash__ = object.__hash__


class _Inline:
    """``dissection._Prefetch``'s interface, each item computed on the calling thread when reached: ours on
    one thread."""

    def __init__(self, fn, items, ahead: int = 2):
        self.fn, self.items = fn, list(items)

    def __iter__(self):
        return (self.fn(it) for it in self.items)

    def close(self) -> None:
        pass


@contextlib.contextmanager
def _one_thread():
    shipped = dissection._Prefetch
    dissection._Prefetch = _Inline
    try:
        yield
    finally:
        dissection._Prefetch = shipped


def main():
    torch.set_num_threads(1)
    root = Path("/tmp/bench_dissection_probe")
    if not (root / "index.csv").exists():
        demo_broden.write(_config(demo_conf(broden={"images": 60, "size": 112}, workers=1)), root)
    probe = read_broden(root)
    n = len(probe)
    decoded = _Decoded(**{k: getattr(probe, k) for k in Broden.__dataclass_fields__})
    segs = [decoded.segmentation(i) for i in range(n)]
    for i in range(n):
        decoded.concept_planes(i)
    torch.manual_seed(0)
    size = int(sys.argv[sys.argv.index("--input") + 1]) if "--input" in sys.argv else 112
    model = build("zfnet", 10, width=0.5, input_size=size).eval()
    x = probe_loader(probe, size, mean=[120.0, 120.0, 120.0])(range(n))
    f = _features(model, x)
    replay = _Replay(f)
    index = lambda idx: torch.as_tensor(list(idx))  # noqa: E731
    images = lambda idx: x[list(idx)]  # noqa: E731
    out = {}

    def ours(name, *args, inline=True):
        with _one_thread() if inline else contextlib.nullcontext():
            out[name] = dissect(*args, quantile=Q, batch_size=BATCH)

    def ref_prefetch():
        with ThreadPoolExecutor(1) as pool:  # every mask read on a second thread while the forward runs
            masks = pool.submit(lambda: [probe.segmentation(i) for i in range(n)])
            feats = _features(model, x)
            out["end_to_end_prefetch/reference"] = netdissect_reference(feats.numpy(), probe, Q, masks.result())

    fns = {
        "compute/ours": lambda: ours("compute/ours", replay, ["feat"], decoded, index),
        "compute/reference": lambda: out.__setitem__("compute/reference",
                                                     netdissect_reference(f.numpy(), probe, Q, segs)),
        "with_masks/ours": lambda: ours("with_masks/ours", replay, ["feat"], probe, index),
        "with_masks/reference": lambda: out.__setitem__("with_masks/reference",
                                                        netdissect_reference(f.numpy(), probe, Q)),
        "end_to_end/ours": lambda: ours("end_to_end/ours", model, ["conv5"], probe, images),
        "end_to_end/reference": lambda: out.__setitem__("end_to_end/reference",
                                                        netdissect_reference(_features(model, x).numpy(), probe, Q)),
        "end_to_end_prefetch/ours": lambda: ours("end_to_end_prefetch/ours", model, ["conv5"], probe, images,
                                                 inline=False),
        "end_to_end_prefetch/reference": ref_prefetch,
        "forward_only": lambda: _features(model, x),
        "masks_only": lambda: [probe.segmentation(i) for i in range(n)],
    }
    agreement = {"same_labels": 1.0, "same_detectors": 1.0, "max_abs_threshold_diff": 0.0, "max_abs_iou_diff": 0.0}
    names = np.array(probe.label_names)

    def check():  # every pair of results of the last calls, ours against the reference, bit for bit
        for what in ("compute", "with_masks", "end_to_end", "end_to_end_prefetch"):
            d, (thr, iou) = out.pop(f"{what}/ours"), out.pop(f"{what}/reference")
            layer = d.units.layer.iloc[0]
            iou[:, probe.primary < 0] = 0
            ref_label = np.where(iou.max(1) > 0, names[iou.argmax(1)], "")
            rows = d.units[d.units.layer == layer]
            agreement["same_labels"] = min(agreement["same_labels"], float(np.mean(ref_label == rows["label"].to_numpy())))
            agreement["same_detectors"] = min(agreement["same_detectors"],
                                              float(np.mean((iou.max(1) > 0.04) == rows["detector"].to_numpy())))
            agreement["max_abs_threshold_diff"] = max(agreement["max_abs_threshold_diff"],
                                                      float(np.abs(d.thresholds[layer] - thr).max()))
            agreement["max_abs_iou_diff"] = max(agreement["max_abs_iou_diff"], float(np.abs(d.iou[layer] - iou).max()))
        return d, layer

    for fn in fns.values():  # warm-up: the hooks' call count, torch's first-call costs, both sides
        fn()
    check()
    times = {name: [] for name in fns}
    for _ in range(5):  # interleaved rounds; every round's results compared
        for name, t in interleaved(fns, rounds=1).items():
            times[name] += t
        d, layer = check()
    med = {name: round(statistics.median(t), 4) for name, t in times.items()}
    res = {"units": int(f.shape[1]), "map": list(f.shape[2:]), "images": n, "input": size, "quantile": Q,
           "batch_size": BATCH, "rounds": 5,
           "baseline": "NetDissect-Lite's formulas in numpy (tests/test_dissection.py: np.percentile, per image "
                       "and unit a PIL bilinear resize, argwhere, bincount)",
           "equal_work": "same input images, same forward (model.forward_to conv5, batches of 16, no classifier), "
                         "same mask reader, same thresholds and IoUs (checked bit for bit on every round)",
           "threads": "torch 1 thread; compute / with_masks / end_to_end: one thread each (ours with mask "
                      "decoding inline); end_to_end_prefetch: one torch thread + one mask-decoding thread each",
           "median_s": med}
    for what in ("compute", "with_masks", "end_to_end", "end_to_end_prefetch"):
        res[what] = {"ours_s": med[f"{what}/ours"], "numpy_reference_s": med[f"{what}/reference"],
                     "speedup_median": round(median_ratio(times[f"{what}/reference"], times[f"{what}/ours"]), 2)}
    res["headline_speedup_end_to_end"] = res["end_to_end"]["speedup_median"]
    res["bound_one_thread"] = round(statistics.median(
        r / (a + b) for r, a, b in zip(times["end_to_end/reference"], times["forward_only"], times["masks_only"])), 2)
    res["bound_two_threads"] = round(statistics.median(
        r / max(a, b) for r, a, b in zip(times["end_to_end_prefetch/reference"], times["forward_only"],
                                         times["masks_only"])), 2)
    res["bounds_what"] = ("the most any exact dissection can gain over the reference at this equal work: it runs "
                          "the same forward (forward_only_s) and decodes every mask (masks_only_s), so it takes at "
                          "least their sum on one thread, their max with a second decoding thread")
    res["forward_only_s"], res["masks_only_s"] = med["forward_only"], med["masks_only"]
    res |= agreement
    res |= {"detectors": int(d.units["detector"].sum()),
            "active_pairs": int((d.image_max[layer] > d.thresholds[layer][None]).sum()),
            "timings": LOG, "machine": machine()}
    save("dissection" if size == 112 else f"dissection_{size}", res)
    return res


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"{time.perf_counter() - t0:.1f} s")
