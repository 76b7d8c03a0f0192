"""Dissecting conv5 of our model over the demo probe set: zfnet.analysis.dissection (batched torch tallies)
against a direct numpy implementation of NetDissect-Lite's tally (one unit at a time, PIL bilinear resize),
same features, same thresholds, in the same run; labels must agree. -> benchmarks/results/dissection.json"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import machine  # noqa: E402
from test_dissection import netdissect_reference  # noqa: E402  (the tests' reference, not a copy)

from zfnet.analysis.dissection import dissect, probe_loader  # noqa: E402
from zfnet.data.broden import read_broden  # noqa: E402
from zfnet.data.demo import broden as demo_broden  # noqa: E402
from zfnet.data.demo.config import DEFAULTS, _config  # noqa: E402
from zfnet.models import build  # noqa: E402


def main(out=Path(__file__).resolve().parent / "results" / "dissection.json"):
    torch.set_num_threads(2)
    root = Path("/tmp/bench_dissection_probe")
    if not (root / "index.csv").exists():
        demo_broden.write(_config(DEFAULTS | {"broden": {"images": 60, "size": 112}, "workers": 0}), root)
    probe = read_broden(root)
    torch.manual_seed(0)
    model = build("zfnet", 10, width=0.5, input_size=112).eval()
    images = probe_loader(probe, 112, mean=[120.0, 120.0, 120.0])
    t0 = time.perf_counter()
    d = dissect(model, ["conv5"], probe, images)
    t_ours = time.perf_counter() - t0
    x = images(range(len(probe)))
    t0 = time.perf_counter()
    with torch.no_grad():
        feats = {}
        h = model.conv5.register_forward_hook(lambda m, i, o: feats.__setitem__("f", o))
        model(x)
        h.remove()
    thr, iou = netdissect_reference(feats["f"].numpy(), probe, 0.005)
    t_ref = time.perf_counter() - t0
    iou[:, probe.primary < 0] = 0
    names = np.array(probe.label_names)
    ref_label = np.where(iou.max(1) > 0, names[iou.argmax(1)], "")
    same = float(np.mean(ref_label == d.units["label"].to_numpy()))
    res = {"units": int(iou.shape[0]), "images": len(probe), "ours_s": round(t_ours, 3), "numpy_reference_s": round(t_ref, 3),
           "speedup": round(t_ref / t_ours, 2), "same_labels": same,
           "max_abs_iou_diff": float(np.abs(d.iou["conv5"] - iou).max()),
           "detectors": int(d.units["detector"].sum()), "machine": machine()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
