"""The static HTML report (``reports/index.html`` + ``reports/pages/*.html``): every figure and table the
pipeline produced, ours beside the paper's, with the run's provenance (git revision, params, dataset sizes,
rejected images), and the W&B summary run that mirrors it.

Opens from disk without a server: every link and image is relative to the page that holds it. The index
holds the tables (every CSV in ``report.tables_dir``, so tables of stages added later appear without code
changes), the key figures (the first of each group, linking to the group's page) and the provenance; each
figure group (a folder under ``visualize.out_dir``, listed in its ``index.json`` or not) gets a page.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from omegaconf import OmegaConf

from zfnet.io import write_text

# Table 2 (paper.md): ImageNet 2012 val error (%) of one convnet
PAPER_TABLE2 = {
    "zfnet": {"model": "1 convnet as per Fig. 3", "val_top1": 38.4, "val_top5": 16.5},
    "alexnet": {"model": "Replication of Krizhevsky, 1 convnet", "val_top1": 40.5, "val_top5": 18.1},
}
TABLE_TITLES = {"table1_correspondence": "Table 1: correspondence", "table2_imagenet": "Table 2: ImageNet 2012 classification error",
                "table3_ablation": "Table 3: architecture ablations", "table4_caltech101": "Table 4: Caltech-101",
                "table5_caltech256": "Table 5: Caltech-256", "table6_voc2012": "Table 6: PASCAL VOC 2012",
                "table7_layers": "Table 7: features of one layer"}
# figure groups the visualize stage writes: title and what the paper shows there
FIGURE_GROUPS = {
    "training": ("Training curves", "Loss and top-1 error per epoch: train, validation centre crop and 10-crop."),
    "filters": ("Layer-1 filters", "The first layer's filters of the trained network (Fig. 6 (c) in the paper)."),
    "fig6": ("Fig. 6: Krizhevsky's model beside ours",
             "Layer-1 filters and layer-2 projections of Krizhevsky's architecture, of ours, and of ours trained "
             "without filter RMS clipping (the paper: dead filters and aliasing without the changes)."),
    "deconv": ("Fig. 2: top-9 activations, projected by the deconvnet",
               "Per layer, a few feature maps: the 9 strongest activations over the validation images projected "
               "back to pixel space, beside the image patches that caused them."),
    "evolution": ("Fig. 4: feature evolution during training",
                  "The strongest activation of a few maps per layer, projected, at each saved epoch."),
    "occlusion": ("Fig. 7: occlusion sensitivity",
                  "A grey square slid over the input: the strongest layer-5 map, the probability of the correct "
                  "class and the most probable class as functions of the square's position."),
    "invariance": ("Fig. 5: invariance to translation, scale and rotation",
                   "Euclidean distance between the feature vectors of the original and the transformed image at "
                   "layer 1 and layer 7, and the probability of the true class, per image."),
    "transfer": ("Fig. 9 / Tables 4–5: transfer to Caltech",
                 "Mean per-class accuracy against the number of training images per class: a softmax on the "
                 "ImageNet model's layer 7 vs the same network trained from scratch on the target images."),
    "correspondence": ("Table 1 / Fig. 8: correspondence",
                       "Δ, the consistency of the change caused by masking the same part in different images "
                       "(lower = more consistent), ours beside the paper's."),
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg")
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #222; }
nav { margin: 1rem 0; padding: 0.5rem 0; border-bottom: 1px solid #ddd; } nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
figure { display: inline-block; margin: 0.5rem; vertical-align: top; }
figure.key img { max-height: 220px; }
img { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
.wide { overflow-x: auto; } pre { background: #f6f6f6; padding: 1rem; overflow: auto; } .note { color: #555; }
"""


