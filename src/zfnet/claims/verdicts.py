"""Each of the paper's findings as a :class:`Claim`: the statistic, our value, the paper's, a verdict.

One function per finding, on inputs already read (tensors, DataFrames, dicts; ``None`` when the pipeline
did not produce them) and the tolerances of ``conf/claims/default.yaml`` (``p``, a plain mapping). A
missing or too small input gives ``not measurable`` with the reason; nothing here raises on absent data.
The tolerances are stated in config and never chosen to make a claim pass.

Each finding carries a ``control``: the same statistic on the untrained network (the trained model's own
initial weights, ``zfnet.claims.control``) where one can be computed, else what stands in for it (the
table's own baseline, a permutation null, a noise level) in words. A finding holds only when our value
passes *and* beats the control by the margin the config states; a finding whose untrained control is
missing is ``not measurable``. Statements that test the code, not the paper, have ``kind="check"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from zfnet.claims import statistics as st

HOLDS, FAILS, NA = "holds", "does not hold", "not measurable"
VERDICTS = (HOLDS, FAILS, NA)
FINDING, CHECK = "finding", "check"  # a finding of the paper; a check that the code does what it says
KINDS = (FINDING, CHECK)


@dataclass
class Claim:
    id: str
    claim: str        # the paper's finding, one line
    statistic: str    # what we compute
    ours: str         # our value(s), as text
    paper: str        # the paper's value or direction
    verdict: str      # one of VERDICTS
    reason: str       # always for NA; short otherwise
    figure: str       # a figure group (reports/figures/<group>) or a table stem
    value: float | None = None  # the headline number (metrics/claims.json)
    control: str = "–"          # the same statistic on the untrained network, or what stands in for it
    control_value: float | None = None  # the control's headline number, comparable with ``value``
    kind: str = FINDING         # FINDING or CHECK

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"claim {self.id}: verdict {self.verdict!r} not one of {VERDICTS}")
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.id}: kind {self.kind!r} not one of {KINDS}")
        if self.control_value is not None and not math.isfinite(self.control_value):
            self.control_value = None
        if self.verdict == NA and not self.reason:
            raise ValueError(f"claim {self.id}: 'not measurable' needs a reason")
        if self.value is not None and not math.isfinite(self.value):
            self.value = None

    def row(self) -> dict:
        return asdict(self)


def _f(x: float, nd: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _na(base: dict, reason: str) -> Claim:
    return Claim(**{"ours": "–", **base, "verdict": NA, "reason": reason})


def _decide(value: float, passes: bool, control: float | None, margin: float, what: str, larger: bool = True
            ) -> tuple[str, str]:
    """(verdict, reason) of a finding whose value must pass and beat ``control`` by ``margin`` (``larger``:
    value − control >= margin; else control − value >= margin). ``what``: the failed test's words."""
    if not passes:
        return FAILS, what
    if control is None or math.isnan(control):
        return NA, "passes, but no untrained control to compare with"
    beat = (value - control) if larger else (control - value)
    if beat >= margin:
        return HOLDS, ""
    return FAILS, f"passes, but beats the untrained control by {_f(beat, 3)} < {margin:g}"


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


def _invariance_stats(curves: Mapping[str, pd.DataFrame | None]) -> dict | None:
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


def _rotation(curves: Mapping[str, pd.DataFrame | None]) -> tuple[float, float, float] | str:
    """(p(true) at 0°, its minimum over the angles, the relative drop), or why there is none."""
    rot = curves.get("rotate")
    if rot is None or rot.empty or "p_true" not in rot:
        return "no rotation curve with p_true"
    at0 = rot[(rot["amount"].astype(float) % 360).abs() < 1e-9]
    p0 = float(at0["p_true"].mean()) if len(at0) else float("nan")
    if math.isnan(p0):
        return "the rotation sweep has no 0° amount"
    return p0, float(rot["p_true"].min()), st.relative_drop(rot["p_true"].to_numpy(float), p0)


