"""The static HTML report (``reports/index.html``): every figure and table the pipeline produced, ours
beside the paper's, with the run's provenance (git revision, params, dataset sizes, rejected images).
Opens from disk; links are relative to the report's folder.
"""

from __future__ import annotations

import html
import json
import os
import subprocess
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from zfnet.io import atomic_path, write_text

# Table 2 (paper.md): ImageNet 2012 val error (%) of one convnet
PAPER_TABLE2 = {
    "zfnet": {"model": "1 convnet as per Fig. 3", "val_top1": 38.4, "val_top5": 16.5},
    "alexnet": {"model": "Replication of Krizhevsky, 1 convnet", "val_top1": 40.5, "val_top5": 18.1},
}


def plot_history(history_csv: str | Path, out: str | Path) -> Path:
    """Training curves (loss; top-1 error train / val / val 10-crop) from the per-epoch history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.read_csv(history_csv)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for col, label in (("train_loss_epoch", "train"), ("val_loss", "val (centre crop)")):
        if col in df:
            ax1.plot(df.epoch, df[col], marker="o", label=label)
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    for col, label in (("train_top1_error", "train"), ("val_top1_error", "val centre crop"), ("val_10crop_top1_error", "val 10-crop")):
        if col in df:
            ax2.plot(df.epoch, 100 * df[col], marker="o", label=label)
    ax2.set(xlabel="epoch", ylabel="top-1 error (%)", title="top-1 error")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return out


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


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>"


def write_report(cfg) -> Path:
    out = Path(cfg.report.out)
    root = out.parent
    figures_dir = Path(cfg.visualize.out_dir)
    sections = []

    metrics = _read_json(Path("metrics/train.json"))
    if metrics:
        sections.append(_section("Classification error (Table 2)", table2(metrics, cfg.model.name).to_html(index=False, na_rep="–")
                                 + f"<p>{metrics['epochs']} epochs, {metrics['num_classes']} classes, "
                                 f"{metrics['train_seconds']} s of training.</p>"))

    titles = {"table1_correspondence": "Table 1: correspondence", "table3_ablation": "Table 3: architecture ablations",
              "table4_caltech101": "Table 4: Caltech-101", "table5_caltech256": "Table 5: Caltech-256",
              "table6_voc2012": "Table 6: PASCAL VOC 2012", "table7_layers": "Table 7: features of one layer"}
    for table in sorted(Path(cfg.report.get("tables_dir", "reports/tables")).glob("*.csv")):
        frame = pd.read_csv(table)
        link = f'<p><a href="{html.escape(os.path.relpath(table, root))}">{html.escape(table.name)}</a></p>'
        sections.append(_section(titles.get(table.stem, table.stem), frame.to_html(index=False, na_rep="–") + link))

    index = _read_json(figures_dir / "index.json") or {}
    for group, paths in index.items():
        imgs = "".join(
            f'<figure><img src="{html.escape(os.path.relpath(p, root))}" alt="{html.escape(Path(p).stem)}">'
            f"<figcaption>{html.escape(Path(p).stem)}</figcaption></figure>" for p in paths if Path(p).is_file())
        sections.append(_section(f"Figures: {group}", imgs))

    boxes = _read_json(figures_dir / "occlusion" / "boxes.json")
    if boxes:
        frame = pd.DataFrame(boxes)
        inside = int(frame.inside_box.sum())
        sections.append(_section("Occlusion: where the correct-class probability drops most",
                                 f"<p>Minimum of p(correct class) inside the object's box for {inside} of {len(frame)} images "
                                 "(box from the demo's ground truth, in input coordinates).</p>" + frame.to_html(index=False)))

    prov = {"git revision": _git_revision(), "profile": cfg.get("profile"), "model": cfg.model.name}
    stats = _read_json(Path(cfg.prepare.out_dir) / "stats.json")
    if stats:
        for split, s in stats.items():
            prov[f"ImageNet {split}"] = f"{s['seen']} seen = {s['written']} written + {s['rejected']} rejected"
    demo = _read_json(Path(cfg.demo_data.out_dir) / "summary.json")
    if demo and str(cfg.data.imagenet_root).startswith(str(cfg.demo_data.out_dir)):
        prov["data"] = "embedded demo data (synthetic, generated by the demo_data stage)"
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in prov.items())
    params = html.escape(OmegaConf.to_yaml(cfg, resolve=True))
    sections.append(_section("Provenance", f"<table>{rows}</table><details><summary>params</summary><pre>{params}</pre></details>"))

    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(cfg.report.title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5rem 0; }} th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
figure {{ display: inline-block; margin: 0.5rem; }} img {{ max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }}
pre {{ background: #f6f6f6; padding: 1rem; overflow: auto; }}
</style></head><body>
<h1>{html.escape(cfg.report.title)}</h1>
<p>Zeiler &amp; Fergus, <em>Visualizing and Understanding Convolutional Networks</em>, ECCV 2014. Paper's numbers beside ours.</p>
{''.join(sections)}
</body></html>
"""
    return write_text(out, page)
