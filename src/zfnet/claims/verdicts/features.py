"""Findings on what the trained network's features do: Fig. 4 (layers converge), Fig. 5 (invariance) and
Fig. 2 (top-9 grouping)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
import torch

from zfnet.claims import statistics as st
from zfnet.claims.verdicts.base import FAILS, HOLDS, NA, Claim, _decide, _f, _na


# ------------------------------------------------------------------------------------------ 1: Fig. 4
EVOLUTION = dict(id="evolution", claim="Lower layers converge within a few epochs, upper layers much later (Fig. 4)",
                 statistic="per layer, first saved epoch after which its relative weight change per epoch "
                           "stays below the fraction of its change over the first saved interval; conv1-2 vs conv5",
                 paper="conv1-2 settle after a few epochs; conv5 after 40-50", figure="evolution",
                 control="none: a statistic of training itself (the untrained network has no epochs)")


def evolution(weights: Mapping[int, Mapping[str, torch.Tensor]] | None, p: Mapping) -> Claim:
    base = dict(EVOLUTION)
    frac, early, late = float(p["fraction"]), list(p["early"]), str(p["late"])
    base["statistic"] = base["statistic"].replace("the fraction", f"{frac:g}")
    if not weights or len(weights) < 3:
        n = len(weights or {})
        return _na(base, f"{n} saved checkpoint(s) of the train run; at least 3 are needed for 2 changes")
    epochs = sorted(weights)
    conv = st.convergence_epochs(st.relative_changes(weights), frac)
    missing = [l for l in early + [late] if l not in conv]
    if missing:
        return _na(base, f"layers {missing} not in the checkpoints")
    ours = ", ".join(f"{l} {conv[l] if conv[l] is not None else 'not settled'}" for l in early + [late])
    unsettled = epochs[-1] + 1  # a layer still changing at the end counts as settling after the run
    e_early = max(conv[l] if conv[l] is not None else unsettled for l in early)
    e_late = conv[late] if conv[late] is not None else unsettled
    if all(conv[l] is None for l in early + [late]):
        return Claim(**base, ours=ours, verdict=NA, value=None,
                     reason=f"no layer's change fell below {frac:g} x its first within epochs {epochs[0]}-{epochs[-1]}")
    ok = e_early < e_late
    return Claim(**base, ours=ours, value=float(e_late - e_early), verdict=HOLDS if ok else FAILS,
                 reason=f"saved epochs {epochs}" + ("" if ok else f"; {late} settles no later than {'/'.join(early)}"))


# ------------------------------------------------------------------------------------------ 2: Fig. 5
IDENTITY = {"translate": 0.0, "scale": 1.0, "rotate": 0.0}


def _layers(frame: pd.DataFrame) -> tuple[str, str]:
    cols = [c for c in frame.columns if c.startswith("distance_")]
    return cols[0], cols[-1]


def invariance_stats(curves: Mapping[str, pd.DataFrame | None]) -> dict | None:
    """Per transformation (translate, scale): the lowest and highest layer's normalized areas and the highest
    layer's R² under a line, √x and x²; plus the rotation drop. None when a sweep is missing."""
    ts = {k: curves.get(k) for k in ("translate", "scale")}
    if any(f is None or f.empty for f in ts.values()):
        return None
    out = {"auc": {}, "shape": {}}
    for k, f in ts.items():
        lo, hi = _layers(f)
        out["auc"][k] = (st.normalized_auc(*st.sweep_curve(f, lo, IDENTITY[k])), st.normalized_auc(*st.sweep_curve(f, hi, IDENTITY[k])))
        out["shape"][k] = st.shape_r2(*st.sweep_curve(f, hi, IDENTITY[k]))
    out["layers"] = _layers(ts["translate"])
    out["diff"] = min(a - b for a, b in out["auc"].values())
    # how much better the line fits than the best curved alternative, the worse transformation counting
    out["linear_edge"] = min(r["linear"] - max(r["sqrt"], r["square"]) for r in out["shape"].values())
    out["r2"] = min(r["linear"] for r in out["shape"].values())
    return out


def rotation(curves: Mapping[str, pd.DataFrame | None]) -> tuple[float, float, float] | str:
    """(p(true) at 0°, its minimum over the angles, the relative drop), or why there is none."""
    rot = curves.get("rotate")
    if rot is None or rot.empty or "p_true" not in rot:
        return "no rotation curve with p_true"
    at0 = rot[(rot["amount"].astype(float) % 360).abs() < 1e-9]
    p0 = float(at0["p_true"].mean()) if len(at0) else float("nan")
    if math.isnan(p0):
        return "the rotation sweep has no 0° amount"
    return p0, float(rot["p_true"].min()), st.relative_drop(rot["p_true"].to_numpy(float), p0)


def _beat(value: float, passes: bool, control: float | None, z: float, se: float | None, fail: str) -> tuple[str, str]:
    """``_decide`` with the margin ``z`` standard errors ``se`` of the trained-minus-untrained difference;
    ``not measurable`` when the value passes against a control but the noise was not measured."""
    se = float("nan") if se is None else float(se)
    if passes and control is not None and not math.isnan(control) and math.isnan(se):
        return NA, "passes, but no standard error over images: the margin over the control is unmeasured"
    v, why = _decide(value, passes, control, z * se if not math.isnan(se) else 0.0, fail)
    return v, why + (f" ({z:g} se)" if why.startswith("passes, but beats") else "")