def invariance(curves: Mapping[str, pd.DataFrame | None], p: Mapping, num_classes: int | None = None,
               control: Mapping[str, pd.DataFrame | None] | None = None) -> list[Claim]:
    """Three claims from the mean invariance curves (``metrics/invariance/<transform>.csv``); ``control``:
    the same curves of the untrained network (same images, amounts and layers)."""
    margin, r2min, drop_min = float(p["margin"]), float(p["linear_r2"]), float(p["rotation_drop"])
    over = float(p["over_control"])
    b1 = dict(id="invariance_lower_vs_upper",
              claim="Small translations and scalings change layer 1 dramatically, layer 7 much less (Fig. 5)",
              statistic=f"area under distance/max vs amount/max (0.5: linear, 1: a jump), lowest minus highest "
                        f"layer, translate and scale; passes above {margin:g}",
              paper="layer 1 jumps at once; layer 7 grows gradually", figure="invariance")
    b2 = dict(id="invariance_upper_linear", claim="Layer 7 is quasi-linear in translation and scale (Fig. 5)",
              statistic=f"R² of the highest layer's distance vs |amount| under a line, √x and x² (a·f+b); passes "
                        f"when the line's R² >= {r2min:g} and beats both curves' (value: its edge over the better curve)",
              paper="quasi-linear", figure="invariance")
    b3 = dict(id="rotation_not_invariant", claim="The output is not rotation invariant (Fig. 5)",
              statistic=f"relative drop of p(true class) from 0° to its minimum over the angles; passes at >= {drop_min:g}",
              paper="p(true) falls except near symmetric angles", figure="invariance")
    ours, ctl = _invariance_stats(curves), _invariance_stats(control or {})
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
            v, why = _decide(ours["diff"], ours["diff"] > margin, c_diff, over, f"difference {_f(ours['diff'])} <= {margin:g}")
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
            v, why = _decide(edge, passes, c_edge, float(p["linear_over_control"]), fail)
            out.append(Claim(**b2, ours=text2, value=edge, control=c_text2, control_value=c_edge, verdict=v, reason=why))
    rot, c_rot = _rotation(curves), _rotation(control or {})
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
    v, why = _decide(drop, drop >= drop_min, c_drop, over, f"drop {_f(drop)} < {drop_min:g}")
    out.append(Claim(**b3, ours=text3, value=drop, control=c_text3, control_value=c_drop, verdict=v, reason=why))
    return out


# ------------------------------------------------------------------------------------------ 3-4: Fig. 6
def clipping(clipped: torch.Tensor | None, noclip: torch.Tensor | None, p: Mapping,
             noclip_control: torch.Tensor | None = None) -> list[Claim]:
    """Layer-1 weights of ZFNet trained with and without RMS clipping; ``noclip_control``: the unclipped
    model's initial layer-1 weights. ``clip_bound`` is a check (clipping runs after every step: it tests
    the code), ``noclip_dominance`` a finding."""
    limit, ratio_min, over = p.get("rms_limit"), float(p["dominance_ratio"]), float(p["dominance_over_control"])
    b1 = dict(id="clip_bound", claim="With RMS clipping no layer-1 filter's RMS exceeds the limit (§3, Fig. 6)",
              statistic="largest layer-1 filter RMS of the clipped model", paper=f"<= {limit}", figure="fig6",
              kind=CHECK, control="none: tests the clipping code, which runs after every step")
    b2 = dict(id="noclip_dominance", claim="Without clipping a few layer-1 filters dominate (Fig. 6)",
              statistic=f"largest / median layer-1 filter RMS without clipping; passes at >= {ratio_min:g} and above "
                        f"the clipped model's; beats the untrained by a factor >= {over:g}", paper="a few filters dominate",
              figure="fig6")
    out = []
    if clipped is None:
        out.append(_na(b1, "no clipped model (models/ablation/zfnet/model.pt)"))
    elif limit is None:
        out.append(_na(b1, "train.rms_clip is null: the run does not clip"))
    else:
        mx = float(st.filter_rms(clipped).max())
        ok = mx <= float(limit) * (1 + float(p["rms_tolerance"]))
        out.append(Claim(**b1, ours=_f(mx, 4), value=mx, verdict=HOLDS if ok else FAILS,
                         reason="" if ok else f"{_f(mx, 4)} > {limit}"))
    if noclip is None or clipped is None:
        which = [n for n, w in (("models/noclip/model.pt", noclip), ("models/ablation/zfnet/model.pt", clipped)) if w is None]
        out.append(_na(b2, f"missing {which}"))
    else:
        r_no, r_cl = st.dominance_ratio(st.filter_rms(noclip)), st.dominance_ratio(st.filter_rms(clipped))
        r0 = None if noclip_control is None else st.dominance_ratio(st.filter_rms(noclip_control))
        passes = r_no >= ratio_min and r_no > r_cl
        # a factor over the control: compared on log scale, value − control >= log(factor)
        v, why = _decide(math.log(r_no), passes, None if r0 is None else math.log(r0), math.log(over),
                         "no filter dominates the unclipped layer 1 at this training length")
        if v == FAILS and passes:
            why = f"passes, but only {_f(r_no / r0)}x the untrained ratio (< {over:g}x)"
        out.append(Claim(**b2, ours=f"{_f(r_no)} without vs {_f(r_cl)} with", value=r_no, verdict=v, reason=why,
                         control="not computed" if r0 is None else f"{_f(r0)} untrained", control_value=r0))
    return out


