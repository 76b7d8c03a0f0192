"""One fine-tuning strategy end to end: data split, learning curve, the fine-tuned model and what changed.

``run(cfg, strategy)``:

1. reads ``<finetune.root>/train`` (labels from the file names, :mod:`zfnet.finetune.labels`) and sets
   ``val_per_class`` images of each class aside (seeded); the rest is the training pool. The learning
   curve trains on the first n of the pool's seeded order per class for each n of ``train_per_class``
   (nested subsets: a larger set holds the smaller ones), every size from the same source weights;
2. per size: the source network (a fresh copy; re-initialized for ``pretrained: false``), its last linear
   layer replaced by a C-way one, the strategy's frozen / trainable layers and learning-rate groups,
   ``epochs`` of SGD (Lightning); validation accuracy after every epoch;
3. on the model trained on the largest size: parameter counts, predictions for the unlabelled ``test1/``
   (Kaggle's submission form ``id,label`` with label = P(second class)) scored against the demo's ground
   truth when given, top-9 projections of a few maps of ``analysis.layer`` before (the source model) and
   after, the overlap of their top-9 image sets (1.0: the map responds to the same images), and occlusion
   maps of one validation image per class.

Every problem with the config or the data is raised before any training.

Memory: no image set is held. One decoding pass finds the readable files; every later pass (training,
validation, test1 predictions, the top-9 searches and the occlusion choice) decodes the files batch by batch
with ``finetune.workers`` processes (:mod:`zfnet.data.image_files`), and the figures decode only the images
they show. The batches and their order are those of the former in-memory path, so the numbers are too.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from zfnet.data.mean_image import read_mean_image
from zfnet.data.image_files import FileStream, ImageFiles, check, side_loader
from zfnet.figures.finetune import plot_training
from zfnet.finetune.labels import Labelled, read_labelled, read_unlabelled
from zfnet.finetune.network import apply_strategy, load_source, parameter_counts, replace_head
from zfnet.finetune.training import FineTuner, _centre, fit, predict
from zfnet.io import write_text

log = logging.getLogger(__name__)


def split(labels: list[int], num_classes: int, val_per_class: int, seed: int) -> tuple[list[int], list[list[int]]]:
    """(validation indices, per class the training pool in its seeded order)."""
    rng = np.random.default_rng(seed)
    val, pool = [], []
    for c in range(num_classes):
        idx = [i for i, y in enumerate(labels) if y == c]
        order = [idx[j] for j in rng.permutation(len(idx))]
        val += order[:val_per_class]
        pool.append(order[val_per_class:])
    return sorted(val), pool


def _mean_std(f, resize: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The source model's input normalization: ``finetune.mean`` (a mean.npy image or 3 values) and ``std``."""
    m = f.mean
    if isinstance(m, str):
        mean = read_mean_image(m, "finetune.mean", (resize,), or_else="give 3 values, or null")
    else:
        values = list(m) if m is not None else [0.0, 0.0, 0.0]
        if len(values) != 3:
            raise ValueError(f"finetune.mean={values!r}: expected a mean.npy path or 3 values")
        mean = torch.tensor(values, dtype=torch.float32).reshape(3, 1, 1)
    std = torch.tensor(list(f.std), dtype=torch.float32).reshape(3, 1, 1) if f.get("std") else None
    return mean, std


def _split_checked(f, labels: list[int], classes: list[str], where: Path
                   ) -> tuple[list[int], list[list[int]], list[int]]:
    """``split`` with the sizes checked: (validation indices, training pool per class, sizes)."""
    counts = {c: labels.count(i) for i, c in enumerate(classes)}
    if any(n <= int(f.val_per_class) for n in counts.values()):
        raise ValueError(f"finetune.val_per_class={int(f.val_per_class)}: {where} has {counts} readable images "
                         "per class")
    val, pool = split(labels, len(classes), int(f.val_per_class), int(f.seed))
    sizes = sorted({int(n) for n in f.train_per_class})
    short = {c: len(p) for c, p in zip(classes, pool) if len(p) < sizes[-1]}
    if short:
        raise ValueError(f"finetune.train_per_class={sizes}: the largest needs {sizes[-1]} training images per class "
                         f"after finetune.val_per_class={int(f.val_per_class)}; {where} has {counts} "
                         f"(left for training: {short})")
    return val, pool, sizes


