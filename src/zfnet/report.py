"""The static HTML report (``reports/index.html`` + ``reports/pages/*.html``): every figure and table the
pipeline produced, ours beside the paper's, with the run's provenance (git revision, params, dataset sizes,
rejected images), and the W&B summary run that mirrors it.

Opens from disk without a server: every link and image is relative to the page that holds it. The index
holds the tables (every CSV in ``report.tables_dir``, so tables of stages added later appear without code
changes), the key figures (the first of each group, linking to the group's page) and the provenance; each
figure group (a folder under ``visualize.out_dir``, listed in a visualize part's index or not) gets a page.
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
from zfnet.paper import TABLE2, TABLE7_SIZES

TABLE_TITLES = {"table1_correspondence": "Table 1: correspondence", "table2_imagenet": "Table 2: ImageNet 2012 classification error",
                "table3_ablation": "Table 3: architecture ablations", "table4_caltech101": "Table 4: Caltech-101",
                "table5_caltech256": "Table 5: Caltech-256", "table6_voc2012": "Table 6: PASCAL VOC 2012",
                "table7_layers": "Table 7: features of one layer", "claims": "The paper's claims, tested",
                "dissection": "Network dissection: detectors per layer",
                "dissection_top_units": "Network dissection: each layer's top units",
                "finetune": "Fine-tuning (Dogs vs. Cats) beside Fig. 9's pretrained − scratch gap"}
# readable headers for columns a table's CSV keeps machine-readable
COLUMN_LABELS = {"table1_correspondence": {"occlusion": "occluded part", "size": "square (px)", "repeats": "random draws"}}
VERDICTS = {"holds": "holds", "does not hold": "fails", "not measurable": "unmeasurable"}  # verdict -> CSS class
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
    "synthesis": ("Network-centric synthesis: class models, Fig. 2's maps, inversions",
                  "Images synthesized from the network alone (not from the paper; Hadji & Wildes' survey of ConvNet understanding, §4.1.1). Class "
                  "models: the image that maximizes each class's pre-softmax score from noise (Simonyan et al.). "
                  "Per layer, each map of Fig. 2 in one row: its top activations projected and their image "
                  "patches (dataset-centric), then the image synthesized to maximize its mean activation "
                  "(network-centric). Inversions: validation images reconstructed from each layer's features "
                  "(Mahendran & Vedaldi), with the normalized feature error reached."),
    "occlusion": ("Fig. 7: occlusion sensitivity",
                  "A grey square slid over the input: the strongest layer-5 map, the probability of the correct "
                  "class and the most probable class as functions of the square's position."),
    "invariance": ("Fig. 5: invariance to translation, scale and rotation",
                   "Euclidean distance between the feature vectors of the original and the transformed image at "
                   "layer 1 and layer 7, and the probability of the true class, per image."),
    "transfer": ("Fig. 9 / Tables 4–5: transfer to Caltech",
                 "Mean per-class accuracy against the number of training images per class: a softmax on the "
                 "ImageNet model's layer 7 vs the same network trained from scratch on the target images."),
    "dissection": ("Network dissection (Bau et al. 2017)",
                   "Each unit's best concept on the Broden-layout probe set: its top-0.5% activation region "
                   "against the concept masks (IoU); a detector when IoU > 0.04. Bars: unique concepts detected per "
                   "category and layer; then each layer's top units on their top images."),
    "correspondence": ("Table 1 / Fig. 8: correspondence",
                       "Δ, the consistency of the change caused by masking the same part in different images "
                       "(lower = more consistent), ours beside the paper's."),
    "finetune": ("Fine-tuning for a new task (Dogs vs. Cats)",
                 "The trained network's last layer replaced by a 2-way one and trained under each strategy (last "
                 "layer, fully connected layers, whole network, from scratch): validation accuracy against training "
                 "images per class, training curves, top-9 projections of a few layer-5 maps before and after "
                 "fine-tuning (which features it kept), occlusion maps of one image per class."),
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg")
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #222; }
nav { margin: 1rem 0; padding: 0.5rem 0; border-bottom: 1px solid #ddd; } nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
table.many { font-size: 0.8rem; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
thead th { vertical-align: bottom; white-space: normal; overflow-wrap: break-word; max-width: 11em; }
.banner { background: #fff4d6; border: 1px solid #e0c060; padding: 0.6rem 1rem; margin: 0.5rem 0 1rem; }
.verdict { font-weight: 600; padding: 1px 6px; border-radius: 3px; white-space: nowrap; }
.holds { background: #d8f0d8; color: #145214; } .fails { background: #f8d7d7; color: #7a1010; }
.unmeasurable { background: #e8e8e8; color: #444; }
figure { display: inline-block; margin: 0.5rem; vertical-align: top; }
figure.key img { max-height: 220px; }
img { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
.wide { overflow-x: auto; } pre { background: #f6f6f6; padding: 1rem; overflow: auto; } .note { color: #555; }
"""


