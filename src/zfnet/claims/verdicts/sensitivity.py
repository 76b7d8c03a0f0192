"""Findings on occlusion sensitivity: Fig. 7 (the minimum on the object) and Table 1 (correspondence)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from zfnet.claims import statistics as st
from zfnet.claims.verdicts.base import FAILS, HOLDS, NA, Claim, _decide, _f, _na


# ------------------------------------------------------------------------------------------ 5: Fig. 7
OCCLUSION = dict(id="occlusion", claim="Occluding the object drops the true class's probability most (Fig. 7)",
                 statistic="fraction of the correctly classified images whose true-class probability minimum lies "
                           "inside the object's box; passes when the boxes shuffled among the images (permutation "
                           "p: minima and boxes keep their centre bias, only their pairing is broken) rarely do as "
                           "well, and beats the untrained network's fraction (same images, boxes, square, stride) "
                           "by z bootstrap standard errors (over images) of the paired difference",
                 paper="the minimum falls on the object", figure="occlusion")


def counted_images(rows: list[dict]) -> tuple[list[dict], str]:
    """The images the occlusion claim counts (the correctly classified ones; all when correctness is
    unknown), and a note saying so."""
    if all("correct" in r for r in rows):
        return [r for r in rows if r["correct"]], ""
    return rows, "; correctness unknown: all images counted"


def occlusion(boxes: Mapping | None, p: Mapping, seed: int = 0, control: Mapping[str, object] | str | None = None,
              bootstrap: int = 1000) -> Claim:
    """``boxes``: the visualize stage's ``occlusion/boxes.json``; ``control``: per image name, the (x, y)
    centre of the untrained network's true-class probability minimum (same image, square and stride), or why
    there is none; ``bootstrap``: draws of the standard error over images."""
    base, nmin, alpha, z = dict(OCCLUSION), int(p["min_images"]), float(p["alpha"]), float(p["z"])
    rows = list((boxes or {}).get("images") or [])
    if not rows:
        return _na(base, "no occlusion boxes (reports/figures/occlusion/boxes.json: no ground-truth boxes)")
    if any("inside" not in r for r in rows):
        return _na(base, "boxes.json has no 'inside' per image")
    if any("min_prob_centre" not in r or "boxes" not in r for r in rows):
        return _na(base, "boxes.json has no 'min_prob_centre' and 'boxes' per image: no permutation null")
    counted, note = counted_images(rows)
    n = len(counted)
    if n == 0:
        return _na({**base, "ours": "0 images"}, f"no correctly classified image < {nmin}: too few to tell from chance{note}")
    k, expected, pval = st.permutation_inside([r["min_prob_centre"] for r in counted], [r["boxes"] for r in counted],
                                              draws=int(p["permutations"]), seed=seed)
    uniform = sum(float(r["chance"]) for r in counted) if all("chance" in r for r in counted) else float("nan")
    ours = f"{k} of {n} (p={_f(pval, 3)} against {_f(expected, 1)} expected with the boxes shuffled; a uniform " \
           f"position would give {_f(uniform, 1)})"
    trained_in = np.array([st.inside(r["min_prob_centre"], r["boxes"]) for r in counted], float)
    c_value, se, ctl = None, float("nan"), f"not computed ({control})" if isinstance(control, str) else "not computed"
    if isinstance(control, Mapping) and all(r.get("image") in control for r in counted):
        control_in = np.array([st.inside(control[r["image"]], r["boxes"]) for r in counted], float)
        c_value = float(control_in.mean())
        diff = trained_in - control_in
        se = st.bootstrap_se(lambda idx: float(diff[idx].mean()), n, bootstrap, seed)
        ctl = f"{int(control_in.sum())} of {n} inside (untrained, same images and boxes); se of the difference {_f(se, 3)}"
    if n < nmin:
        return Claim(**base, ours=ours, control=ctl, value=k / n, control_value=c_value, verdict=NA,
                     reason=f"{n} correctly classified image(s) < {nmin}: too few to tell from chance{note}")
    if c_value is not None and math.isnan(se):
        return Claim(**base, ours=ours, control=ctl, value=k / n, control_value=c_value, verdict=NA,
                     reason="no standard error over images: the margin over the control is unmeasured" + note)
    v, why = _decide(k / n, pval < alpha, c_value, z * se if c_value is not None else 0.0,
                     f"permutation p = {_f(pval, 3)} >= {alpha:g}")
    return Claim(**base, ours=ours, control=ctl, value=k / n, control_value=c_value, verdict=v,
                 reason=(why + (f" ({z:g} se)" if why.startswith("passes, but beats") else "")) + note)


# ------------------------------------------------------------------------------------------ 6: Table 1
def table1_gaps(table: pd.DataFrame | None) -> dict | str:
    """Table 1's layer-5 and layer-7 relative gaps (``g5``, ``g7``), the layer-5 gap in Δ units (``diff``:
    Δ random − mean Δ parts), its bootstrap standard error over images (``se``, NaN without one), the
    random row's layer-5 Δ and the paper's gaps; or why there are none."""
    if table is None or table.empty:
        return "no Table 1 (reports/tables/table1_correspondence.csv)"
    if "not_measurable" in table.columns:  # the visualize stage could not measure it on this data, and says why
        return str(table["not_measurable"].iloc[0])
    names = table["occlusion"].astype(str).str.lower()
    parts, rand = table[names.str.contains("eye|nose")], table[names.str.contains("random")]
    if parts.empty or rand.empty:
        return "Table 1 lacks part or random rows"
    r = rand.iloc[0]

    def gap(key: str, prefix: str = "") -> float:
        return st.relative_gap(float(r[f"{prefix}delta_{key}_mean"]), parts[f"{prefix}delta_{key}_mean"].astype(float).tolist())

    paper = "paper_delta_layer5_mean" in table
    # the noise of the gap is over images (the statistic compares images with each other): the mask repeats
    # over the same few images alone underestimate it, so the verdict needs the bootstrap over images
    col = "gap_layer5_se_images"
    return {"g5": gap("layer5"), "g7": gap("layer7"),
            "pg5": gap("layer5", "paper_") if paper else math.nan, "pg7": gap("layer7", "paper_") if paper else math.nan,
            "diff": float(r["delta_layer5_mean"]) - float(parts["delta_layer5_mean"].astype(float).mean()),
            "random": float(r["delta_layer5_mean"]),
            "se": float(table[col].dropna().iloc[0]) if col in table and table[col].notna().any() else math.nan}


def correspondence(table: pd.DataFrame | None, p: Mapping, control: pd.DataFrame | str | None = None) -> list[Claim]:
    """Table 1 (``reports/tables/table1_correspondence.csv``); ``control``: the same table of the untrained
    network (same images, landmarks, squares, repeats and seed), or why there is none. Layer 5 holds when its
    gap exceeds ``z`` standard errors over images and the untrained gap by ``z`` standard errors of the
    difference (the two bootstraps' errors in quadrature)."""
    z = float(p["z"])
    b1 = dict(id="correspondence_layer5", claim="At layer 5, occluding eyes or nose changes the features more "
              "consistently than random regions (Table 1)",
              statistic=f"(Δ random − mean Δ eyes/nose) / Δ random at layer 5; holds when the gap exceeds {z:g} "
                        f"standard errors over images, and the untrained network's gap by {z:g} standard errors "
                        f"of the difference", paper="", figure="table1_correspondence")
    b2 = dict(id="correspondence_layer7", claim="At layer 7 the parts are no more consistent than random (Table 1)",
              statistic="relative gap at layer 7 vs at layer 5", paper="", figure="table1_correspondence")
    g = table1_gaps(table)
    if isinstance(g, str):
        return [_na(b1, g), _na(b2, g)]
    g5, g7, diff, se = g["g5"], g["g7"], g["diff"], g["se"]
    c = table1_gaps(control) if isinstance(control, pd.DataFrame) else (control or "not computed")
    if isinstance(c, str):
        ctl1, c_value = f"not computed ({c})", None
    else:
        ctl1, c_value = (f"relative gap {_f(c['g5'])} ({_f(c['diff'], 3)} vs se {_f(c['se'], 3)} over images; "
                         f"untrained)"), c["g5"]
    b1 = {**b1, "paper": f"relative gap {_f(g['pg5'])}", "control": ctl1}
    text = f"relative gap {_f(g5)} ({_f(diff, 3)} vs se {_f(se, 3)} over images)"
    if math.isnan(se):
        c1 = Claim(**b1, ours=f"relative gap {_f(g5)} (gap {_f(diff, 3)})", value=g5, control_value=c_value, verdict=NA,
                   reason="Table 1 has no standard error over images (gap_layer5_se_images: a bootstrap over the "
                          "images); the mask repeats over the same images do not measure the gap's noise")
    elif isinstance(c, dict) and math.isnan(c["se"]):
        c1 = Claim(**b1, ours=text, value=g5, control_value=c_value, verdict=NA,
                   reason="the untrained Table 1 has no standard error over images")
    else:
        margin = z * math.hypot(se, c["se"]) if isinstance(c, dict) else 0.0
        v, why = _decide(diff, diff > z * se, c["diff"] if isinstance(c, dict) else None, margin,
                         f"gap within {z:g} standard errors over images")
        c1 = Claim(**b1, ours=text, value=g5, control_value=c_value, verdict=v,
                   reason=why + (f" (Δ units; {z:g} se)" if why.startswith("passes, but beats") else ""))
    pg5, pg7 = g["pg5"], g["pg7"]
    ok2 = g7 < g5
    c2 = Claim(**{**b2, "paper": f"{_f(pg7)} vs {_f(pg5)}", "control": "layer 5's gap (the table's own control)"},
               ours=f"{_f(g7)} vs {_f(g5)}", value=g5 - g7,
               verdict=HOLDS if ok2 else FAILS, reason="" if ok2 else "the gap is not smaller at layer 7")
    return [c1, c2]