def _plan(cfg, name: str) -> Labelled:
    """Everything checked before any work: the strategy, the data and the sizes."""
    f = cfg.finetune
    if name not in f.strategies:
        raise KeyError(f"finetune strategy {name!r}: not composed; known: {sorted(f.strategies)}")
    where = Path(f.root) / "train"
    data = read_labelled(where, list(f.classes) if f.get("classes") else None)
    for file, why in data.stray:
        log.warning("%s: left out (%s)", where / file, why)
    _split_checked(f, data.labels, data.classes, where)
    return data


def run(cfg, name: str, progress: bool = True) -> dict:
    """Train strategy ``name`` over the learning curve; write its metrics, history, model and figures."""
    f = cfg.finetune
    data = _plan(cfg, name)
    s = f.strategies[name]
    resize, crop, workers = int(cfg.data.resize), int(cfg.data.crop), int(f.workers)
    mean, std = _mean_std(f, resize)
    source, fresh, arch = load_source(f.get("model"), f.get("weights"), f.checkpoint)
    t0 = time.perf_counter()
    test_paths, test_numbers, _ = read_unlabelled(Path(f.root) / "test1")
    n_labelled = len(data.paths)
    # one decoding pass finds the readable files (the split counts only those); the images themselves are
    # decoded again batch by batch whenever a pass needs them: memory is a few batches, not the image set
    keep, bad = check(data.paths + test_paths, resize, workers, desc="finetune images", progress=progress)
    for path, why in bad:
        log.warning("%s: unreadable, left out (%s)", path, why)
    paths = [data.paths[i] for i in keep if i < n_labelled]
    labels = [data.labels[i] for i in keep if i < n_labelled]
    test_files = [test_paths[i - n_labelled] for i in keep if i >= n_labelled]
    test_ids = [test_numbers[i - n_labelled] for i in keep if i >= n_labelled]
    val_idx, pool, sizes = _split_checked(f, labels, data.classes, Path(f.root) / "train")
    val = ImageFiles([paths[i] for i in val_idx], [labels[i] for i in val_idx], resize)
    threads = cfg.get("trainer", {}).get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    accelerator = str(cfg.trainer.accelerator) if cfg.get("trainer") else "cpu"

    records, history = [], []
    module = None
    for n in sizes:
        idx = sorted(i for p in pool for i in p[:n])
        train = ImageFiles([paths[i] for i in idx], [labels[i] for i in idx], resize)
        torch.manual_seed(int(f.seed))
        g = torch.Generator().manual_seed(int(f.seed))
        model = copy.deepcopy(source) if s.pretrained else fresh()
        head = replace_head(model, len(data.classes), generator=g)
        groups = apply_strategy(model, head, str(s.trainable), float(s.lr), s.get("pretrained_lr"))
        module = FineTuner(model, groups, mean, crop, int(f.epochs), float(f.momentum), float(f.weight_decay), std)
        log.info("finetune %s: %d training images per class, %d epochs", name, n, int(f.epochs))
        fit(module, train, val, int(f.batch_size), accelerator, int(f.seed), progress=progress, workers=workers)
        acc = float(module.history[-1]["val_accuracy"])
        records.append({"strategy": name, "n_train": n, "val_accuracy": acc})
        history += [{"strategy": name, "n_train": n, **row} for row in module.history]
    module = module.cpu()
    counts = parameter_counts(module.model)
    result = {
        "strategy": name, "architecture": arch, "trainable": str(s.trainable), "pretrained": bool(s.pretrained),
        "lr": float(s.lr), "pretrained_lr": None if s.get("pretrained_lr") is None else float(s.pretrained_lr),
        "classes": data.classes, "images_per_class": data.per_class(), "val_per_class": int(f.val_per_class),
        "stray_files": len(data.stray), "unreadable_images": len(bad), "epochs": int(f.epochs),
        "params_total": counts["total"], "params_trainable": counts["trainable"],
        "head": head, "lr_groups": [{"name": g["name"], "lr": g["lr"],
                                     "params": int(sum(p.numel() for p in g["params"]))} for g in groups],
        "val_accuracy": {str(r["n_train"]): r["val_accuracy"] for r in records},
        "val_accuracy_largest": records[-1]["val_accuracy"], "train_seconds": round(time.perf_counter() - t0, 1),
    }
    out = Path(f.out_dir) / name
    result |= _test1(cfg, module, out / "test1_predictions.csv", data.classes, test_files, test_ids)
    result["figures"] = _analyses(cfg, name, source, module, val, data.classes, mean, out, bool(s.pretrained), result)
    result["history"] = pd.DataFrame(history)
    result["figures"].insert(0, plot_training(result["history"], out / "training_curves.png",
                                              title=f"fine-tuning, strategy {name}"))
    _save_model(module.model, Path(f.models_dir) / name / "model.pt")
    return result