def _git(args: Sequence[str], cwd) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _dvc_outputs(top: Path) -> set[str]:
    """The paths the pipeline's stages write (``outs`` of ``dvc.lock``), relative to the repository root."""
    import yaml

    try:
        lock = yaml.safe_load((top / "dvc.lock").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return set()
    return {str(Path(o["path"]).as_posix()).rstrip("/") for stage in (lock.get("stages") or {}).values()
            if isinstance(stage, dict) for o in stage.get("outs") or [] if isinstance(o, dict) and o.get("path")}


def _flat(tree, prefix: str = "") -> dict[str, object]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}.{key}" if prefix else str(key)).items()}


def git_state(cwd: str | Path | None = None) -> dict[str, str]:
    """``git revision``: the short commit, ``+dirty`` (naming the files) only when tracked files other than
    what the pipeline writes differ from it; the pipeline's own writes are not source changes: ``dvc.lock``,
    the ``.gitignore`` files DVC keeps, the stages' outputs, and ``params.yaml``, which ``dvc exp run -S``
    rewrites: when it differs from the commit, ``experiment params`` names the changed keys."""
    import yaml

    rev = (_git(["rev-parse", "--short", "HEAD"], cwd) or "").strip()
    top = (_git(["rev-parse", "--show-toplevel"], cwd) or "").strip()
    if not rev or not top:
        return {"git revision": "unknown (not a git checkout with a commit)"}
    entries = (_git(["status", "--porcelain=v1", "-z", "--untracked-files=no"], cwd) or "").split("\0")
    changed, skip = [], False
    for entry in entries:
        if skip or len(entry) < 4:
            skip = False
            continue
        changed.append(entry[3:])
        skip = "R" in entry[:2] or "C" in entry[:2]  # a rename's or copy's next entry is its old path
    outs = _dvc_outputs(Path(top))

    def written_by_pipeline(path: str) -> bool:
        return (path == "dvc.lock" or Path(path).name == ".gitignore"
                or any(path == o or path.startswith(o + "/") for o in outs))

    dirty = [p for p in changed if p != "params.yaml" and not written_by_pipeline(p)]
    state = {"git revision": rev + (f"+dirty ({', '.join(dirty[:5])}{', …' if len(dirty) > 5 else ''} differ from "
                                    f"the commit)" if dirty else "")}
    if "params.yaml" in changed:
        try:
            before = _flat(yaml.safe_load(_git(["show", "HEAD:params.yaml"], top) or "") or {})
            now = _flat(yaml.safe_load((Path(top) / "params.yaml").read_text()) or {})
            keys = sorted(k for k in before.keys() | now.keys() if before.get(k, "<unset>") != now.get(k, "<unset>"))
            what = ", ".join(f"{k}={now.get(k, '<unset>')}" for k in keys[:12]) + (", …" if len(keys) > 12 else "")
        except (OSError, yaml.YAMLError):
            what = ""
        state["experiment params"] = (f"params.yaml differs from {rev} (an experiment, e.g. dvc exp run -S)"
                                      + (f": {what}" if what else ""))
    return state


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def table2(metrics: dict, model_name: str) -> pd.DataFrame:
    paper = TABLE2.get(model_name, {})
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
    """Figure group -> image files: the groups the visualize parts list (``zfnet.figures.index``: files in
    their order), and every other folder under ``figures_dir`` holding images (a figure writer added later
    shows up by itself); known groups in the paper's order, then the others by name."""
    from zfnet.figures import index as figure_index

    figures_dir = Path(figures_dir)
    index = figure_index.read(figures_dir)
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

    prov = {**git_state(), "profile": str(cfg.get("profile")), "model": str(cfg.model.name),
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
    from zfnet.reduced_run import datasets

    for d in datasets(cfg):
        prov[f"{d['what']} root" if d["key"] != "data.imagenet_root" else "ImageNet root"] = (
            d["path"] + (" (synthetic demo data, generated by the demo_data stage)" if d["synthetic"] else ""))
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


def _label(column: str, ours_and_paper: bool) -> str:
    """A snake_case column as a header: ``paper_delta_layer5`` -> "Δ layer 5 (paper)"."""
    paper = column.startswith("paper_")
    text = re.sub(r"layer(\d+)", r"layer \1", column[len("paper_"):] if paper else column)
    text = re.sub(r"\bdelta\b", "Δ", text.replace("_", " "))
    return f"{text} ({'paper' if paper else 'ours'})" if ours_and_paper else text


def display_frame(frame: pd.DataFrame, stem: str = "") -> pd.DataFrame:
    """A table as a reader sees it: ``<x>_mean`` / ``<x>_std`` pairs as one "mean ± std" column, snake_case
    columns as words ("Δ layer 5 (ours)" beside "Δ layer 5 (paper)"), a table's own labels (COLUMN_LABELS).
    The CSV keeps its machine-readable columns (W&B logs those)."""
    pairs = [c[: -len("_mean")] for c in frame.columns if c.endswith("_mean") and f"{c[: -len('_mean')]}_std" in frame]
    out = pd.DataFrame(index=frame.index)
    labels = COLUMN_LABELS.get(stem, {})
    for col in frame.columns:
        base = col[: -len("_mean")] if col.endswith("_mean") else col[: -len("_std")] if col.endswith("_std") else None
        if base in pairs and col.endswith("_std"):
            continue
        key = base if base in pairs else col
        both = f"paper_{key}" in frame or f"paper_{key}_mean" in frame or key.startswith("paper_")
        name = labels.get(key) or (_label(key, both) if "_" in key or both else key)
        if base in pairs:
            out[name] = [f"{m:.3f} ± {d:.3f}" if pd.notna(m) else "–" for m, d in zip(frame[col], frame[f"{base}_std"])]
        else:
            out[name] = frame[col]
    order = []  # ours beside the paper's
    for name in out.columns:
        if name not in order:
            order.append(name)
            if name.endswith(" (ours)") and (paper := name[: -len("(ours)")] + "(paper)") in out:
                order.append(paper)
    return out[order]


def _frame_html(frame: pd.DataFrame, stem: str = "") -> str:
    frame = display_frame(frame, stem)
    classes = ["many"] if len(frame.columns) > 6 else []
    return f'<div class="wide">{frame.to_html(index=False, na_rep="–", border=0, classes=classes)}</div>'


def _claims_html(frame: pd.DataFrame, targets: Mapping[str, tuple[str, str]]) -> str:
    """The claims: the findings' table (ours beside the untrained network's ``control``), then the checks'
    (rows whose ``kind`` is ``check``: they test the code, not the paper), each as ``_claims_rows``."""
    if "kind" not in frame:
        return _claims_rows(frame, targets)
    kind = frame["kind"].astype(str).str.strip().str.lower()
    findings, checks = frame[kind != "check"].drop(columns="kind"), frame[kind == "check"].drop(columns="kind")
    out = ("<p>Each finding beside the same statistic on the untrained network (its initial weights) or what "
           "stands in for it; it holds only when ours passes and beats that control by the stated margin.</p>"
           + _claims_rows(findings, targets))
    if len(checks):
        out += "<h3>Checks (they test the code, not the paper)</h3>" + _claims_rows(checks.drop(columns="control", errors="ignore"), targets)
    return out


def _claims_rows(frame: pd.DataFrame, targets: Mapping[str, tuple[str, str]]) -> str:
    """A claims table: verdict coloured, ``figure`` (a figure group or a table's stem) linking to the group's
    page or the table's anchor (``targets``: name -> (href, title)); a name with neither stays text."""
    cols = [c for c in ("claim", "statistic", "ours", "control", "paper", "verdict", "reason", "figure") if c in frame]
    cols += [c for c in frame.columns if c not in cols]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    rows = []
    for _, r in frame.iterrows():
        cells = []
        for c in cols:
            value = "–" if pd.isna(r[c]) else str(r[c])
            cell = html.escape(value)
            if c == "verdict":
                cell = f'<span class="verdict {VERDICTS.get(value.strip().lower(), "unmeasurable")}">{cell}</span>'
            elif c == "figure" and value.strip() in targets:
                href, title = targets[value.strip()]
                cell = f'<a href="{html.escape(href)}">{html.escape(title)}</a>'
            cells.append(f"<td>{cell}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def data_banner(cfg) -> str:
    """The box on top of every page: which data the numbers come from (every dataset root, synthetic or not, and
    the ImageNet actually prepared), and, for a reduced run, every departure from the paper's setting."""
    from zfnet.reduced_run import datasets, departures, on_demo_data

    profile = str(cfg.get("profile"))
    prepared = Path(cfg.prepare.out_dir)
    classes, stats = _read_json(prepared / "classes.json"), _read_json(prepared / "stats.json") or {}
    size = []
    if classes:
        size.append(f"{len(classes.get('wnids', []))} classes")
    if "train" in stats and "val" in stats:
        size.append(f"{stats['train']['written']} train + {stats['val']['written']} val images")
    what = ("Synthetic demo data" if on_demo_data(cfg) else "Data") + f" (profile {profile})"
    roots = "; ".join(f"{d['what']}: {d['path']}" + (" (synthetic)" if d["synthetic"] else "") for d in datasets(cfg))
    text = f"<p><strong>{html.escape(what)}</strong>: " + html.escape(
        (f"ImageNet as prepared: {', '.join(size)}. " if size else "") + f"Roots: {roots}.") + "</p>"
    changes = departures(cfg, prepared)
    if changes:
        def shown(value) -> str:  # counts with thousands separators: 1,281,167
            return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)

        items = "".join(f"<li>{html.escape(str(c['what']))}: <strong>{html.escape(shown(c['ours']))}</strong> "
                        f"(paper: {html.escape(shown(c['paper']))}; <code>{html.escape(c['key'])}</code>)</li>"
                        for c in changes)
        text += (f'<p class="reduced"><strong>Reduced run</strong>: {len(changes)} departure'
                 f'{"s" if len(changes) != 1 else ""} from the paper\'s setting. The numbers below check the pipeline, '
                 f"not the paper's results: the paper's are beside ours for their layout, not for comparison.</p>"
                 f"<ul class=\"reduced\">{items}</ul>")
    else:
        text += "<p>The paper's setting at full scale: no departure from it.</p>"
    return f'<div class="banner">{text}</div>'


def table_note(stem: str, cfg) -> str:
    """What a reader must know to compare a table with the paper's (e.g. Table 7's training sizes)."""
    t = cfg.get("transfer")
    if stem == "table7_layers" and t is not None and t.get("table7") is not None:
        ours = {name: int(t.table7[name]) for name in TABLE7_SIZES if t.table7.get(name) is not None}
        text = "Training images per class: ours " + ", ".join(f"{n} ({name})" for name, n in ours.items()) + \
            "; the paper's " + ", ".join(f"{n} ({name})" for name, n in TABLE7_SIZES.items()) + "."
        if any(ours.get(k) != v for k, v in TABLE7_SIZES.items()):
            text += " The sizes differ: accuracies at other training sizes are not directly comparable."
        return f'<p class="note">{html.escape(text)}</p>'
    return ""


def occlusion_text(boxes) -> str:
    """The occlusion page's sentence on ``boxes.json``: minimum inside the box, against chance."""
    if isinstance(boxes, list):  # the format before the chance statistic
        boxes = {"images": boxes, "summary": {}}
    s = boxes.get("summary") or {}
    if not s.get("out_of"):
        return ""
    p = s.get("p_value")
    verdict = ("" if p is None else " — more often than chance" if p < 0.05 else
               " — not distinguishable from chance at these numbers")
    text = (f"Minimum of p(true class) inside the object's box for {s['inside']} of {s['out_of']} {s['counted']} "
            f"images; a random position would fall inside with probability {s['mean_chance']:.2f} on average "
            f"(expected {s['expected_inside']:.1f} of {s['out_of']}; p = {p:.2g}, one-sided, Poisson-binomial){verdict}. "
            f"Box from the demo's ground truth, in input coordinates.")
    drops = [r["unoccluded_prob"] - r["min_prob"] for r in boxes.get("images") or []
             if "unoccluded_prob" in r and "min_prob" in r]
    if drops and max(drops) < 0.01:
        text += (f" The square lowers p(true class) by at most {max(drops):.2g}: where the minimum falls says "
                 f"little with a model this insensitive.")
    if s.get("note"):
        text += f" Images: {s['note']}."
    return f"<p>{html.escape(text)}</p>"


def _figure(path: Path, page_dir: Path, caption: str, link: str | None = None, cls: str = "") -> str:
    img = f'<img src="{_href(path, page_dir)}" alt="{html.escape(caption)}">'
    if link:
        img = f'<a href="{html.escape(link)}">{img}</a>'
    klass = f' class="{cls}"' if cls else ""
    return f"<figure{klass}>{img}<figcaption>{html.escape(caption)}</figcaption></figure>"


def dissection_links(folder: Path, figures_dir: Path, page_dir: Path) -> str:
    """The dissect stage's top units (``top_units.json``), each linked to its row of Fig. 2 where the
    visualize stage shows that map (``deconv/index.json``: the maps of each layer, in row order)."""
    top = (_read_json(folder / "top_units.json") or {}).get("units") or []
    fig2 = _read_json(figures_dir / "deconv" / "index.json") or {}
    rows = []
    for u in top:
        channels = [m.get("channel") for m in (fig2.get(u["layer"]) or {}).get("maps", [])]
        png = figures_dir / "deconv" / (fig2.get(u["layer"]) or {}).get("png", f"{u['layer']}.png")
        link = (f'<a href="{_href(png, page_dir)}">Fig. 2, {html.escape(u["layer"])} row {channels.index(u["unit"]) + 1}</a>'
                if u["unit"] in channels else "not among Fig. 2's maps")
        rows.append(f"<tr><td>{html.escape(u['layer'])}</td><td>{u['unit']}</td><td>{html.escape(u['label'] or '–')}</td>"
                    f"<td>{html.escape(u['category'] or '')}</td><td>{u['iou']:.3f}</td><td>{link}</td></tr>")
    if not rows:
        return ""
    return _section("Top units and their Fig. 2 rows", "<table><tr><th>layer</th><th>unit</th><th>concept</th>"
                    "<th>category</th><th>IoU</th><th>Fig. 2</th></tr>" + "".join(rows) + "</table>")


def _page(title: str, body: str, nav: str, banner: str = "") -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
{banner}
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
    banner = data_banner(cfg)

    # one page per figure group
    written = set()
    for group, paths in groups.items():
        heading, about = _group_title(group)
        body = [f'<p class="note">{html.escape(about)}</p>' if about else ""]
        stems = [p.stem for p in paths]  # names shared in a group (finetune/<strategy>/...): the folders too
        body.append("".join(_figure(p, pages_dir, "/".join([*p.parts[-3:-1], p.stem]) if stems.count(p.stem) > 1
                                    else p.stem) for p in paths))
        boxes = _read_json(figures_dir / "occlusion" / "boxes.json") if group == "occlusion" else None
        if boxes:
            rows = pd.DataFrame(boxes if isinstance(boxes, list) else boxes.get("images") or [])
            first = [c for c in ("image", "label", "predicted", "correct", "inside", "chance", "min_prob",
                                 "unoccluded_prob", "min_prob_centre", "box") if c in rows]
            rows = rows[first + [c for c in rows.columns if c not in first]]
            body.append(_section("Where the true-class probability drops most",
                                 occlusion_text(boxes) + (_frame_html(rows) if len(rows) else "")))
        if group == "dissection":
            body.append(dissection_links(paths[0].parent, figures_dir, pages_dir))
        nav = f'<a href="{_href(out, pages_dir)}">← report</a>' + "".join(
            f'<a href="{html.escape(page_names[g])}">{html.escape(g)}</a>' for g in groups if g != group)
        written.add(write_text(pages_dir / page_names[group], _page(f"{heading}", "".join(body), nav, banner)).name)
    if pages_dir.is_dir():
        for stale in pages_dir.glob("*.html"):
            if stale.name not in written:
                stale.unlink()

    # the index: the claims, key figures, tables, provenance
    sections = []
    metrics = train_metrics(cfg)
    claims = found_tables.pop("claims", None)
    if claims is not None:
        targets = {**{g: (_href(pages_dir / name, root), _group_title(g)[0]) for g, name in page_names.items()},
                   **{stem: (f"#{stem}", TABLE_TITLES.get(stem, stem)) for stem in found_tables}}
        links = [claims[0]] + [p for p in [claims[0].with_suffix(".md")] if p.is_file()]
        sections.append(_section(TABLE_TITLES["claims"], _claims_html(claims[1], targets) + "<p>" + " · ".join(
            f'<a href="{_href(p, root)}">{html.escape(p.name)}</a>' for p in links) + "</p>", "claims"))
    if groups:
        keys = "".join(_figure(paths[0], root, f"{_group_title(g)[0]} ({len(paths)} figure{'s' if len(paths) > 1 else ''})",
                               link=_href(pages_dir / page_names[g], root), cls="key") for g, paths in groups.items())
        sections.append(_section("Figures", "<p>The first figure of each group; click for all of them.</p>" + keys, "figures"))
    for stem, (path, frame) in found_tables.items():
        body = table_note(stem, cfg) + _frame_html(frame, stem)
        if stem == "table2_imagenet" and metrics:
            body += (f"<p>{metrics['epochs']} epochs, {metrics['num_classes']} classes "
                     "(the training time is in the train run's W&B summary and the stage's log).</p>")
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
                  [("claims", "claims")] * (claims is not None) + [("figures", "figures")] * bool(groups)
                  + [(s, s.split("_")[0]) for s in found_tables] + [("provenance", "provenance")])
    intro = ("<p>Zeiler &amp; Fergus, <em>Visualizing and Understanding Convolutional Networks</em>, ECCV 2014: "
             "every figure and table this pipeline run produced, the paper's numbers beside ours.</p>")
    return write_text(out, _page(title, intro + "".join(sections), nav, banner))