def _git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def table2(metrics: dict, model_name: str) -> pd.DataFrame:
    paper = PAPER_TABLE2.get(model_name, {})
    return pd.DataFrame([
        {"model": f"ours: {model_name} (this run's data)", "val top-1 (%)": round(100 * metrics["val_top1_error"], 1),
         "val top-5 (%)": round(100 * metrics["val_top5_error"], 1),
         "val top-1, 10-crop (%)": round(100 * metrics["val_10crop_top1_error"], 1),
         "chance top-1 (%)": round(100 * metrics["chance_top1_error"], 1)},
        {"model": f"paper: {paper.get('model', model_name)} (ImageNet 2012)", "val top-1 (%)": paper.get("val_top1"),
         "val top-5 (%)": paper.get("val_top5"), "val top-1, 10-crop (%)": None, "chance top-1 (%)": 99.9},
    ])


# --- what the report shows -------------------------------------------------------------------------
def train_metrics(cfg) -> dict | None:
    return _read_json(Path(cfg.train.get("metrics_path") or "metrics/train.json"))


def tables(cfg) -> dict[str, tuple[Path | None, pd.DataFrame]]:
    """Every paper-style table: Table 2 (from the training metrics) and every CSV in ``report.tables_dir``,
    by stem, each with its CSV (None for Table 2, which the report computes)."""
    found: dict[str, tuple[Path | None, pd.DataFrame]] = {}
    metrics = train_metrics(cfg)
    if metrics:
        found["table2_imagenet"] = (None, table2(metrics, cfg.model.name))
    for path in sorted(Path(cfg.report.get("tables_dir", "reports/tables")).glob("*.csv")):
        try:
            found[path.stem] = (path, pd.read_csv(path))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not a readable CSV table ({err})") from err
    return dict(sorted(found.items()))


def figure_groups(figures_dir: str | Path, extra_groups: Sequence[str | Path] = ()) -> dict[str, list[Path]]:
    """Figure group -> image files: the groups of ``index.json`` (files in its order), and every other folder
    under ``figures_dir`` holding images (a figure writer added later shows up by itself); known groups in
    the paper's order, then the others by name."""
    figures_dir = Path(figures_dir)
    index = _read_json(figures_dir / "index.json") or {}
    groups = {g: [Path(p) for p in paths if Path(p).is_file()] for g, paths in index.items()}
    listed = {p.resolve() for paths in groups.values() for p in paths}
    folders = sorted(p for p in figures_dir.iterdir() if p.is_dir()) if figures_dir.is_dir() else []
    for folder in folders:
        extra = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.resolve() not in listed)
        if extra:
            groups.setdefault(folder.name, []).extend(extra)
    for folder in map(Path, extra_groups):  # figures other stages write outside figures_dir: one group each
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        if files:
            groups.setdefault(folder.name, []).extend(files)
    order = {g: i for i, g in enumerate(FIGURE_GROUPS)}  # the paper's order, then the others by name
    return {g: groups[g] for g in sorted(groups, key=lambda g: (order.get(g, len(order)), g)) if groups[g]}


def all_figure_groups(cfg) -> dict[str, list[Path]]:
    """The visualize stage's groups and the folders of ``report.figure_folders`` (e.g. the transfer stage's)."""
    return figure_groups(cfg.visualize.out_dir, cfg.report.get("figure_folders") or [])