def zf_vs_alex(alexnet: torch.Tensor | None, zfnet: torch.Tensor | None, p: Mapping,
               alexnet_control: torch.Tensor | None = None, zfnet_control: torch.Tensor | None = None) -> list[Claim]:
    """Layer-1 weights of Krizhevsky's model and ours (the Table 3 baselines: same data, epochs, width) and,
    as controls, their initial weights."""
    frac, bands = float(p["dead_fraction"]), tuple(p["bands"])
    b1 = dict(id="zf_mid_frequencies",
              claim="ZFNet's layer 1 covers mid frequencies, Krizhevsky's mixes extreme high and low (Fig. 6)",
              statistic=f"mean share of layer-1 filter spectral energy (DC removed) at radial frequency "
                        f"{bands[0]:.2f}-{bands[1]:.2f} of the maximum over white noise's share on the same grid "
                        f"(7x7 vs 11x11), zfnet minus alexnet; passes above 0",
              paper="zfnet higher", figure="fig6")
    b2 = dict(id="zf_dead_filters", claim="ZFNet's layer 1 has fewer dead filters than Krizhevsky's (Fig. 6)",
              statistic=f"fraction of layer-1 filters with RMS < {frac:g} x the layer's mean filter RMS, alexnet minus "
                        f"zfnet; passes above 0",
              paper="alexnet: some dead; zfnet: none", figure="fig6")
    if alexnet is None or zfnet is None:
        which = [n for n, w in (("alexnet", alexnet), ("zfnet", zfnet)) if w is None]
        return [_na(b1, f"no Table 3 baseline model for {which}"), _na(b2, f"no Table 3 baseline model for {which}")]
    have_control = alexnet_control is not None and zfnet_control is not None

    def mid(w):
        return st.band_energy_vs_noise(w, bands)["mid"]

    ea, ez = mid(alexnet), mid(zfnet)
    d = ez - ea
    d0 = (mid(zfnet_control) - mid(alexnet_control)) if have_control else None
    ctl = f"zfnet {_f(mid(zfnet_control))} vs alexnet {_f(mid(alexnet_control))}" if have_control else "not computed"
    v, why = _decide(d, d > 0, d0, float(p["mid_over_control"]), "alexnet's layer 1 has at least as much mid-frequency energy")
    c1 = Claim(**b1, ours=f"zfnet {_f(ez)} vs alexnet {_f(ea)} (x white noise)", value=d, verdict=v, reason=why,
               control=ctl, control_value=d0)

    def dead(w):
        return st.dead_fraction(st.filter_rms(w), frac)

    da, dz = dead(alexnet), dead(zfnet)
    g0 = (dead(alexnet_control) - dead(zfnet_control)) if have_control else None
    ctl = f"zfnet {_f(dead(zfnet_control))} vs alexnet {_f(dead(alexnet_control))}" if have_control else "not computed"
    fail = "neither has dead filters" if da == dz == 0 else "zfnet has at least as many"
    v, why = _decide(da - dz, dz < da, g0, float(p["dead_over_control"]), fail)
    c2 = Claim(**b2, ours=f"zfnet {_f(dz)} vs alexnet {_f(da)}", value=da - dz, verdict=v, reason=why,
               control=ctl, control_value=g0)
    return [c1, c2]