# --- W&B summary run -------------------------------------------------------------------------------
def figure_keys(group: str, paths: Sequence[Path]) -> dict[str, Path]:
    """``figures/<group>/<name>`` -> file: each file's path below the folder its group's files share, without
    suffix (unique when files of one group share a name in different sub-folders)."""
    root = Path(os.path.commonpath([str(Path(p).resolve().parent) for p in paths])) if paths else Path()
    return {f"figures/{group}/{Path(p).resolve().relative_to(root).with_suffix('').as_posix()}": Path(p) for p in paths}


def log_summary(tracker, cfg, report: Path | None = None) -> dict[str, list[str]]:
    """Log every table (``tables/<stem>``: Tables 1-7 and the claims, a ``wandb.Table`` with the CSV's
    columns, ours beside the paper's), every figure the report shows (``figures/<group>/<name>``, each
    group of ``all_figure_groups``, so figures of stages added later appear by themselves; raster images,
    SVGs travel in the artifact), the provenance (a table, and the W&B group, git revision and report path
    in the run summary, linking the dashboard back to the report), the reduced run's departures from the paper's
    setting (a ``reduced_run`` table; their count in the summary), the training metrics (run summary) and
    the report folder (artifact). Returns the keys logged, by kind."""
    from zfnet.tracking import group_name

    logged: dict[str, list[str]] = {"tables": [], "figures": []}
    for stem, (_path, frame) in tables(cfg).items():
        tracker.table(f"tables/{stem}", frame)
        logged["tables"].append(f"tables/{stem}")
    images = {}
    for group, paths in all_figure_groups(cfg).items():
        raster = [p for p in paths if p.suffix.lower() != ".svg"]  # wandb.Image reads raster images; the
        for key, p in figure_keys(group, raster).items():            # report artifact holds the SVGs
            images[key] = (p, f"{_group_title(group)[0]}: {p.name}")
    tracker.images(images)  # one step: the dashboard's media panels need no step slider
    logged["figures"] = list(images)
    prov = provenance(cfg)
    tracker.table("provenance", pd.DataFrame({"what": list(prov), "value": [str(v) for v in prov.values()]}))
    from zfnet.reduced_run import departures

    changes = departures(cfg)
    tracker.table("reduced_run", pd.DataFrame(changes or [{"what": "none: the paper's setting at full scale",
                                                           "key": "", "ours": "", "paper": ""}]).astype(str))
    links = {"W&B group": group_name(cfg), "git revision": prov.get("git revision", "unknown"),
             "reduced_run": len(changes)}
    if report is not None:
        links["report"] = str(Path(report).resolve())
    tracker.summary(links)
    metrics = train_metrics(cfg)
    if metrics:
        tracker.summary({f"train/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
    if report is not None:  # the whole folder: the pages' relative links hold inside the artifact too
        tracker.artifact("report", "report", [Path(report).parent], metadata=links)
    return logged