def invariance(curves: Mapping[str, pd.DataFrame | None], p: Mapping, num_classes: int | None = None,
               control: Mapping[str, pd.DataFrame | None] | None = None, se: Mapping[str, float] | None = None
               ) -> list[Claim]:
    """Three claims from the mean invariance curves (``metrics/invariance/<transform>.csv``); ``control``:
    the same curves of the untrained network (same images, amounts and layers); ``se``: the bootstrap
    standard errors over images of the trained-minus-untrained ``diff``, ``linear_edge`` and ``drop``
    (``measure.invariance_se``). Each must beat its control by ``control_z`` (``linear_z`` for the line's
    edge) such errors."""
    margin, r2min, drop_min = float(p["margin"]), float(p["linear_r2"]), float(p["rotation_drop"])
    cz = float(p["control_z"])
    se = dict(se or {})
    b1 = dict(id="invariance_lower_vs_upper",
              claim="Small translations and scalings change layer 1 dramatically, layer 7 much less (Fig. 5)",
              statistic=f"area under distance/max vs amount/max (0.5: linear, 1: a jump), lowest minus highest "
                        f"layer, translate and scale; passes above {margin:g} and beats the untrained difference by "
                        f"{cz:g} bootstrap standard errors (over images) of the difference",
              paper="layer 1 jumps at once; layer 7 grows gradually", figure="invariance")
    b2 = dict(id="invariance_upper_linear", claim="Layer 7 is quasi-linear in translation and scale (Fig. 5)",
              statistic=f"R² of the highest layer's distance vs |amount| under a line, √x and x² (a·f+b); passes "
                        f"when the line's R² >= {r2min:g} and beats both curves' (value: its edge over the better curve), by "
                        f"{float(p['linear_z']):g} bootstrap standard errors (over images) more than the untrained edge",
              paper="quasi-linear", figure="invariance")
    b3 = dict(id="rotation_not_invariant", claim="The output is not rotation invariant (Fig. 5)",
              statistic=f"relative drop of p(true class) from 0° to its minimum over the angles; passes at >= {drop_min:g} "
                        f"and beats the untrained drop by {cz:g} bootstrap standard errors (over images) of the difference",
              paper="p(true) falls except near symmetric angles", figure="invariance")
    ours, ctl = invariance_stats(curves), invariance_stats(control or {})
    out = []
    if ours is None:
        absent = [k for k in ("translate", "scale") if curves.get(k) is None or curves[k].empty]
        out += [_na(b1, f"no invariance curves for {absent}"), _na(b2, f"no invariance curves for {absent}")]
    else:
        lo, hi = ours["layers"]
        text = "; ".join(f"{k}: {lo} {_f(a)} vs {hi} {_f(b)}" for k, (a, b) in ours["auc"].items())
        c_diff = None if ctl is None else ctl["diff"]
        c_text = "not computed (no untrained curves)" if ctl is None else \
            "; ".join(f"{k}: {_f(a)} vs {_f(b)}" for k, (a, b) in ctl["auc"].items()) + f" (difference {_f(c_diff)})"
        if math.isnan(ours["diff"]):
            out.append(Claim(**b1, ours=text, control=c_text, verdict=NA, reason="a sweep has fewer than 2 amounts"))
        else:
            text += f"; se of the difference over the control {_f(se.get('diff'), 3)} over images"
            v, why = _beat(ours["diff"], ours["diff"] > margin, c_diff, cz, se.get("diff"),
                           f"difference {_f(ours['diff'])} <= {margin:g}")
            out.append(Claim(**b1, ours=text, value=ours["diff"], control=c_text, control_value=c_diff, verdict=v, reason=why))
        text2 = "; ".join(f"{k}: line {_f(r['linear'])}, √x {_f(r['sqrt'])}, x² {_f(r['square'])}" for k, r in ours["shape"].items())
        c_edge = None if ctl is None else ctl["linear_edge"]
        c_text2 = "not computed (no untrained curves)" if ctl is None else \
            "; ".join(f"{k}: line {_f(r['linear'])}" for k, r in ctl["shape"].items()) + f" (edge {_f(c_edge, 3)})"
        edge = ours["linear_edge"]
        if math.isnan(edge) or math.isnan(ours["r2"]):
            out.append(Claim(**b2, ours=text2, control=c_text2, verdict=NA, reason="fewer than 3 amounts or a constant curve"))
        else:
            passes = ours["r2"] >= r2min and edge > 0
            fail = f"R² {_f(ours['r2'])} < {r2min:g}" if ours["r2"] < r2min else f"a curve fits as well (edge {_f(edge, 3)})"
            text2 += f"; se of the edge's difference {_f(se.get('linear_edge'), 3)} over images"
            v, why = _beat(edge, passes, c_edge, float(p["linear_z"]), se.get("linear_edge"), fail)
            out.append(Claim(**b2, ours=text2, value=edge, control=c_text2, control_value=c_edge, verdict=v, reason=why))
    rot, c_rot = rotation(curves), rotation(control or {})
    if isinstance(rot, str):
        out.append(_na(b3, rot))
        return out
    p0, pmin, drop = rot
    text3 = f"p(true) {_f(p0, 3)} at 0°, min {_f(pmin, 3)}: drop {_f(drop)}"
    c_drop = None if isinstance(c_rot, str) else c_rot[2]
    c_text3 = f"not computed ({c_rot})" if isinstance(c_rot, str) else \
        f"p(true) {_f(c_rot[0], 3)} at 0°, min {_f(c_rot[1], 3)}: drop {_f(c_rot[2])}"
    floor = float(p["min_over_uniform"]) / num_classes if num_classes else 0.0
    if p0 < floor:
        out.append(Claim(**b3, ours=text3, value=drop, control=c_text3, control_value=c_drop, verdict=NA,
                         reason=f"p(true) at 0° is {_f(p0, 3)} < {float(p['min_over_uniform']):g}/{num_classes} classes: "
                                f"the model is not confident enough for its output to lose anything"))
        return out
    text3 += f"; se of the difference over the control {_f(se.get('drop'), 3)} over images"
    v, why = _beat(drop, drop >= drop_min, c_drop, cz, se.get("drop"), f"drop {_f(drop)} < {drop_min:g}")
    out.append(Claim(**b3, ours=text3, value=drop, control=c_text3, control_value=c_drop, verdict=v, reason=why))
    return out