def provenance(cfg) -> dict[str, str]:
    """Git revision, profile, model, W&B group, data and dataset sizes of this run."""
    from zfnet.tracking import group_name

    prov = {"git revision": _git_revision(), "profile": str(cfg.get("profile")), "model": str(cfg.model.name),
            "W&B group": group_name(cfg), "ImageNet root": str(cfg.data.imagenet_root)}
    stats = _read_json(Path(cfg.prepare.out_dir) / "stats.json")
    for split, s in (stats or {}).items():
        if isinstance(s, dict) and "seen" in s:
            prov[f"ImageNet {split}"] = f"{s['seen']} seen = {s['written']} written + {s['rejected']} rejected"
    overlap = _read_json(Path(cfg.overlap.metrics_path)) if cfg.get("overlap") else None
    if overlap and "imagenet_removed" in overlap:
        removed = "left out of prepare and training" if cfg.overlap.remove else "kept (overlap.remove=false)"
        prov["ImageNet / Caltech overlap"] = (
            f"{overlap['imagenet_removed']} of {overlap['imagenet_train']} ImageNet training images correlate >= "
            f"{overlap['threshold']} with a Caltech image: {removed}" + "".join(
                f"; {name}: {v['overlapping']} of {v['images']} images (at most {v['max_in_one_class']} in one class)"
                for name, v in overlap.items() if isinstance(v, dict) and "overlapping" in v))
    demo = _read_json(Path(cfg.demo_data.out_dir) / "summary.json")
    if demo and str(cfg.data.imagenet_root).startswith(str(cfg.demo_data.out_dir)):
        prov["data"] = "embedded demo data (synthetic, generated by the demo_data stage)"
        for name, sizes in demo.items():
            if isinstance(sizes, dict):
                prov[f"demo {name}"] = ", ".join(f"{k} {v}" for k, v in sizes.items())
    return prov


def rejected_images(cfg) -> list[dict[str, str]]:
    path = Path(cfg.prepare.out_dir) / "rejected.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# --- HTML ----------------------------------------------------------------------------------------------
def _href(target: str | Path, page_dir: Path) -> str:
    return html.escape(quote(Path(os.path.relpath(target, page_dir)).as_posix()))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "group"


def _section(title: str, body: str, anchor: str | None = None) -> str:
    ident = f' id="{html.escape(anchor)}"' if anchor else ""
    return f"<section{ident}><h2>{html.escape(title)}</h2>{body}</section>"


def _frame_html(frame: pd.DataFrame) -> str:
    return f'<div class="wide">{frame.to_html(index=False, na_rep="–", border=0)}</div>'