def _test1(cfg, module: FineTuner, path: Path, classes: list[str], files: list[Path], ids: list[int]) -> dict:
    """Predictions for the unlabelled test1/ (Kaggle's ``id,label``), scored when ground truth is given."""
    f = cfg.finetune
    if not ids:
        return {"test1_images": 0}
    probs = predict(module, side_loader(ImageFiles(files, None, int(cfg.data.resize)), 64, int(f.workers)))
    frame = pd.DataFrame({"id": ids, "label": probs[:, -1].round(6),
                          "predicted": [classes[i] for i in probs.argmax(1)]})
    write_text(path, frame.to_csv(index=False))
    out = {"test1_images": len(ids)}
    gt_path = f.get("ground_truth")
    if gt_path and Path(gt_path).is_file():
        gt = pd.read_csv(gt_path)
        gt = gt[gt.split == "test1"]
        truth = {int(Path(p).stem): c for p, c in zip(gt.path, gt["class"])}
        scored = [(truth[i], p) for i, p in zip(frame.id, frame.predicted) if i in truth]
        if scored:
            out["test1_accuracy"] = float(np.mean([t == p for t, p in scored]))
    return out


def _analyses(cfg, name: str, source, module: FineTuner, val: ImageFiles, classes: list[str], mean: torch.Tensor,
              out: Path, pretrained: bool, result: dict) -> list[str]:
    """Top-9 projections before / after and occlusion maps of the fine-tuned model; fills ``result``. The
    validation images stream (one batch at a time); only the winners are decoded again for the figures."""
    from zfnet.finetune.analyses import before_after, occlusion_per_class

    a = cfg.finetune.analysis
    module = module.cpu()
    x = FileStream(val.paths, val.resize, 64, int(cfg.finetune.workers),
                   transform=lambda b: _centre(module.normalize(b), module.crop).detach())
    display_mean = mean.mean(dim=(1, 2)) if mean.shape[-1] > 1 else mean.flatten()
    if not torch.equal(module.std, torch.ones_like(module.std)):
        display_mean = None  # divided by std: shown stretched to each image's own range
    tuned = module.model.eval()
    figures, overlap = before_after(source, tuned, x, out, layer=a.get("layer"), maps=int(a.maps), k=int(a.k),
                                    seed=int(cfg.finetune.seed), mean=display_mean)
    result["analysis_layer"] = overlap.pop("layer")
    result["top9_overlap"] = overlap["mean"] if pretrained else None  # a re-initialized net's maps do not correspond
    result["top9_overlap_per_map"] = overlap["per_map"] if pretrained else None
    figures += occlusion_per_class(tuned, x, torch.tensor(val.labels), out, classes, layer=result["analysis_layer"], mean=display_mean)
    return figures


def _save_model(model: torch.nn.Module, path: Path) -> None:
    from zfnet.models.weights import export_model, save_stable

    if isinstance(getattr(model, "config", None), dict):
        export_model(model, path)
    else:
        save_stable({"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, path)

