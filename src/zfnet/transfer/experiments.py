"""§5.2 / §5.3 end to end: features -> classifiers -> Tables 4–7, metrics and a Fig. 9-style curve.

``run(cfg)`` evaluates, for Caltech-101 and Caltech-256, every configured number of training images per
class over seeded folds (softmax on layer 7 of the ImageNet model; the non-pretrained network trained from
scratch), then one layer at a time with a linear SVM and a softmax (Table 7; with ``transfer.table7.untrained``
also on the untrained network's features, its "(untrained)" columns), and VOC 2012 (a softmax on
layer 7, per-class AP on val). Results are returned as plain records; ``tables`` formats them beside the
paper's numbers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from zfnet.data.image_files import ImageFiles
from zfnet import paper
from zfnet.figures.notes import write_notes
from zfnet.transfer import classifiers, datasets, nonpretrained
from zfnet.transfer.features import cached_features
from zfnet.transfer.protocols import folds, mean_per_class_accuracy, mean_std, voc_ap

log = logging.getLogger(__name__)

#: the curve figures' notes (:mod:`zfnet.figures.notes`): title, what the paper shows there, place in the report
NOTES = ("Fig. 9 / Tables 4–5: transfer to Caltech",
         "Mean per-class accuracy against the number of training images per class: a softmax on the "
         "ImageNet model's layer 7 vs the same network trained from scratch on the target images.", 90)
LAYER_NUMBER = {"conv1": 1, "conv2": 2, "conv3": 3, "conv4": 4, "conv5": 5, "fc6": 6, "fc7": 7}


def _features(cfg, name: str, paths, untrained: bool = False):
    """Layer features of ``paths``, decoded ``transfer.features.chunk`` images at a time (cached); with
    ``untrained``, those of the checkpoint's untrained control (the train runs' top-level ``seed``)."""
    t = cfg.transfer
    return cached_features(t.checkpoint, Path(cfg.prepare.out_dir) / "mean.npy", paths, t.cache_dir,
                           f"{name}_untrained" if untrained else name, cfg.data.resize, cfg.data.crop,
                           list(t.features.layers), int(t.features.grid), int(t.features.batch_size), int(t.workers),
                           chunk=int(t.features.chunk), untrained_seed=int(cfg.seed) if untrained else None)


def _settings(cfg, kind: str) -> dict:
    return {**OmegaConf.to_container(cfg.transfer.classifier[kind], resolve=True), "seed": int(cfg.transfer.seed)}


def caltech(cfg, name: str) -> list[dict]:
    """Records {dataset, method, layer, classifier, n_train, fold, accuracy} for one Caltech dataset; method
    ``pretrained`` (the checkpoint's features), ``untrained`` (Table 7 on its untrained control's features,
    with ``transfer.table7.untrained``: the same images, folds and classifiers) or ``nonpretrained``."""
    t, d = cfg.transfer, cfg.transfer[name]
    data = datasets.load(name, d)
    feats, keep, _bad = _features(cfg, name, data.paths)
    labels = data.labels[keep]
    control = None
    if name in t.table7 and bool(t.table7.get("untrained", False)):
        control, c_keep, _ = _features(cfg, name, data.paths, untrained=True)
        if c_keep != keep:  # the same files decoded twice: only a changed file between the two reads differs
            raise RuntimeError(f"transfer.{name}: the untrained features read other images than the trained ones")
    records = []
    top = t.classifier.layer
    sizes = sorted({*map(int, d.train_per_class)} | ({int(t.table7[name])} if name in t.table7 else set()))
    for n_train in sizes:
        splits = folds(labels, n_train, d.get("test_per_class"), int(d.folds), int(t.seed), dataset=f"transfer.{name}")
        table7 = n_train == int(t.table7.get(name, -1))
        for fold, (tr, te) in enumerate(splits):
            runs = [("softmax", top)] if n_train in d.train_per_class else []
            if table7:
                runs += [(kind, layer) for kind in t.table7.classifiers for layer in t.features.layers]
            for kind, layer in dict.fromkeys(runs):
                x = feats[layer]
                pred = classifiers.fit_predict(kind, x[tr], labels[tr], x[te], **_settings(cfg, kind))
                records.append({"dataset": name, "method": "pretrained", "classifier": kind, "layer": layer,
                                "n_train": n_train, "fold": fold, "accuracy": mean_per_class_accuracy(labels[te], pred)})
            if table7 and control is not None:
                for kind in t.table7.classifiers:
                    for layer in t.features.layers:
                        x = control[layer]
                        pred = classifiers.fit_predict(kind, x[tr], labels[tr], x[te], **_settings(cfg, kind))
                        records.append({"dataset": name, "method": "untrained", "classifier": kind, "layer": layer,
                                        "n_train": n_train, "fold": fold,
                                        "accuracy": mean_per_class_accuracy(labels[te], pred)})
        if t.nonpretrained.enabled and n_train in d.train_per_class:
            npt = t.nonpretrained
            files = [data.paths[i] for i in keep]  # the readable images (the features' rows): read batch by batch
            for fold, (tr, te) in enumerate(splits[: int(npt.folds)]):
                log.info("%s: non-pretrained, %d per class, fold %d", name, n_train, fold)
                train = ImageFiles([files[i] for i in tr], labels[tr], cfg.data.resize)
                test = ImageFiles([files[i] for i in te], labels[te], cfg.data.resize)
                pred = nonpretrained.fit_predict(
                    train, None, test, len(data.classes), OmegaConf.to_container(cfg.model, resolve=True),
                    int(cfg.data.crop), int(npt.epochs), int(npt.batch_size), float(npt.lr), float(npt.momentum),
                    float(npt.weight_decay), seed=int(t.seed) + fold, workers=int(t.workers))
                records.append({"dataset": name, "method": "nonpretrained", "classifier": "softmax", "layer": "fc7",
                                "n_train": n_train, "fold": fold, "accuracy": mean_per_class_accuracy(labels[te], pred)})
    return records


def voc(cfg) -> pd.DataFrame:
    """Per-class AP on the test split of a softmax on layer 7 trained on the train split."""
    t = cfg.transfer
    train, test = datasets.load("voc2012", t.voc2012)
    layer = t.classifier.layer
    f_train, k_train, _ = _features(cfg, "voc2012_" + t.voc2012.train_split, train.paths)
    f_test, k_test, _ = _features(cfg, "voc2012_" + t.voc2012.test_split, test.paths)
    scores = classifiers.fit_multilabel_softmax(f_train[layer], train.targets[k_train], f_test[layer],
                                                **_settings(cfg, "softmax"))
    targets = test.targets[k_test]
    return pd.DataFrame({"class": test.classes,
                         "ap": [voc_ap(scores[:, c], targets[:, c]) for c in range(len(test.classes))],
                         "positives": (targets > 0).sum(axis=0), "train_positives": (train.targets[k_train] > 0).sum(axis=0)})


def summarize(records: list[dict]) -> pd.DataFrame:
    """Mean ± std (%) over folds per (dataset, method, classifier, layer, n_train)."""
    frame = pd.DataFrame(records)
    keys = ["dataset", "method", "classifier", "layer", "n_train"]
    rows = []
    for key, group in frame.groupby(keys, sort=True):
        mean, std = mean_std(group.accuracy)
        rows.append({**dict(zip(keys, key)), "mean": mean, "std": std, "folds": len(group)})
    return pd.DataFrame(rows)


def _cell(summary: pd.DataFrame, **where) -> str:
    sel = summary
    for k, v in where.items():
        sel = sel[sel[k] == v]
    if sel.empty:
        return "–"
    row = sel.iloc[0]
    return f"{row['mean']:.1f} ± {row['std']:.1f}" if row["folds"] > 1 else f"{row['mean']:.1f}"


def caltech_table(summary: pd.DataFrame, name: str, paper_rows: dict, top_layer: str) -> pd.DataFrame:
    """Table 4 / 5: the paper's rows, then ours; one column per number of training images per class."""
    sizes = sorted({n for row in paper_rows.values() for n in row} | set(summary[summary.dataset == name].n_train))
    rows = [{"method": m, "source": "paper", **{f"{n}/class": r.get(n, "–") for n in sizes}} for m, r in paper_rows.items()]
    for method, label in (("nonpretrained", "Non-pretrained convnet"), ("pretrained", "ImageNet-pretrained convnet")):
        rows.append({"method": label, "source": "ours", **{f"{n}/class": _cell(summary, dataset=name, method=method,
                                                                               classifier="softmax", layer=top_layer, n_train=n)
                                                             for n in sizes}})
    return pd.DataFrame(rows)


