"""Dissecting conv5 of our model (ZFNet, width 0.5, 112 px, seeded init) over the demo probe set (60 images,
112 x 112 masks): zfnet.analysis.dissection (exact top-K quantile, sparse batched tallies) against the tests'
direct numpy implementation of NetDissect-Lite (np.percentile; per image, per unit: the map's max against
the threshold, PIL bilinear resize, argwhere, bincount), interleaved rounds in the same run. Three timings,
each with the same inputs for both sides:

* ``compute``: conv5's features in memory, the probe's masks already decoded: quantile + tallies only;
* ``with_masks``: features in memory, each side reads and decodes the mask PNGs itself;
* ``end_to_end``: each side runs the model (ours: batches of 16, hooks; the reference: one forward of all
  60 images) and reads the masks; the input images are decoded beforehand for both.

``end_to_end_bound``: the reference's end-to-end time over a bare forward of the probe to conv5
(``forward_only``, batches of 16 as ``dissect``), the most any dissection that runs the model could gain over it.

Both sides on one thread: the reference is single-threaded numpy/PIL, and on this shared 2-core machine a
second torch thread mostly waits for a core (measured: ours 8x slower with 2 threads at load 10).

Agreement: labels, detectors and the largest IoU difference (0 expected: same formulas, exact quantile).
-> benchmarks/results/dissection.json"""

from __future__ import annotations

import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import LOG, interleaved, machine, median_ratio, save  # noqa: E402
from test_dissection import netdissect_reference  # noqa: E402  (the tests' reference, not a copy)

from zfnet.analysis.dissection import dissect, probe_loader  # noqa: E402
from zfnet.data.broden import Broden, read_broden  # noqa: E402
from zfnet.data.demo import broden as demo_broden  # noqa: E402
from zfnet.data.demo.config import DEFAULTS, _config  # noqa: E402
from zfnet.models import build  # noqa: E402

Q = 0.005


def _forward(model, x):
    """The least forward any dissection of conv5 pays: the probe's images through conv1..conv5, no more."""
    with torch.no_grad():
        for b in x.split(16):  # dissect's batch size (faster here than all 60 at once)
            model.conv5(model.conv4(model.conv3(model.conv2(model.conv1(b)))))


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


def main():
    torch.set_num_threads(1)
    root = Path("/tmp/bench_dissection_probe")
    if not (root / "index.csv").exists():
        demo_broden.write(_config(DEFAULTS | {"broden": {"images": 60, "size": 112}, "workers": 0}), root)
    probe = read_broden(root)
    decoded = _Decoded(**{k: getattr(probe, k) for k in Broden.__dataclass_fields__})
    segs = [decoded.segmentation(i) for i in range(len(probe))]
    for i in range(len(probe)):
        decoded.concept_planes(i)
    torch.manual_seed(0)
    size = int(sys.argv[sys.argv.index("--input") + 1]) if "--input" in sys.argv else 112
    model = build("zfnet", 10, width=0.5, input_size=size).eval()
    x = probe_loader(probe, size, mean=[120.0, 120.0, 120.0])(range(len(probe)))
    with torch.no_grad():
        feats = {}
        h = model.conv5.register_forward_hook(lambda m, i, o: feats.__setitem__("f", o))
        model(x)
        h.remove()
    f = feats["f"]
    replay = _Replay(f)
    index = lambda idx: torch.as_tensor(list(idx))  # noqa: E731
    out = {}

    def ref_end_to_end():
        with torch.no_grad():
            got = {}
            hh = model.conv5.register_forward_hook(lambda m, i, o: got.__setitem__("f", o))
            model(x)
            hh.remove()
        out["ref"] = netdissect_reference(got["f"].numpy(), probe, Q)

    fns = {
        "compute/ours": lambda: out.__setitem__("ours", dissect(replay, ["feat"], decoded, index, quantile=Q)),
        "compute/reference": lambda: out.__setitem__("ref", netdissect_reference(f.numpy(), probe, Q, segs)),
        "with_masks/ours": lambda: out.__setitem__("ours", dissect(replay, ["feat"], probe, index, quantile=Q)),
        "with_masks/reference": lambda: out.__setitem__("ref", netdissect_reference(f.numpy(), probe, Q)),
        "end_to_end/ours": lambda: out.__setitem__("ours", dissect(model, ["conv5"], probe, lambda i: x[list(i)],
                                                                    quantile=Q)),
        "end_to_end/reference": ref_end_to_end,
        "forward_only": lambda: _forward(model, x),
    }
    fns["compute/ours"]()  # warm-up: the hooks' call count, torch's first-call costs
    times = interleaved(fns, rounds=5)
    res = {"units": int(f.shape[1]), "map": list(f.shape[2:]), "images": len(probe), "quantile": Q}
    # any dissection of conv5 runs the model to conv5: the end-to-end ratio cannot exceed reference / that
    res["forward_only_s"] = round(min(times["forward_only"]), 4)
    res["end_to_end_bound"] = round(min(times["end_to_end/reference"]) / min(times["forward_only"]), 2)
    for what in ("compute", "with_masks", "end_to_end"):
        res[what] = {"ours_s": round(min(times[f"{what}/ours"]), 4),
                     "numpy_reference_s": round(min(times[f"{what}/reference"]), 4),
                     "speedup_median": round(median_ratio(times[f"{what}/reference"], times[f"{what}/ours"]), 2)}
    # agreement, on the last end-to-end results of both sides
    d, (thr, iou) = out["ours"], out["ref"]
    iou[:, probe.primary < 0] = 0
    names = np.array(probe.label_names)
    ref_label = np.where(iou.max(1) > 0, names[iou.argmax(1)], "")
    ours = d.units[d.units.layer == "conv5"]
    res |= {"same_labels": float(np.mean(ref_label == ours["label"].to_numpy())),
            "same_detectors": float(np.mean((iou.max(1) > 0.04) == ours["detector"].to_numpy())),
            "max_abs_threshold_diff": float(np.abs(d.thresholds["conv5"] - thr).max()),
            "max_abs_iou_diff": float(np.abs(d.iou["conv5"] - iou).max()),
            "detectors": int(ours["detector"].sum()),
            "active_pairs": int((d.image_max["conv5"] > d.thresholds["conv5"][None]).sum()),
            "timings": LOG, "machine": machine()}
    res["input"] = size
    save("dissection" if size == 112 else f"dissection_{size}", res)
    return res


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"{time.perf_counter() - t0:.1f} s")
