"""DVC stage `finetune_table`: see ``run``."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from zfnet.schema import validate
from zfnet.tracking import start_run

#: the figures folder's notes (:mod:`zfnet.figures.notes`): title, what it shows, place in the report
NOTES = ("Fine-tuning for a new task (Dogs vs. Cats)",
         "The trained network's last layer replaced by a 2-way one and trained under each strategy (last "
         "layer, fully connected layers, whole network, from scratch): validation accuracy against training "
         "images per class, training curves, top-9 projections of a few layer-5 maps before and after "
         "fine-tuning (which features it kept), occlusion maps of one image per class.", 120)


def run(cfg: DictConfig) -> Path | None:
    """Gather metrics/finetune/<strategy>.json into reports/tables/finetune.{csv,md} and the learning curves
    (reports/finetune/learning_curves.png); W&B: the table and the figure."""
    cfg = validate(cfg)  # a wrong type or range fails here, naming the key, before any work
    from zfnet.figures.finetune import plot_learning_curves
    from zfnet.figures.notes import write_notes
    from zfnet.finetune.table import collect, finetune_table
    from zfnet.tables import write_table

    f = cfg.finetune
    metrics = collect(f.metrics_dir, list(f.strategies))
    if not metrics:
        raise FileNotFoundError(f"{f.metrics_dir}: no <strategy>.json for any of {list(f.strategies)}; run the "
                                "finetune stage first (`dvc repro finetune` or python pipelines/finetune.py)")
    frame = finetune_table(metrics)
    csv_path, _ = write_table(frame, f.table)
    curves = frame.rename(columns={"train images / class": "n_train", "val accuracy (%)": "accuracy"})
    figure = plot_learning_curves(curves, Path(f.out_dir) / "learning_curves.png")
    write_notes(f.out_dir, *NOTES)  # the folder's per-strategy figures are the finetune stages'
    with start_run(cfg, job_type="finetune", name="finetune/table") as tracker:
        tracker.table("finetune", frame)
        tracker.image("finetune/learning_curves", Path(figure))
    return csv_path