def voc_table(ap: pd.DataFrame) -> pd.DataFrame:
    rows = [{"class": r["class"], "AP % (ours, val)": round(100 * r["ap"], 1), "AP % (paper, test)": paper.TABLE6[r["class"]],
             "val positives": int(r["positives"])} for _, r in ap.iterrows()]
    rows.append({"class": "mean", "AP % (ours, val)": round(100 * float(np.nanmean(ap.ap)), 1) if ap.ap.notna().any() else float("nan"),
                 "AP % (paper, test)": paper.TABLE6_MEAN, "val positives": int(ap.positives.sum())})
    return pd.DataFrame(rows)


def layers_table(summary: pd.DataFrame, cfg) -> pd.DataFrame:
    t = cfg.transfer
    n101, n256 = int(t.table7.caltech101), int(t.table7.caltech256)
    p101, p256 = paper.TABLE7_SIZES["caltech101"], paper.TABLE7_SIZES["caltech256"]
    untrained = "method" in summary and (summary["method"] == "untrained").any()
    rows = []
    for kind in t.table7.classifiers:
        for layer in t.features.layers:
            number = LAYER_NUMBER.get(layer, layer)
            theirs = paper.TABLE7.get((kind, number), ("–", "–"))
            row = {"classifier (layer)": f"{'SVM' if kind == 'svm' else 'Softmax'} ({number})"}
            for (name, n, p, label), paper_cell in zip((("caltech101", n101, p101, "Caltech-101"),
                                                        ("caltech256", n256, p256, "Caltech-256")), theirs):
                row[f"{label} {n}/class (ours)"] = _cell(summary, dataset=name, method="pretrained", classifier=kind,
                                                         layer=layer, n_train=n)
                if untrained:  # the same protocol on the untrained network's features (the claims' control)
                    row[f"{label} {n}/class (untrained)"] = _cell(summary, dataset=name, method="untrained",
                                                                  classifier=kind, layer=layer, n_train=n)
                row[f"{label} {p}/class (paper)"] = paper_cell
            rows.append(row)
    return pd.DataFrame(rows)