# ------------------------------------------------------------------------------------------ 5: Fig. 7
OCCLUSION = dict(id="occlusion", claim="Occluding the object drops the true class's probability most (Fig. 7)",
                 statistic="correctly classified images whose probability minimum lies inside the object's box, vs "
                           "the same images with their boxes shuffled among them (permutation p: minima and boxes keep "
                           "their centre bias, only their pairing is broken)",
                 paper="the minimum falls on the object", figure="occlusion",
                 control="permutation null (the untrained network is not run: it classifies no image correctly)")


def occlusion(boxes: Mapping | None, p: Mapping, seed: int = 0) -> Claim:
    base, nmin, alpha = dict(OCCLUSION), int(p["min_images"]), float(p["alpha"])
    rows = list((boxes or {}).get("images") or [])
    if not rows:
        return _na(base, "no occlusion boxes (reports/figures/occlusion/boxes.json: no ground-truth boxes)")
    if any("inside" not in r for r in rows):
        return _na(base, "boxes.json has no 'inside' per image")
    if any("min_prob_centre" not in r or "boxes" not in r for r in rows):
        return _na(base, "boxes.json has no 'min_prob_centre' and 'boxes' per image: no permutation null")
    note = ""
    if all("correct" in r for r in rows):
        counted = [r for r in rows if r["correct"]]
    else:
        counted, note = rows, "; correctness unknown: all images counted"
    n = len(counted)
    if n == 0:
        return _na({**base, "ours": "0 images"}, f"no correctly classified image < {nmin}: too few to tell from chance{note}")
    k, expected, pval = st.permutation_inside([r["min_prob_centre"] for r in counted], [r["boxes"] for r in counted],
                                              draws=int(p["permutations"]), seed=seed)
    uniform = sum(float(r["chance"]) for r in counted) if all("chance" in r for r in counted) else float("nan")
    ours = f"{k} of {n} (p={_f(pval, 3)}; a uniform position would give {_f(uniform, 1)})"
    ctl = f"{_f(expected, 1)} of {n} expected with the boxes shuffled"
    if n < nmin:
        return Claim(**base | {"control": ctl}, ours=ours, value=k / n, control_value=expected / n, verdict=NA,
                     reason=f"{n} correctly classified image(s) < {nmin}: too few to tell from chance{note}")
    ok = pval < alpha
    return Claim(**base | {"control": ctl}, ours=ours, value=k / n, control_value=expected / n, verdict=HOLDS if ok else FAILS,
                 reason=(f"permutation p < {alpha:g}" if ok else f"permutation p >= {alpha:g}") + note)