def _figure(path: Path, page_dir: Path, caption: str, link: str | None = None, cls: str = "") -> str:
    img = f'<img src="{_href(path, page_dir)}" alt="{html.escape(caption)}">'
    if link:
        img = f'<a href="{html.escape(link)}">{img}</a>'
    klass = f' class="{cls}"' if cls else ""
    return f"<figure{klass}>{img}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _page(title: str, body: str, nav: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<nav>{nav}</nav>
{body}
</body></html>
"""


def _group_title(group: str) -> tuple[str, str]:
    return FIGURE_GROUPS.get(group, (group.replace("_", " ").capitalize(), ""))


def write_report(cfg) -> Path:
    """Write ``report.out`` (the index) and one page per figure group under ``pages/`` beside it."""
    out = Path(cfg.report.out)
    root = out.parent
    pages_dir = root / "pages"
    figures_dir = Path(cfg.visualize.out_dir)
    title = str(cfg.report.title)
    found_tables = tables(cfg)
    groups = all_figure_groups(cfg)
    page_names = {group: f"{_slug(group)}.html" for group in groups}

    # one page per figure group
    written = set()
    for group, paths in groups.items():
        heading, about = _group_title(group)
        body = [f'<p class="note">{html.escape(about)}</p>' if about else ""]
        body.append("".join(_figure(p, pages_dir, p.stem) for p in paths))
        boxes = _read_json(figures_dir / "occlusion" / "boxes.json") if group == "occlusion" else None
        if boxes:
            frame = pd.DataFrame(boxes)
            body.append(_section("Where the correct-class probability drops most",
                                 f"<p>Minimum of p(correct class) inside the object's box for {int(frame.inside_box.sum())} of "
                                 f"{len(frame)} images (box from the demo's ground truth, in input coordinates).</p>"
                                 + _frame_html(frame)))
        nav = f'<a href="{_href(out, pages_dir)}">← report</a>' + "".join(
            f'<a href="{html.escape(page_names[g])}">{html.escape(g)}</a>' for g in groups if g != group)
        written.add(write_text(pages_dir / page_names[group], _page(f"{heading}", "".join(body), nav)).name)
    if pages_dir.is_dir():
        for stale in pages_dir.glob("*.html"):
            if stale.name not in written:
                stale.unlink()

    # the index: key figures, tables, provenance
    sections = []
    metrics = train_metrics(cfg)
    if groups:
        keys = "".join(_figure(paths[0], root, f"{_group_title(g)[0]} ({len(paths)} figure{'s' if len(paths) > 1 else ''})",
                               link=_href(pages_dir / page_names[g], root), cls="key") for g, paths in groups.items())
        sections.append(_section("Figures", "<p>The first figure of each group; click for all of them.</p>" + keys, "figures"))
    for stem, (path, frame) in found_tables.items():
        body = _frame_html(frame)
        if stem == "table2_imagenet" and metrics:
            body += (f"<p>{metrics['epochs']} epochs, {metrics['num_classes']} classes, "
                     f"{metrics['train_seconds']} s of training.</p>")
        if path is not None:
            links = [path] + [p for p in [path.with_suffix(".md")] if p.is_file()]
            body += "<p>" + " · ".join(f'<a href="{_href(p, root)}">{html.escape(p.name)}</a>' for p in links) + "</p>"
        sections.append(_section(TABLE_TITLES.get(stem, stem.replace("_", " ")), body, stem))

    prov = provenance(cfg)
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in prov.items())
    rejected = rejected_images(cfg)
    rej = (f"<p>{len(rejected)} rejected image(s), each with its reason:</p>" + _frame_html(pd.DataFrame(rejected))
           if rejected else "<p>No image was rejected.</p>")
    params = html.escape(OmegaConf.to_yaml(cfg, resolve=True))
    sections.append(_section("Provenance", f"<table>{rows}</table><h3>Rejected images</h3>{rej}"
                             f"<details><summary>params (the composed config of this run)</summary><pre>{params}</pre></details>",
                             "provenance"))

    nav = "".join(f'<a href="#{html.escape(a)}">{html.escape(t)}</a>' for a, t in
                  [("figures", "figures")] * bool(groups) + [(s, s.split("_")[0]) for s in found_tables] + [("provenance", "provenance")])
    intro = ("<p>Zeiler &amp; Fergus, <em>Visualizing and Understanding Convolutional Networks</em>, ECCV 2014: "
             "every figure and table this pipeline run produced, the paper's numbers beside ours.</p>")
    return write_text(out, _page(title, intro + "".join(sections), nav))


# --- W&B summary run -------------------------------------------------------------------------------
def log_summary(tracker, cfg, report: Path | None = None) -> dict[str, list[str]]:
    """Log every table (``tables/<stem>``, a ``wandb.Table``), the key figures (``figures/<group>/<name>``,
    the first ``report.wandb_figures_per_group`` of each group), the training metrics (run summary) and the
    report itself (artifact) to ``tracker``'s run. Returns the keys logged, by kind."""
    logged: dict[str, list[str]] = {"tables": [], "figures": []}
    for stem, (_path, frame) in tables(cfg).items():
        tracker.table(f"tables/{stem}", frame)
        logged["tables"].append(f"tables/{stem}")
    per_group = int(cfg.report.get("wandb_figures_per_group", 4))
    for group, paths in all_figure_groups(cfg).items():
        for p in paths[:per_group]:
            if p.suffix.lower() == ".svg":
                continue  # wandb.Image reads raster images
            key = f"figures/{group}/{p.stem}"
            tracker.image(key, p, caption=_group_title(group)[0])
            logged["figures"].append(key)
    metrics = train_metrics(cfg)
    if metrics:
        tracker.summary({f"train/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
    if report is not None:  # the whole folder: the pages' relative links hold inside the artifact too
        tracker.artifact("report", "report", [Path(report).parent])
    return logged
