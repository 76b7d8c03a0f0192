"""What the report shows, gathered from the pipeline's outputs: the tables (every CSV in
``report.tables_dir``, Table 2 from the training metrics), the figure groups with their notes (each group's
``notes.json``, :mod:`zfnet.figures.notes`), the run's provenance, the rejected images and the data banner's
facts. Plain data: :mod:`zfnet.report.render` turns it into HTML, :mod:`zfnet.report.wandb_summary` into a
W&B run."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from zfnet.figures.notes import read_notes
from zfnet.paper import TABLE2
from zfnet.provenance import git_state

TABLE_TITLES = {"table1_correspondence": "Table 1: correspondence", "table2_imagenet": "Table 2: ImageNet 2012 classification error",
                "table3_ablation": "Table 3: architecture ablations", "table4_caltech101": "Table 4: Caltech-101",
                "table5_caltech256": "Table 5: Caltech-256", "table6_voc2012": "Table 6: PASCAL VOC 2012",
                "table7_layers": "Table 7: features of one layer", "claims": "The paper's claims, tested",
                "dissection": "Network dissection: detectors per layer",
                "dissection_top_units": "Network dissection: each layer's top units",
                "finetune": "Fine-tuning (Dogs vs. Cats) beside Fig. 9's pretrained − scratch gap"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg")
#: a table's note (what a reader must know to compare it with the paper's) beside its CSV: ``<stem>.notes.json``
TABLE_NOTES_SUFFIX = ".notes.json"


def read_json(path: Path) -> dict | None:
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


def train_metrics(cfg) -> dict | None:
    return read_json(Path(cfg.train.get("metrics_path") or "metrics/train.json"))


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


def table_note(csv_path: Path | None) -> str:
    """The note its writer left beside a table (``<stem>.notes.json``: ``{"description": ...}``), else ''."""
    if csv_path is None:
        return ""
    path = csv_path.with_suffix(TABLE_NOTES_SUFFIX)
    try:
        note = read_json(path) or {}
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a table's note (JSON: {{\"description\": text}}): {err}") from err
    return str(note.get("description") or "")


def group_notes(figures_dir: str | Path, extra_groups: Sequence[str | Path] = ()) -> dict[str, dict]:
    """Figure group -> its notes (``{}``: none) and ``folder``: the group's folder under ``figures_dir`` or among
    ``extra_groups`` (a folder of either holding notes, when both have the group's name)."""
    figures_dir = Path(figures_dir)
    folders = sorted(p for p in figures_dir.iterdir() if p.is_dir()) if figures_dir.is_dir() else []
    found: dict[str, dict] = {}
    for folder in [*folders, *(Path(f) for f in extra_groups if Path(f).is_dir())]:
        if folder.name not in found or not found[folder.name]["notes"]:
            found[folder.name] = {"notes": read_notes(folder), "folder": folder}
    return found


def figure_groups(figures_dir: str | Path, extra_groups: Sequence[str | Path] = ()) -> dict[str, list[Path]]:
    """Figure group -> image files: the groups the visualize parts list (``zfnet.figures.index``: files in
    their order), and every other folder under ``figures_dir`` holding images (a figure writer added later
    shows up by itself); in their notes' ``order``, then the groups without one by name."""
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
    notes = group_notes(figures_dir, extra_groups)
    order = {g: notes[g]["notes"].get("order") if g in notes else None for g in groups}
    last = float("inf")
    return {g: groups[g] for g in sorted(groups, key=lambda g: (last if order[g] is None else order[g], g)) if groups[g]}


def all_figure_groups(cfg) -> dict[str, list[Path]]:
    """The visualize stage's groups and the folders of ``report.figure_folders`` (e.g. the transfer stage's)."""
    return figure_groups(cfg.visualize.out_dir, cfg.report.get("figure_folders") or [])


def all_group_notes(cfg, groups: Sequence[str]) -> dict[str, dict]:
    """Each group's notes (:mod:`zfnet.figures.notes`); a group without gets its folder's name as title."""
    where = group_notes(cfg.visualize.out_dir, cfg.report.get("figure_folders") or [])
    notes = {}
    for g in groups:
        found = where.get(g) or {"notes": {}, "folder": None}
        notes[g] = {"description": "", **found["notes"], "folder": found["folder"],
                    "title": found["notes"].get("title") or g.replace("_", " ").capitalize()}
    return notes


def provenance(cfg) -> dict[str, str]:
    """Git revision, profile, model, W&B group, data and dataset sizes of this run."""
    from zfnet.reduced_run import datasets
    from zfnet.tracking import group_name

    prov = {**git_state(), "profile": str(cfg.get("profile")), "model": str(cfg.model.name),
            "W&B group": group_name(cfg), "ImageNet root": str(cfg.data.imagenet_root)}
    stats = read_json(Path(cfg.prepare.out_dir) / "stats.json")
    for split, s in (stats or {}).items():
        if isinstance(s, dict) and "seen" in s:
            prov[f"ImageNet {split}"] = f"{s['seen']} seen = {s['written']} written + {s['rejected']} rejected"
    overlap = read_json(Path(cfg.overlap.metrics_path)) if cfg.get("overlap") else None
    if overlap and "imagenet_removed" in overlap:
        removed = "left out of prepare and training" if cfg.overlap.remove else "kept (overlap.remove=false)"
        prov["ImageNet / Caltech overlap"] = (
            f"{overlap['imagenet_removed']} of {overlap['imagenet_train']} ImageNet training images correlate >= "
            f"{overlap['threshold']} with a Caltech image: {removed}" + "".join(
                f"; {name}: {v['overlapping']} of {v['images']} images (at most {v['max_in_one_class']} in one class)"
                for name, v in overlap.items() if isinstance(v, dict) and "overlapping" in v))
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


def data_facts(cfg) -> dict:
    """The banner's facts: which data the numbers come from (``what``, ``about``: the ImageNet actually prepared
    and every dataset root, synthetic or not) and, for a reduced run, every departure from the paper's setting
    (``changes``: ``[{"what", "ours", "paper", "key"}]``, counts with thousands separators)."""
    from zfnet.reduced_run import datasets, departures, on_demo_data

    prepared = Path(cfg.prepare.out_dir)
    classes, stats = read_json(prepared / "classes.json"), read_json(prepared / "stats.json") or {}
    size = []
    if classes:
        size.append(f"{len(classes.get('wnids', []))} classes")
    if "train" in stats and "val" in stats:
        size.append(f"{stats['train']['written']} train + {stats['val']['written']} val images")
    roots = "; ".join(f"{d['what']}: {d['path']}" + (" (synthetic)" if d["synthetic"] else "") for d in datasets(cfg))

    def shown(value) -> str:  # counts with thousands separators: 1,281,167
        return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)

    return {"what": ("Synthetic demo data" if on_demo_data(cfg) else "Data") + f" (profile {cfg.get('profile')})",
            "about": (f"ImageNet as prepared: {', '.join(size)}. " if size else "") + f"Roots: {roots}.",
            "changes": [{"what": str(c["what"]), "ours": shown(c["ours"]), "paper": shown(c["paper"]), "key": c["key"]}
                        for c in departures(cfg, prepared)]}