# ------------------------------------------------------------------------------------------ 6: Table 1
def correspondence(table: pd.DataFrame | None, p: Mapping) -> list[Claim]:
    z = float(p["z"])
    b1 = dict(id="correspondence_layer5", claim="At layer 5, occluding eyes or nose changes the features more "
              "consistently than random regions (Table 1)",
              statistic=f"(Δ random − mean Δ eyes/nose) / Δ random at layer 5; holds when the gap exceeds {z:g} "
                        f"standard errors", paper="", figure="table1_correspondence")
    b2 = dict(id="correspondence_layer7", claim="At layer 7 the parts are no more consistent than random (Table 1)",
              statistic="relative gap at layer 7 vs at layer 5", paper="", figure="table1_correspondence")
    if table is None or table.empty:
        return [_na(b1, "no Table 1 (reports/tables/table1_correspondence.csv)"), _na(b2, "no Table 1")]
    if "not_measurable" in table.columns:  # the visualize stage could not measure it on this data, and says why
        reason = str(table["not_measurable"].iloc[0])
        return [_na(b1, reason), _na(b2, reason)]
    names = table["occlusion"].astype(str).str.lower()
    parts, rand = table[names.str.contains("eye|nose")], table[names.str.contains("random")]
    if parts.empty or rand.empty:
        return [_na(b1, "Table 1 lacks part or random rows"), _na(b2, "Table 1 lacks part or random rows")]
    r = rand.iloc[0]

    def gap(key: str, prefix: str = "") -> float:
        return st.relative_gap(float(r[f"{prefix}delta_{key}_mean"]), parts[f"{prefix}delta_{key}_mean"].astype(float).tolist())

    g5, g7 = gap("layer5"), gap("layer7")
    pg5, pg7 = (gap("layer5", "paper_"), gap("layer7", "paper_")) if "paper_delta_layer5_mean" in table else (math.nan, math.nan)
    diff = float(r["delta_layer5_mean"]) - float(parts["delta_layer5_mean"].astype(float).mean())
    ctl1 = f"random regions: Δ {_f(float(r['delta_layer5_mean']), 3)} (the table's own control; untrained network not run)"
    b1 = {**b1, "paper": f"relative gap {_f(pg5)}", "control": ctl1}
    # the noise of the gap is over images (the statistic compares images with each other): the mask repeats
    # over the same few images alone underestimate it, so the verdict needs the bootstrap over images
    col = "gap_layer5_se_images"
    se = float(table[col].dropna().iloc[0]) if col in table and table[col].notna().any() else float("nan")
    text = f"relative gap {_f(g5)} ({_f(diff, 3)} vs se {_f(se, 3)} over images)"
    if math.isnan(se):
        c1 = Claim(**b1, ours=f"relative gap {_f(g5)} (gap {_f(diff, 3)})", value=g5, verdict=NA,
                   reason=f"Table 1 has no standard error over images ({col}: a bootstrap over the images); the "
                          f"mask repeats over the same images do not measure the gap's noise")
    else:
        ok1 = diff > z * se
        c1 = Claim(**b1, ours=text, value=g5, verdict=HOLDS if ok1 else FAILS,
                   reason="" if ok1 else f"gap within {z:g} standard errors over images")
    ok2 = g7 < g5
    c2 = Claim(**{**b2, "paper": f"{_f(pg7)} vs {_f(pg5)}", "control": "layer 5's gap (the table's own control)"},
               ours=f"{_f(g7)} vs {_f(g5)}", value=g5 - g7,
               verdict=HOLDS if ok2 else FAILS, reason="" if ok2 else "the gap is not smaller at layer 7")
    return [c1, c2]


