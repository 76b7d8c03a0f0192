"""Read what the pipeline wrote and turn it into the claims (``evaluate``): no file is written here.

Every input is optional: a missing file makes the claims that need it ``not measurable`` with the reason,
and an input that cannot be read (or a statistic that fails on it) does the same for its claims, with the
error's first line, so one broken output never hides the other claims.

The untrained controls are rebuilt here from each trained model's architecture and the run's ``seed``
(``zfnet.untrained``); their fingerprints go into ``metrics/claims.json`` under ``controls``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd
import torch

from zfnet.claims import measure as ms
from zfnet.claims import verdicts as vd
from zfnet.claims.verdicts import Claim
from zfnet.paper import FEATURE_LAYERS

__all__ = ["COLUMNS", "at_chance", "evaluate", "layer_weights", "metrics", "table", "top9_similarity"]

top9_similarity = ms.top9_similarity

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
    from zfnet.untrained import untrained_like
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


def _val_count(prepared: str | Path) -> int | None:
    stats = _read_json(Path(prepared) / "stats.json") or {}
    n = (stats.get("val") or {}).get("written")
    return int(n) if n else None


def _guard(make: Callable[[], list[Claim]], fallback: Callable[[str], list[Claim]]) -> list[Claim]:
    try:
        return make()
    except Exception as err:  # an unreadable input: those claims are not measurable, the rest still run
        line = (str(err).strip().splitlines() or [""])[0][:200]
        return fallback(f"could not read or compute: {type(err).__name__}: {line}")


def _attempt(make: Callable[[], object]) -> object:
    """``make()``, or why it failed (one line): an untrained control that cannot be computed leaves the
    trained statistic standing, its control column saying why."""
    try:
        return make()
    except Exception as err:
        line = (str(err).strip().splitlines() or [""])[0][:200]
        return f"could not compute: {type(err).__name__}: {line}"


def _na_all(*bases: dict) -> Callable[[str], list[Claim]]:
    return lambda reason: [vd._na(dict(b), reason) for b in bases]


def evaluate(c: Mapping, crop: int | None = None, seed: int = 0, fingerprints: dict | None = None,
             parts: Callable[[], tuple | str] | None = None) -> list[Claim]:
    """All claims from the pipeline's outputs named in ``c`` (the ``claims`` config group, as a plain dict).
    ``seed``: the train runs' seed (their untrained controls); ``fingerprints`` (filled when given): each
    control's weight fingerprint by the trained model's path; ``parts``: returns Table 1's (images,
    landmarks, visualize.correspondence options), or why there are none (the correspondence control)."""
    num_classes = _num_classes(c["prepared_dir"])
    fps = fingerprints if fingerprints is not None else {}
    claims: list[Claim] = []

    claims += _guard(lambda: [vd.evolution(_checkpoint_weights(c["checkpoints_dir"]), c["evolution"])],
                     _na_all(vd.EVOLUTION))

    trained = {"model": None}

    def main_model():
        if trained["model"] is None and Path(c["model"]).is_file():
            from zfnet.untrained import untrained_like
            from zfnet.models.weights import load_model

            model = load_model(c["model"])
            control, fps[str(c["model"])] = untrained_like(model, seed)
            trained["model"] = (model, control)
        return trained["model"]

    def inv():
        curves = {k: _csv(Path(c["curves_dir"]) / f"{k}.csv") for k in ("translate", "scale", "rotate")}
        ctl, se = None, None
        pair = main_model()
        n = int(c["invariance"]["images"])
        if pair is not None and any(f is not None and not f.empty for f in curves.values()):
            from zfnet.analysis.invariance import mean_curves

            size = crop or int(getattr(pair[0], "config", {}).get("input_size", 224))
            got = ms.val_images(c["prepared_dir"], size, n, labels=True)
            if got is not None:
                # the trained model's per-image curves on the same images: the noise over images of the
                # trained-minus-untrained edge (the CSV holds only their mean)
                sweep_t, sweep_c = ms.control_sweep(pair[0], curves, *got), ms.control_sweep(pair[1], curves, *got)
                ctl = mean_curves(sweep_c)
                se = ms.invariance_se(sweep_t, sweep_c, int(c["bootstrap"]), seed)
        return vd.invariance(curves, c["invariance"], num_classes, control=ctl, se=se)

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
        boxes = json.loads(f.read_text()) if f.is_file() else None
        rows = vd.counted_images(list((boxes or {}).get("images") or []))[0]
        ctl: dict | str | None = None
        pair = main_model()
        if rows and pair is not None and all("image" in r and "label" in r for r in rows):
            size = crop or int(getattr(pair[0], "config", {}).get("input_size", 224))
            images = _attempt(lambda: ms.val_by_name(c["prepared_dir"], size, {r["image"] for r in rows}))
            ctl = images if isinstance(images, str) else _attempt(lambda: ms.occlusion_control(pair[1], rows, images))
        return [vd.occlusion(boxes, c["occlusion"], seed=seed, control=ctl, bootstrap=int(c["bootstrap"]))]

    claims += _guard(occ, _na_all(vd.OCCLUSION))

    tables = Path(c["tables_dir"])
    def corr():
        table1 = _csv(tables / "table1_correspondence.csv")
        ctl: pd.DataFrame | str | None = None
        pair = main_model()
        if not isinstance(vd.table1_gaps(table1), str) and pair is not None:
            got = _attempt(parts) if parts is not None else "the images and landmarks of Table 1 were not given"
            ctl = got if isinstance(got, str) else _attempt(lambda: ms.correspondence_control(pair[1], table1, *got))
        return vd.correspondence(table1, c["correspondence"], control=ctl)

    claims += _guard(corr,
                     lambda r: [vd._na(dict(id=i, claim=i, statistic="", paper="", figure="table1_correspondence"), r)
                                for i in ("correspondence_layer5", "correspondence_layer7")])

    def t3():
        chance = None
        f = Path(c["ablation_metrics"]) / "alexnet.json"
        if f.is_file():
            chance = json.loads(f.read_text()).get("chance_top1_error")
        elif num_classes:
            chance = 1 - 1 / num_classes
        table3 = _csv(tables / "table3_ablation.csv")
        rows = [] if table3 is None or "variant" not in table3 else [str(v) for v in table3["variant"]]
        models = {r: Path(c["ablation_models"]) / r / "model.pt" for r in rows}
        control = _attempt(lambda: ms.untrained_errors(models, c["prepared_dir"], crop, seed, fps)) if rows else None
        return vd.table3(table3, c["table3"], None if chance is None else 100 * chance,
                         val_images=_val_count(c["prepared_dir"]), control=control)

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
        images = ms.val_images(c["prepared_dir"], size, int(gp["images"]))
        if images is None:
            return [vd.grouping(None, gp, f"no prepared validation images ({c['prepared_dir']})")]
        kw = dict(maps_per_layer=int(gp["maps_per_layer"]), k=int(gp["k"]), draws=int(gp["draws"]), seed=seed,
                  bootstrap=int(c["bootstrap"]))
        sim = ms.top9_similarity(model, images, gp["layers"], **kw)
        return [vd.grouping(sim, gp, control=ms.top9_similarity(control, images, gp["layers"], **kw))]

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
