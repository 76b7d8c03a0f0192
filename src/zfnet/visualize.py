"""The visualize stage: every figure of the paper's analyses from the trained model.

Inputs are what the network sees: validation images prepared by the prepare stage (centre crop of
``data.crop``, minus the mean image). Figures: layer-1 filters (Fig. 6), training curves, top-9 deconvnet
projections (Fig. 2) and their evolution over the saved checkpoints (Fig. 4), occlusion (Fig. 7) and
invariance (Fig. 5); Table 1 (correspondence) on images of a class with part landmarks in its ground
truth (the demo's face-like class), when that ground truth exists.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from zfnet.analysis.filters import save_filters
from zfnet.data import shards
from zfnet.data.crops import crop_offsets
from zfnet.data.preprocess import center_crop
from zfnet.training.checkpoints import load_model


def _centre(x: torch.Tensor, crop: int) -> torch.Tensor:
    top, left = crop_offsets(x.shape[-1], crop)[4]
    return x[..., top : top + crop, left : left + crop]


def network_inputs(prepared_dir: Path, crop: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``n`` validation images as the network sees them: (images, labels, mean crop)."""
    mean = torch.from_numpy(np.load(prepared_dir / "mean.npy")).float().permute(2, 0, 1)
    images, labels = [], []
    for shard in shards.shards(prepared_dir, "val"):
        for _key, image, label in shards.iter_shard(shard):
            images.append(torch.from_numpy(image).permute(2, 0, 1).float())
            labels.append(label)
            if len(images) == n:
                break
        if len(images) == n:
            break
    x = torch.stack(images) - mean
    return _centre(x, crop), torch.tensor(labels), _centre(mean, crop)


def part_images(cfg, mean_full: torch.Tensor) -> tuple[torch.Tensor, dict[str, np.ndarray]] | None:
    """Images of the correspondence class with their landmarks in input coordinates, or None."""
    from zfnet.data.groundtruth import imagenet_table, landmarks

    try:
        table = imagenet_table(cfg.demo_data.out_dir)
    except FileNotFoundError:
        return None
    wanted = cfg.visualize.correspondence
    rows = table[(table.wnid == wanted["class"]) & (table.split == "val") & table.nose_x.notna()].head(int(wanted.images))
    if len(rows) < 2:
        return None
    root = Path(cfg.demo_data.out_dir)
    full = torch.stack([torch.from_numpy(center_crop(root / p, int(cfg.data.resize))).permute(2, 0, 1).float() for p in rows.path])
    images = _centre(full - mean_full, int(cfg.data.crop))
    return images, landmarks(rows, int(cfg.data.resize), int(cfg.data.crop))


def checkpoints_by_epoch(folder: Path) -> dict[str, torch.nn.Module]:
    found = sorted((int(m.group(1)), p) for p in folder.glob("epoch=*.ckpt") if (m := re.match(r"epoch=(\d+)", p.stem)))
    return {f"epoch {e}": load_model(p) for e, p in found}


def run(cfg) -> dict[str, list[str]]:
    from zfnet.analysis import figures_deconv, figures_sensitivity
    from zfnet.report import plot_history

    out = Path(cfg.visualize.out_dir)
    v = cfg.visualize
    model = load_model(v.checkpoint)
    prepared = Path(cfg.prepare.out_dir)
    crop = int(cfg.data.crop)
    classes = json.loads((prepared / "classes.json").read_text())
    figures: dict[str, list[str]] = {"filters": [str(save_filters(model, out / "filters" / f"conv1_{model.arch}.png"))]}
    if Path(cfg.train.history_path).is_file():
        figures["training"] = [str(plot_history(cfg.train.history_path, out / "training" / "curves.png"))]

    images, labels, mean = network_inputs(prepared, crop, int(v.images))
    deconv = figures_deconv.export(model, images, out, maps_per_layer=int(v.deconv.maps_per_layer), k=int(v.deconv.k),
                                   checkpoints=checkpoints_by_epoch(Path(v.checkpoints_dir)) or None, seed=int(cfg.seed),
                                   mean=mean.mean(dim=(1, 2)))  # patches are crops: a per-channel mean to display them
    figures.update(deconv)

    mean_full = torch.from_numpy(np.load(prepared / "mean.npy")).float().permute(2, 0, 1)
    parts = part_images(cfg, mean_full)
    occ = {k: val for k, val in dict(v.occlusion).items() if k != "images" and val is not None}
    sens = figures_sensitivity.export(
        model, images[: max(int(v.occlusion.images), int(v.invariance.images))],
        labels[: max(int(v.occlusion.images), int(v.invariance.images))], out,
        class_names=classes["names"], occlusion={**occ, "max_images": int(v.occlusion.images)},
        invariance={"max_images": int(v.invariance.images)},
        correspondence_images=parts[0] if parts else None, landmarks=parts[1] if parts else None,
        correspondence={k: val for k, val in dict(v.correspondence).items() if k not in ("class", "images") and val is not None},
        tables_dir=v.tables_dir, mean=mean)
    figures.update(sens.figures)
    (out / "index.json").write_text(json.dumps(figures, indent=2))
    return figures
