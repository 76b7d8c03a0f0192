"""Read what the pipeline wrote and turn it into the claims (``evaluate``): no file is written here.

Every input is optional: a missing file makes the claims that need it ``not measurable`` with the reason,
and an input that cannot be read (or a statistic that fails on it) does the same for its claims, with the
error's first line, so one broken output never hides the other claims.

The untrained controls are rebuilt here from each trained model's architecture and the run's ``seed``
(``zfnet.claims.control``); their fingerprints go into ``metrics/claims.json`` under ``controls``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from zfnet.claims import statistics as st
from zfnet.claims import verdicts as vd
from zfnet.claims.verdicts import Claim
from zfnet.paper import FEATURE_LAYERS

__all__ = ["COLUMNS", "at_chance", "control_curves", "evaluate", "layer_weights", "metrics", "table", "top9_similarity"]

LAYERS = FEATURE_LAYERS


def _csv(path: str | Path) -> pd.DataFrame | None:
    path = Path(path)
    return pd.read_csv(path) if path.is_file() else None


def _first_conv(model: torch.nn.Module) -> torch.Tensor:
    from zfnet.analysis.filters import first_conv

    return first_conv(model)[1].weight.detach()


def _first_conv_weights(path: str | Path, seed: int, fingerprints: dict) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(trained, untrained control) layer-1 weights of the model at ``path``; (None, None) when it is missing."""
    if not Path(path).is_file():
        return None, None
    from zfnet.claims.control import untrained_like
    from zfnet.models.weights import load_model

    model = load_model(path)
    control, fp = untrained_like(model, seed)
    fingerprints[str(path)] = fp
    return _first_conv(model), _first_conv(control)


def layer_weights(model: torch.nn.Module, layers=LAYERS) -> dict[str, torch.Tensor]:
    """Per paper layer, all its parameters flattened into one vector (weights and biases)."""
    out = {}
    for name in layers:
        try:
            mod = model.get_submodule(name)
        except AttributeError:
            continue
        params = [p.detach().flatten() for p in mod.parameters()]
        if params:
            out[name] = torch.cat(params)
    return out


def _checkpoint_weights(folder: str | Path) -> dict[int, dict[str, torch.Tensor]]:
    from zfnet.models.weights import load_model

    found = sorted((int(m.group(1)), p) for p in Path(folder).glob("epoch=*.ckpt")
                   if (m := re.fullmatch(r"epoch=(\d+)", p.stem)))
    return {e: layer_weights(load_model(p)) for e, p in found}


def _num_classes(prepared: str | Path) -> int | None:
    f = Path(prepared) / "classes.json"
    if not f.is_file():
        return None
    names = json.loads(f.read_text()).get("names") or []
    return len(names) or None


def _val_images(prepared: str | Path, crop: int, n: int, labels: bool = False):
    """The first ``n`` validation images as the network sees them (centre crop, minus the mean image); with
    ``labels``, (images, labels)."""
    from zfnet.data import shards
    from zfnet.data.crops import crop_offsets

    prepared = Path(prepared)
    if not (prepared / "mean.npy").is_file():
        return None
    mean = torch.from_numpy(np.load(prepared / "mean.npy")).float().permute(2, 0, 1)
    images, found = [], []
    for shard in shards.shards(prepared, "val"):
        for _key, image, label in shards.iter_shard(shard):
            images.append(torch.from_numpy(np.array(image)).permute(2, 0, 1).float())
            found.append(int(label))
            if len(images) == n:
                break
        if len(images) == n:
            break
    if not images:
        return None
    x = torch.stack(images) - mean
    top, left = crop_offsets(x.shape[-1], crop)[4]
    x = x[..., top:top + crop, left:left + crop]
    return (x, torch.tensor(found)) if labels else x


def _val_count(prepared: str | Path) -> int | None:
    stats = _read_json(Path(prepared) / "stats.json") or {}
    n = (stats.get("val") or {}).get("written")
    return int(n) if n else None