# ------------------------------------------------------------------------------------------ 7: Table 3
def table3(table: pd.DataFrame | None, p: Mapping, chance_error: float | None = None,
           val_images: int | None = None) -> list[Claim]:
    """Val top-1 error (%) of the Table 3 variants; ``chance_error`` in % (1 − 1/classes); ``val_images``:
    how many validation images each error was measured on (the noise of a one-run comparison)."""
    little, much, z = float(p["little"]), float(p["much_more"]), float(p["z"])
    untrained = (f"0 (untrained, every variant sits at chance error {_f(chance_error, 1)}%; not run)"
                 if chance_error is not None else "0 (untrained, every variant sits at chance error; not run)")
    b1 = dict(id="table3_single_removal", claim="Removing fc6-7 or conv3-4 alone costs little (Table 3)",
              statistic=f"val top-1 error increase over Krizhevsky's model, each removal; holds at <= {little:g} points",
              paper="+4.3 (fc6-7), +4.9 (conv3-4)", figure="table3_ablation", control=untrained)
    b2 = dict(id="table3_both_removed", claim="Removing both costs much more (Table 3)",
              statistic=f"error increase removing conv3-4 and fc6-7 minus the larger single increase; holds at >= {much:g}",
              paper="+30.8 vs +4.9", figure="table3_ablation", control=untrained)
    b3 = dict(id="table3_wider_middle", claim="Larger middle conv layers help (Table 3)",
              statistic=f"val top-1 error of zfnet with conv3-5 at 512/1024/512 maps minus zfnet's; passes below "
                        f"−{z:g} standard errors of the difference (binomial, one run each)",
              paper="-0.9 (37.5 vs 38.4)", figure="table3_ablation", control=untrained)
    if table is None or table.empty:
        return [_na(b, "no Table 3 (reports/tables/table3_ablation.csv)") for b in (b1, b2, b3)]
    col = next((c for c in table.columns if c.startswith("val top-1") and "ours" in c), None)
    if col is None:
        return [_na(b, "Table 3 has no 'val top-1 (ours)' column") for b in (b1, b2, b3)]
    err = {str(v): st.mean_of(e) for v, e in zip(table["variant"], table[col])}
    err = {k: v for k, v in err.items() if not math.isnan(v)}
    known = sorted(set(err.values()))
    if len(known) == 1:
        reason = f"every trained variant has the same val error ({_f(known[0], 1)}%): too little data or training to rank them"
        return [_na(b, reason) for b in (b1, b2, b3)]
    out = []
    margin = float(p["chance_margin"])

    def at_chance(*rows: str) -> str:
        if chance_error is None:
            return ""
        bad = [r for r in rows if err[r] >= chance_error - margin]
        return f"{bad} within {margin:g} points of chance error ({_f(chance_error, 1)}%)" if bad else ""

    need = ["alexnet", "alexnet_no_3_4", "alexnet_no_6_7"]
    if any(r not in err for r in need):
        out.append(_na(b1, f"missing rows {[r for r in need if r not in err]}"))
        out.append(_na(b2, f"missing rows {[r for r in need + ['alexnet_no_3_4_6_7'] if r not in err]}"))
    else:
        c34, c67 = err["alexnet_no_3_4"] - err["alexnet"], err["alexnet_no_6_7"] - err["alexnet"]
        why = at_chance("alexnet")
        ours = f"+{_f(c67, 1)} (fc6-7), +{_f(c34, 1)} (conv3-4)".replace("+-", "-")
        if why:
            out.append(Claim(**b1, ours=ours, value=max(c34, c67), verdict=NA, reason=why))
        else:
            ok = max(c34, c67) <= little
            out.append(Claim(**b1, ours=ours, value=max(c34, c67), verdict=HOLDS if ok else FAILS,
                             reason="" if ok else f"a removal costs {_f(max(c34, c67), 1)} > {little:g}"))
        if "alexnet_no_3_4_6_7" not in err:
            out.append(_na(b2, "missing row alexnet_no_3_4_6_7"))
        else:
            cb = err["alexnet_no_3_4_6_7"] - err["alexnet"]
            extra = cb - max(c34, c67)
            ours = f"+{_f(cb, 1)} vs +{_f(max(c34, c67), 1)}".replace("+-", "-")
            why = at_chance("alexnet", "alexnet_no_3_4_6_7")
            if why:
                out.append(Claim(**b2, ours=ours, value=extra, verdict=NA, reason=why))
            else:
                ok = extra >= much
                out.append(Claim(**b2, ours=ours, value=extra, verdict=HOLDS if ok else FAILS,
                                 reason="" if ok else f"only {_f(extra, 1)} more than a single removal"))
    if "zfnet" not in err or "zfnet_conv512_1024_512" not in err:
        out.append(_na(b3, "missing rows zfnet / zfnet_conv512_1024_512"))
    else:
        d = err["zfnet_conv512_1024_512"] - err["zfnet"]
        ours = f"{d:+.1f} ({_f(err['zfnet_conv512_1024_512'], 1)} vs {_f(err['zfnet'], 1)})"
        why = at_chance("zfnet", "zfnet_conv512_1024_512")
        if why:
            out.append(Claim(**b3, ours=ours, value=d, verdict=NA, reason=why))
        elif not val_images:
            out.append(Claim(**b3, ours=ours, value=d, verdict=NA,
                             reason="the number of validation images is unknown: no noise level for one run's difference"))
        else:
            se = st.error_difference_se(err["zfnet_conv512_1024_512"], err["zfnet"], int(val_images))
            ok = d < -z * se
            out.append(Claim(**b3, ours=f"{ours}; se {_f(se, 1)} over {val_images} images", value=d,
                             verdict=HOLDS if ok else FAILS,
                             reason="" if ok else ("the wider model is not better" if d >= 0 else
                                                   f"better by {_f(-d, 1)} < {z:g} x se {_f(se, 1)}: within one run's noise")))
    return out