def table7_note(cfg) -> str:
    """What a reader must know to compare Table 7 with the paper's: the training sizes, ours and the paper's."""
    ours = {name: int(cfg.transfer.table7[name]) for name in paper.TABLE7_SIZES}
    text = ("Training images per class: ours " + ", ".join(f"{n} ({name})" for name, n in ours.items())
            + "; the paper's " + ", ".join(f"{n} ({name})" for name, n in paper.TABLE7_SIZES.items()) + ".")
    if ours != paper.TABLE7_SIZES:
        text += " The sizes differ: accuracies at other training sizes are not directly comparable."
    return text


def curve_figure(summary: pd.DataFrame, name: str, top_layer: str, out: Path) -> Path | None:
    """Fig. 9-style: accuracy against training images per class, pretrained vs non-pretrained."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zfnet.io import atomic_path

    sel = summary[(summary.dataset == name) & (summary.classifier == "softmax") & (summary.layer == top_layer)]
    if sel.empty:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for method, label in (("pretrained", "ImageNet-pretrained (ours)"), ("nonpretrained", "non-pretrained (ours)")):
        s = sel[sel.method == method].sort_values("n_train")
        if not s.empty:
            ax.errorbar(s.n_train, s["mean"], yerr=s["std"], marker="o", capsize=3, label=label)
    ax.set(xlabel="training images per class", ylabel="mean per-class accuracy (%)", title=name, ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return out


def metrics(summary: pd.DataFrame, ap: pd.DataFrame | None, top_layer: str) -> dict:
    """DVC metrics: accuracies of the layer-7 softmax per dataset / method / size, VOC mAP."""
    out: dict = {}
    for _, r in summary[(summary.classifier == "softmax") & (summary.layer == top_layer)].iterrows():
        out.setdefault(r.dataset, {}).setdefault(r.method, {})[f"{r.n_train}_per_class"] = {
            "accuracy": round(r["mean"], 3), "std": round(r["std"], 3)}
    if ap is not None:
        out["voc2012"] = {"mAP": round(100 * float(np.nanmean(ap.ap)), 3) if ap.ap.notna().any() else None,
                          "classes_scored": int(ap.ap.notna().sum())}
    return out


def run(cfg) -> dict:
    """The transfer stage: every protocol, then Tables 4–7 (CSV + Markdown), the curve figures and the
    metrics JSON. Returns {"metrics", "tables": stem -> frame, "figures": [paths], "summary": frame}."""
    from zfnet.io import write_json, write_text
    from zfnet.tables import write_table

    t = cfg.transfer
    top = t.classifier.layer
    records = caltech(cfg, "caltech101") + caltech(cfg, "caltech256")
    summary = summarize(records)
    ap = voc(cfg)
    tables = {
        "table4_caltech101": caltech_table(summary, "caltech101", paper.TABLE4, top),
        "table5_caltech256": caltech_table(summary, "caltech256", paper.TABLE5, top),
        "table6_voc2012": voc_table(ap),
        "table7_layers": layers_table(summary, cfg),
    }
    for stem, frame in tables.items():
        write_table(frame, Path(t.tables_dir) / stem, note=table7_note(cfg) if stem == "table7_layers" else None)
    cache = Path(t.cache_dir)
    write_text(cache / "folds.csv", pd.DataFrame(records).to_csv(index=False))  # every fold's score
    figures = [p for name in ("caltech101", "caltech256")
               if (p := curve_figure(summary, name, top, Path(t.figures_dir) / f"{name}_accuracy_vs_train_size.png"))]
    write_notes(t.figures_dir, *NOTES)
    result = metrics(summary, ap, top)
    write_json(Path(t.metrics_path), result)
    return {"metrics": result, "tables": tables, "figures": figures, "summary": summary}