def control_curves(model: torch.nn.Module, curves: Mapping[str, pd.DataFrame | None], images: torch.Tensor,
                   labels: torch.Tensor) -> dict[str, pd.DataFrame]:
    """The Fig. 5 mean curves of ``model`` (the untrained control) at the same amounts and layers as
    ``curves`` (the trained model's ``metrics/invariance/<transform>.csv``), on ``images``."""
    from zfnet.analysis.invariance import invariance_sweep, mean_curves

    have = {k: f for k, f in curves.items() if f is not None and not f.empty}
    if not have:
        return {}
    first = next(iter(have.values()))
    layers = [c.removeprefix("distance_") for c in first.columns if c.startswith("distance_")]
    amounts = {k: sorted(set(f["amount"].astype(float))) for k, f in have.items()}
    return mean_curves(invariance_sweep(model, images, labels, amounts, layers=layers))


def top9_similarity(model: torch.nn.Module, images: torch.Tensor, layers, *, maps_per_layer: int = 6, k: int = 9,
                    pool: int = 64, draws: int = 50, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Per layer: (mean pairwise cosine of the top-``k`` deconvnet projections of ``maps_per_layer`` active
    maps, the same for ``k`` random maps' strongest projections). Projections are receptive-field frames."""
    from zfnet.analysis.deconvnet import project_units
    from zfnet.analysis.topk import top_activations

    layers = list(layers)
    topk = top_activations(model, images, layers, k=k)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for layer in layers:
        t = topk[layer]
        kk = t.values.shape[1]
        full = (t.values > 0).all(1) & (t.image_index >= 0).all(1)  # maps with k responding images
        alive = full.nonzero().flatten()
        if len(alive) == 0 or kk < 2:
            continue
        chans = alive[torch.randperm(len(alive), generator=g)[:maps_per_layer]].sort().values
        sel = chans.repeat_interleave(kk)
        proj = project_units(model, images, layer, t.image_index[chans].reshape(-1), sel,
                             t.y[chans].reshape(-1), t.x[chans].reshape(-1)).values
        groups = proj.reshape(len(chans), kk, *proj.shape[1:])
        others = alive[torch.randperm(len(alive), generator=g)[:pool]]
        tops = project_units(model, images, layer, t.image_index[others, 0], others, t.y[others, 0], t.x[others, 0]).values
        out[layer] = st.within_vs_across(groups, tops, draws=draws, seed=seed)
    return out


def _guard(make: Callable[[], list[Claim]], fallback: Callable[[str], list[Claim]]) -> list[Claim]:
    try:
        return make()
    except Exception as err:  # an unreadable input: those claims are not measurable, the rest still run
        line = (str(err).strip().splitlines() or [""])[0][:200]
        return fallback(f"could not read or compute: {type(err).__name__}: {line}")


def _na_all(*bases: dict) -> Callable[[str], list[Claim]]:
    return lambda reason: [vd._na(dict(b), reason) for b in bases]


def evaluate(c: Mapping, crop: int | None = None, seed: int = 0, fingerprints: dict | None = None) -> list[Claim]:
    """All claims from the pipeline's outputs named in ``c`` (the ``claims`` config group, as a plain dict).
    ``seed``: the train runs' seed (their untrained controls); ``fingerprints`` (filled when given): each
    control's weight fingerprint by the trained model's path."""
    num_classes = _num_classes(c["prepared_dir"])
    fps = fingerprints if fingerprints is not None else {}
    claims: list[Claim] = []

    claims += _guard(lambda: [vd.evolution(_checkpoint_weights(c["checkpoints_dir"]), c["evolution"])],
                     _na_all(vd.EVOLUTION))

    trained = {"model": None}

    def main_model():
        if trained["model"] is None and Path(c["model"]).is_file():
            from zfnet.claims.control import untrained_like
            from zfnet.models.weights import load_model

            model = load_model(c["model"])
            control, fps[str(c["model"])] = untrained_like(model, seed)
            trained["model"] = (model, control)
        return trained["model"]

    def inv():
        curves = {k: _csv(Path(c["curves_dir"]) / f"{k}.csv") for k in ("translate", "scale", "rotate")}
        ctl = None
        pair = main_model()
        n = int(c["invariance"]["images"])
        if pair is not None and any(f is not None and not f.empty for f in curves.values()):
            size = crop or int(getattr(pair[0], "config", {}).get("input_size", 224))
            got = _val_images(c["prepared_dir"], size, n, labels=True)
            if got is not None:
                ctl = control_curves(pair[1], curves, *got)
        return vd.invariance(curves, c["invariance"], num_classes, control=ctl)

    claims += _guard(inv, lambda r: [
        vd._na(dict(id=i, claim=i, statistic="", paper="", figure="invariance"), r)
        for i in ("invariance_lower_vs_upper", "invariance_upper_linear", "rotation_not_invariant")])

    def filt():
        clipped, clipped0 = _first_conv_weights(c["zfnet"], seed, fps)
        noclip, noclip0 = _first_conv_weights(c["zfnet_noclip"], seed, fps)
        alex, alex0 = _first_conv_weights(c["alexnet"], seed, fps)
        return (vd.clipping(clipped, noclip, c["filters"], noclip_control=noclip0)
                + vd.zf_vs_alex(alex, clipped, c["filters"], alexnet_control=alex0, zfnet_control=clipped0))

    claims += _guard(filt, lambda r: [vd._na(dict(id=i, claim=i, statistic="", paper="", figure="fig6",
                                                  kind=vd.CHECK if i == "clip_bound" else vd.FINDING), r)
                                      for i in ("clip_bound", "noclip_dominance", "zf_mid_frequencies", "zf_dead_filters")])

    def occ():
        f = Path(c["occlusion_boxes"])
        return [vd.occlusion(json.loads(f.read_text()) if f.is_file() else None, c["occlusion"], seed=seed)]

    claims += _guard(occ, _na_all(vd.OCCLUSION))

    tables = Path(c["tables_dir"])
    claims += _guard(lambda: vd.correspondence(_csv(tables / "table1_correspondence.csv"), c["correspondence"]),
                     lambda r: [vd._na(dict(id=i, claim=i, statistic="", paper="", figure="table1_correspondence"), r)
                                for i in ("correspondence_layer5", "correspondence_layer7")])

    def t3():
        chance = None
        f = Path(c["ablation_metrics"]) / "alexnet.json"
        if f.is_file():
            chance = json.loads(f.read_text()).get("chance_top1_error")
        elif num_classes:
            chance = 1 - 1 / num_classes
        return vd.table3(_csv(tables / "table3_ablation.csv"), c["table3"], None if chance is None else 100 * chance,
                         val_images=_val_count(c["prepared_dir"]))

    claims += _guard(t3, lambda r: [vd._na(dict(id=i, claim=i, statistic="", paper="", figure="table3_ablation"), r)
                                    for i in ("table3_single_removal", "table3_both_removed", "table3_wider_middle")])
    claims += _guard(lambda: vd.transfer({s: _csv(tables / f"{s}.csv") for s in ("table4_caltech101", "table5_caltech256")},
                                         c["transfer"]) + [vd.depth(_csv(tables / "table7_layers.csv"), c["transfer"])],
                     lambda r: [vd._na(dict(id=i, claim=i, statistic="", paper="", figure="table4_caltech101"), r)
                                for i in ("transfer_pretrained", "transfer_few_images", "transfer_depth")])

    def top9():
        gp = c["grouping"]
        pair = main_model()
        if pair is None:
            return [vd.grouping(None, gp, f"no trained model ({c['model']})")]
        model, control = pair
        size = crop or int(getattr(model, "config", {}).get("input_size", 224))
        images = _val_images(c["prepared_dir"], size, int(gp["images"]))
        if images is None:
            return [vd.grouping(None, gp, f"no prepared validation images ({c['prepared_dir']})")]
        kw = dict(maps_per_layer=int(gp["maps_per_layer"]), k=int(gp["k"]), draws=int(gp["draws"]), seed=seed)
        sim = top9_similarity(model, images, gp["layers"], **kw)
        return [vd.grouping(sim, gp, control=top9_similarity(control, images, gp["layers"], **kw))]

    claims += _guard(top9, lambda r: [vd.grouping(None, c["grouping"], r)])
    return at_chance(claims, _read_json(c.get("train_metrics")), float(c["table3"]["chance_margin"]))


# claims about what the trained network's features do: no evidence either way from a network at chance
TRAINED_FEATURES = ("invariance_lower_vs_upper", "invariance_upper_linear", "rotation_not_invariant",
                    "correspondence_layer5", "correspondence_layer7", "transfer_depth", "top9_grouping", "occlusion")


def _read_json(path) -> dict | None:
    return json.loads(Path(path).read_text()) if path and Path(path).is_file() else None


def at_chance(claims: list[Claim], train: Mapping | None, margin: float) -> list[Claim]:
    """Claims on the trained model's features become ``not measurable`` (values kept) when the train run's
    validation top-1 error (``metrics/train.json``) is within ``margin`` points of chance."""
    if not train or train.get("val_top1_error") is None or train.get("chance_top1_error") is None:
        return claims
    err, chance = 100 * float(train["val_top1_error"]), 100 * float(train["chance_top1_error"])
    if err < chance - margin:
        return claims
    why = f"the trained model is at chance (val error {err:.1f}% vs chance {chance:.1f}%): its features are untrained"
    return [vd.Claim(**{**x.row(), "verdict": vd.NA, "reason": why}) if x.id in TRAINED_FEATURES and x.verdict != vd.NA
            else x for x in claims]


COLUMNS = ["claim", "statistic", "ours", "control", "paper", "verdict", "reason", "figure", "kind"]


def table(claims: list[Claim]) -> pd.DataFrame:
    """The claims table, findings first then checks: claim, statistic, ours, control (the untrained network
    or what stands in for it), paper, verdict, reason, figure, kind (finding / check)."""
    ordered = [x for x in claims if x.kind == vd.FINDING] + [x for x in claims if x.kind == vd.CHECK]
    return pd.DataFrame([{k: getattr(x, k) for k in COLUMNS} for x in ordered], columns=COLUMNS)


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def metrics(claims: list[Claim], fingerprints: Mapping[str, str] | None = None, seed: int | None = None) -> dict:
    """``{"findings": {id: {"value", "control", "holds"}}, "checks": {id: {"value", "holds"}}, "summary":
    {...}, "checks_summary": {...}}`` (``holds``: 1 / 0 / None), plus ``controls`` (the seed and each untrained
    control's weight fingerprint) when given: nested, as ``dvc metrics show`` flattens it."""
    def counts(xs):
        return {v.replace(" ", "_"): sum(x.verdict == v for x in xs) for v in vd.VERDICTS}

    findings = [x for x in claims if x.kind == vd.FINDING]
    checks = [x for x in claims if x.kind == vd.CHECK]
    out: dict = {
        "findings": {x.id: {"value": _num(x.value), "control": _num(x.control_value),
                            "holds": {vd.HOLDS: 1, vd.FAILS: 0}.get(x.verdict)} for x in findings},
        "checks": {x.id: {"value": _num(x.value), "holds": {vd.HOLDS: 1, vd.FAILS: 0}.get(x.verdict)} for x in checks},
        "summary": counts(findings),
        "checks_summary": counts(checks),
    }
    if fingerprints is not None:
        out["controls"] = {"seed": seed, "fingerprints": dict(sorted(fingerprints.items()))}
    return out