# ------------------------------------------------------------------------------------------ 8: Tables 4, 5, 7
def _per_class_columns(frame: pd.DataFrame) -> dict[int, str]:
    out = {}
    for c in frame.columns:
        head = str(c).split("/")[0]
        if str(c).endswith("/class") and head.isdigit():
            out[int(head)] = c
    return out


def _pretrained_vs_scratch(frame: pd.DataFrame) -> dict[int, tuple[float, float]]:
    """Per training size: (pretrained minus non-pretrained accuracy, its noise: the folds' stds combined)."""
    ours = frame[frame["source"].astype(str) == "ours"]
    method = ours["method"].astype(str).str.lower()
    pre, scratch = ours[method.str.contains("imagenet-pretrained")], ours[method.str.contains("non-pretrained")]
    out = {}
    if pre.empty or scratch.empty:
        return out
    for n, c in sorted(_per_class_columns(frame).items()):
        a, b = st.mean_of(pre.iloc[0][c]), st.mean_of(scratch.iloc[0][c])
        if not (math.isnan(a) or math.isnan(b)):
            out[n] = (a - b, math.hypot(st.std_of(pre.iloc[0][c]), st.std_of(scratch.iloc[0][c])))
    return out


def transfer(tables: Mapping[str, pd.DataFrame | None], p: Mapping) -> list[Claim]:
    """Tables 4 and 5 (``{"table4_caltech101": frame, "table5_caltech256": frame}``); cells "mean ± std"."""
    b1 = dict(id="transfer_pretrained", claim="ImageNet-pretrained features beat the non-pretrained network "
              "(Tables 4-5)", statistic="pretrained minus non-pretrained accuracy (ours), every training size and "
              "dataset; decided where the gap exceeds the folds' std (combined)",
              paper="+61 (Caltech-101, 15/class), +57 (Caltech-256, 15/class)", figure="table4_caltech101",
              control="the non-pretrained network (the table's own control)")
    z = float(p["z"])
    b2 = dict(id="transfer_few_images", claim="The advantage is largest with few training images (Fig. 9)",
              statistic=f"the gap at the fewest images per class minus the gap at the most; passes above {z:g} x "
                        f"the folds' std of that difference",
              paper="Caltech-101: +61 at 15 vs +40 at 30", figure="table5_caltech256",
              control="the gap at the most images per class (the table's own control)")
    gaps: dict[str, dict[int, tuple[float, float]]] = {}
    for stem, frame in tables.items():
        if frame is not None and not frame.empty and {"source", "method"} <= set(frame.columns):
            pairs = _pretrained_vs_scratch(frame)
            if pairs:
                gaps[stem] = pairs
    if not gaps:
        return [_na(b1, "no Table 4/5 with both our pretrained and non-pretrained rows"),
                _na(b2, "no Table 4/5 with both our pretrained and non-pretrained rows")]
    ours = "; ".join(f"{stem.split('_')[-1]}: " + ", ".join(f"{g:+.1f} ± {s:.1f} at {n}" for n, (g, s) in d.items())
                     for stem, d in gaps.items())
    allg = [gs for d in gaps.values() for gs in d.values()]
    low = min(g for g, _ in allg)
    if any(g < -s or (s == 0 and g <= 0) for g, s in allg):
        c1 = Claim(**b1, ours=ours, value=low, verdict=FAILS, reason="the non-pretrained network is better somewhere")
    elif all(g > s for g, s in allg):
        c1 = Claim(**b1, ours=ours, value=low, verdict=HOLDS, reason="")
    else:
        c1 = Claim(**b1, ours=ours, value=low, verdict=NA, reason="a gap is within the folds' std: too few test images or folds")
    multi = {s: d for s, d in gaps.items() if len(d) >= 2}
    if not multi:
        c2 = _na(b2, f"one training size per class measured ({', '.join(str(n) for d in gaps.values() for n in d)}/class)")
    else:
        trend = [(d[min(d)][0] - d[max(d)][0], math.hypot(d[min(d)][1], d[max(d)][1])) for d in multi.values()]
        worst = min(t - z * s for t, s in trend)
        ok = worst > 0
        c2 = Claim(**b2, ours=ours, value=min(t for t, _ in trend), verdict=HOLDS if ok else FAILS,
                   reason="" if ok else ("the gap does not shrink with more images" if min(t for t, _ in trend) <= 0 else
                                         f"the gap shrinks by less than {z:g} x the folds' std"))
    return [c1, c2]