# ------------------------------------------------------------------------------------------ 9: Fig. 2
def _gap_se(sim: Mapping[str, tuple], layer: str) -> float:
    """The bootstrap standard error over maps of a layer's gap (the third number, when there is one)."""
    v = sim[layer]
    return float(v[2]) if len(v) > 2 and v[2] is not None else float("nan")


def grouping(similarity: Mapping[str, tuple] | None, p: Mapping, reason: str = "",
             control: Mapping[str, tuple] | None = None) -> Claim:
    """``similarity``: ``{layer: (within top-9, chance[, se])}`` mean pairwise cosine of deconvnet projections
    and the bootstrap standard error over maps of their difference (``statistics.grouping_gap_se``);
    ``control``: the same of the untrained network (same images, draws and seed). At each high layer the gap
    must beat the untrained gap by ``z`` standard errors of the difference (trained and untrained maps are
    chosen separately: independent, so the errors add in quadrature); the worst layer decides."""
    high, z = list(p["high_layers"]), float(p["z"])
    base = dict(id="top9_grouping", claim="The top-9 projections of a map resemble each other, beyond chance at "
                "higher layers (Fig. 2)",
                statistic=f"mean pairwise cosine of a map's top-9 projections minus that of 9 maps' top projections, "
                          f"at {'/'.join(high)}; passes above 0 and beats the untrained gap by {z:g} bootstrap "
                          f"standard errors (over maps) of the difference", paper="strong grouping within each map",
                figure="deconv")
    if not similarity:
        return _na(base, reason or "no trained model or validation images")
    missing = [l for l in high if l not in similarity or math.isnan(similarity[l][1])]
    ours = ", ".join(f"{l} {_f(v[0])} vs {_f(v[1])}" for l, v in similarity.items())
    c_missing = control is None or any(l not in control or math.isnan(control[l][1]) for l in high)
    ctl = "not computed" if control is None else ", ".join(f"{l} {_f(v[0])} vs {_f(v[1])}" for l, v in control.items())
    if missing:
        return Claim(**base, ours=ours, control=ctl, verdict=NA, reason=f"no chance level at {missing} (fewer than 2 active maps)")
    gaps = {l: similarity[l][0] - similarity[l][1] for l in high}
    worst = min(gaps.values())
    if c_missing:
        v, why = _decide(worst, worst > 0, None, 0.0, "a map's top-9 are no more alike than different maps' top units")
        return Claim(**base, ours=ours, value=worst, control=ctl, verdict=v, reason=why)
    c_gaps = {l: control[l][0] - control[l][1] for l in high}
    se = {l: math.hypot(_gap_se(similarity, l), _gap_se(control, l)) for l in high}
    ours += "; se of the difference " + ", ".join(f"{l} {_f(se[l], 3)}" for l in high)
    if any(math.isnan(s) for s in se.values()):
        return Claim(**base, ours=ours, value=worst, control=ctl, control_value=min(c_gaps.values()), verdict=NA,
                     reason="no standard error over maps (fewer than 2 maps): the margin over the control is unmeasured")
    # each layer against its own untrained gap, by its own noise: the layer with the least excess decides
    layer = min(high, key=lambda l: gaps[l] - c_gaps[l] - z * se[l])
    v, why = _decide(gaps[layer], worst > 0, c_gaps[layer], z * se[layer],
                     "a map's top-9 are no more alike than different maps' top units")
    if why and v != NA:
        why += f" ({z:g} se at {layer})"
    return Claim(**base, ours=ours, value=worst, control=ctl, control_value=min(c_gaps.values()), verdict=v, reason=why)
