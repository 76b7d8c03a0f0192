"""Findings on layer-1 filters (Fig. 6): RMS clipping (a check), dominance, mid frequencies, dead filters."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from zfnet.claims import statistics as st
from zfnet.claims.verdicts.base import CHECK, FAILS, HOLDS, Claim, _decide, _f, _na


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