def depth(table7: pd.DataFrame | None, p: Mapping) -> Claim:
    rho_min = float(p["depth_rho"])
    base = dict(id="transfer_depth", claim="Transfer accuracy rises with the depth of the features' layer (Table 7)",
                statistic=f"Spearman correlation of layer (1-7) and accuracy, mean over classifiers and datasets; "
                          f"holds at >= {rho_min:g}", paper="", figure="table7_layers",
                control="not computed (needs a transfer run on the untrained network's features)")
    if table7 is None or table7.empty:
        return _na({**base, "paper": "rises with depth"}, "no Table 7 (reports/tables/table7_layers.csv)")
    key = table7.columns[0]
    parsed = table7[key].astype(str).str.extract(r"^(\w+)\s*\((\d+)\)")
    frame = table7.assign(_clf=parsed[0], _layer=pd.to_numeric(parsed[1]))

    def rhos(kind: str) -> list[float]:
        out = []
        for c in [c for c in table7.columns if f"({kind})" in str(c)]:
            for _, g in frame.groupby("_clf"):
                r = st.spearman(g["_layer"].tolist(), [st.mean_of(v) for v in g[c]])
                if not math.isnan(r):
                    out.append(r)
        return out

    ours, paper = rhos("ours"), rhos("paper")
    base["paper"] = f"rho {_f(float(np.mean(paper)))}" if paper else "rises with depth"
    if not ours:
        return _na(base, "Table 7 has fewer than 3 layers with our accuracy per classifier")
    m = float(np.mean(ours))
    ok = m >= rho_min
    return Claim(**base, ours=f"rho {_f(m)} (over {len(ours)} series)", value=m, verdict=HOLDS if ok else FAILS,
                 reason="" if ok else f"rho < {rho_min:g}")


# ------------------------------------------------------------------------------------------ 9: Fig. 2
def grouping(similarity: Mapping[str, tuple[float, float]] | None, p: Mapping, reason: str = "",
             control: Mapping[str, tuple[float, float]] | None = None) -> Claim:
    """``similarity``: ``{layer: (within top-9, chance)}`` mean pairwise cosine of deconvnet projections;
    ``control``: the same of the untrained network (same images, draws and seed)."""
    high = list(p["high_layers"])
    base = dict(id="top9_grouping", claim="The top-9 projections of a map resemble each other, beyond chance at "
                "higher layers (Fig. 2)",
                statistic=f"mean pairwise cosine of a map's top-9 projections minus that of 9 maps' top projections, "
                          f"at {'/'.join(high)}; passes above 0", paper="strong grouping within each map", figure="deconv")
    if not similarity:
        return _na(base, reason or "no trained model or validation images")
    missing = [l for l in high if l not in similarity or math.isnan(similarity[l][1])]
    ours = ", ".join(f"{l} {_f(w)} vs {_f(c)}" for l, (w, c) in similarity.items())
    c_missing = control is None or any(l not in control or math.isnan(control[l][1]) for l in high)
    ctl = "not computed" if control is None else ", ".join(f"{l} {_f(w)} vs {_f(c)}" for l, (w, c) in control.items())
    if missing:
        return Claim(**base, ours=ours, control=ctl, verdict=NA, reason=f"no chance level at {missing} (fewer than 2 active maps)")
    gaps = {l: similarity[l][0] - similarity[l][1] for l in high}
    # each layer against its own untrained gap: the worst layer decides
    beat = None if c_missing else min(gaps[l] - (control[l][0] - control[l][1]) for l in high)
    c_gap = None if c_missing else min(control[l][0] - control[l][1] for l in high)
    v, why = _decide(min(gaps.values()), min(gaps.values()) > 0, None if beat is None else min(gaps.values()) - beat,
                     float(p["over_control"]), "a map's top-9 are no more alike than different maps' top units")
    return Claim(**base, ours=ours, value=min(gaps.values()), control=ctl, control_value=c_gap, verdict=v, reason=why)
