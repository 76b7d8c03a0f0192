"""The atlas in W&B: one ``wandb.Table`` per layer (``atlas/<layer>``: each unit with its deconvnet grid and
image patches as ``wandb.Image``, its concept, IoU and statistics, so a dashboard reader sorts and filters
the same atlas), in the atlas stage's run and again in the pipeline's summary run (read back from the atlas
folder, :func:`read_layers`), and the atlas folder as an artifact with lineage to the model it describes (the
train stage's model artifact, declared as this run's input)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["COLUMNS", "layer_frame", "log_atlas", "log_tables", "read_layers"]

#: the table's columns after ``unit`` and its two pictures, as the records name them
COLUMNS = ("concept", "iou", "mean", "max", "fire_rate", "selectivity", "top_class", "ablation")


def layer_frame(atlas_dir: str | Path, records: Sequence[Mapping]):
    """One layer's records as a DataFrame: unit, deconv and patches (absolute image paths), then COLUMNS."""
    import pandas as pd

    atlas_dir = Path(atlas_dir)
    rows = [{"unit": r["unit"], **{kind: str(atlas_dir / r["images"][kind]) if r["images"].get(kind) else None
                                   for kind in ("deconv", "patches")},
             **{c: r.get(c) for c in COLUMNS}} for r in records]
    return pd.DataFrame(rows, columns=["unit", "deconv", "patches", *COLUMNS])


def read_layers(atlas_dir: str | Path) -> dict[str, list[dict]]:
    """The records of every layer of the atlas folder (``data/atlas.json`` and the layer files it names);
    empty when there is no atlas there."""
    import json

    atlas_dir = Path(atlas_dir)
    meta = atlas_dir / "data" / "atlas.json"
    if not meta.is_file():
        return {}
    return {layer["name"]: json.loads((atlas_dir / layer["file"]).read_text())["units"]
            for layer in json.loads(meta.read_text())["layers"]}


def log_tables(tracker, atlas_dir: str | Path, layers: Mapping[str, Sequence[Mapping]]) -> list[str]:
    """Log each layer's table (``atlas/<layer>``); returns the keys."""
    for layer, records in layers.items():
        tracker.table(f"atlas/{layer}", layer_frame(atlas_dir, records), images=("deconv", "patches"))
    return [f"atlas/{layer}" for layer in layers]


def log_atlas(tracker, atlas_dir: str | Path, layers: Mapping[str, Sequence[Mapping]], *, artifact: str,
              model_artifact: tuple[str, str, list] | None = None, metadata: Mapping | None = None) -> None:
    """Log each layer's table, then the atlas folder as artifact ``artifact`` (type ``atlas``); with
    ``model_artifact`` ((name, type, files), as the train run logged them), that model is this run's input."""
    if model_artifact is not None:
        tracker.use_artifact(*model_artifact)
    log_tables(tracker, atlas_dir, layers)
    tracker.artifact(artifact, "atlas", [atlas_dir], metadata=metadata)
