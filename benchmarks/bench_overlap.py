"""Overlap search speed (§5.2): ``zfnet.transfer.overlap.correlate`` (normalized thumbnails, blocked torch
matrix products) against the plain numpy baselines on the same thumbnails:

* a double loop of ``np.dot`` over every (Caltech, ImageNet) pair (the obvious code), timed on a slice of
  the queries and reported as pairs per second;
* one numpy brute-force matrix product of all queries against the whole gallery (memory grows with the
  gallery: at ImageNet's 1.28M images and 9k Caltech queries that is 46 GB of scores).

Both must find exactly the pairs ``correlate`` finds. Writes ``benchmarks/results/overlap.json``.

    .venv/bin/python benchmarks/bench_overlap.py [--queries 2000] [--gallery 50000] [--loop-queries 20]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402

from zfnet.transfer.overlap import correlate, normalize  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=2000, help="Caltech-like thumbnails")
    ap.add_argument("--gallery", type=int, default=50000, help="ImageNet-like thumbnails")
    ap.add_argument("--size", type=int, default=32, help="thumbnail side (D = size^2)")
    ap.add_argument("--block", type=int, default=4096)
    ap.add_argument("--threshold", type=float, default=0.95)
    ap.add_argument("--loop-queries", type=int, default=20, help="queries timed with the Python double loop")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    d = args.size * args.size
    def smooth(n: int) -> np.ndarray:  # photo-like thumbnails: 8x8 random images upsampled (neighbours correlate)
        low = torch.from_numpy(rng.normal(0, 1, (n, 1, 8, 8)).astype(np.float32))
        return torch.nn.functional.interpolate(low, size=(args.size, args.size), mode="bilinear").reshape(n, d).numpy()

    gallery, queries = smooth(args.gallery), smooth(args.queries)
    planted = rng.choice(args.gallery, size=min(50, args.queries), replace=False)
    queries[: len(planted)] = gallery[planted] * 0.8 + 10 + rng.normal(0, 0.05, (len(planted), d))  # re-encoded copies
    q, g = normalize(queries), normalize(gallery)
    qn, gn = q.numpy(), g.numpy()

    start = time.perf_counter()
    qi, gi, sc, _best = correlate(q, (g[i : i + args.block] for i in range(0, len(g), args.block)), args.threshold)
    t_ours = time.perf_counter() - start
    ours = set(zip(qi.tolist(), gi.tolist()))

    start = time.perf_counter()
    scores = qn @ gn.T
    brute = set(map(tuple, np.argwhere(scores >= args.threshold).tolist()))
    t_matrix = time.perf_counter() - start
    del scores

    n_loop = min(args.loop_queries, args.queries)
    start = time.perf_counter()
    loop_hits = set()
    for i in range(n_loop):
        for j in range(len(gn)):
            if np.dot(qn[i], gn[j]) >= args.threshold:
                loop_hits.add((i, j))
    t_loop = time.perf_counter() - start

    pairs = args.queries * args.gallery
    loop_pairs = n_loop * args.gallery
    assert brute == ours, "blocked search and brute-force matrix disagree"
    assert loop_hits == {p for p in ours if p[0] < n_loop}, "blocked search and double loop disagree"
    assert {(k, int(p)) for k, p in enumerate(planted)} <= ours, "a planted copy was missed"
    result = {
        "setting": {"queries": args.queries, "gallery": args.gallery, "dim": d, "block": args.block,
                    "threshold": args.threshold, "loop_queries": n_loop, "torch_threads": torch.get_num_threads(),
                    "machine": platform.processor() or platform.machine()},
        "pairs_found": len(ours), "planted": len(planted),
        "pairs_per_second": {"ours_blocked_torch": round(pairs / t_ours), "numpy_matrix": round(pairs / t_matrix),
                             "numpy_double_loop": round(loop_pairs / t_loop)},
        "seconds": {"ours": round(t_ours, 3), "numpy_matrix": round(t_matrix, 3),
                    f"numpy_double_loop_{n_loop}_queries": round(t_loop, 3)},
        "ratio_vs_double_loop": round((pairs / t_ours) / (loop_pairs / t_loop), 1),
        "ratio_vs_numpy_matrix": round(t_matrix / t_ours, 2),
        "peak_scores_memory_mb": {"ours": round(args.queries * args.block * 4 / 2**20, 1),
                                  "numpy_matrix": round(pairs * 4 / 2**20, 1)},
    }
    save("overlap", result)
    return result


if __name__ == "__main__":
    main()
