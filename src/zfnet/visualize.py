"""The visualize stage: every figure of the paper's analyses from the trained model.

Inputs are what the network sees: validation images prepared by the prepare stage (centre crop of
``data.crop``, minus the mean image). Figures: layer-1 filters (Fig. 6), training curves, top-9 deconvnet
projections (Fig. 2) and their evolution over the saved checkpoints (Fig. 4), occlusion (Fig. 7) and
invariance (Fig. 5, its curves also as CSV for ``dvc plots``); Table 1 (correspondence) on images of a
class with part landmarks in its ground truth (the demo's face-like class), when that ground truth exists;
network-centric synthesis (``visualize.synthesis``): class models, the Fig. 2 maps synthesized beside their
Fig. 2 rows, inversions layer by layer.

Memory is set by config, not by ``visualize.images`` (a count or ``all``): the images stream from the shards
``visualize.batch_size`` at a time (:class:`ValidationStream`, or :class:`FolderStream` for
``visualize.image_folder``). Fig. 2's top-k search is one pass, Fig. 4's one per checkpoint, Fig. 6's one per
model; afterwards only the images the figures show are read back by stream index (at most layers x maps x k).
Fig. 7 predicts batch by batch until ``occlusion.images`` correctly classified images are found; invariance
and the inversions take the first few images.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf
from PIL import Image

from zfnet.figures.filters import save_filters
from zfnet.figures.tables import write_unmeasured_table
from zfnet.data import shards
from zfnet.data.crops import crop_offsets
from zfnet.data.preprocess import center_crop
from zfnet.io import write_json
from zfnet.models.weights import build_model, load_model


def _centre(x: torch.Tensor, crop: int) -> torch.Tensor:
    top, left = crop_offsets(x.shape[-1], crop)[4]
    return x[..., top : top + crop, left : left + crop]


class _Stream:
    """Images as the network sees them, streamed ``batch_size`` at a time (one batch held at a time).

    Iterating yields ``(images (B, 3, crop, crop) float, labels (B,) int64, source paths)`` in stream order;
    every pass starts anew (a search per checkpoint reads the images again). ``take(indices)`` reads only
    the images at the given ascending stream indices (the figures' few winners); ``head(n)`` the first n with
    their labels. ``count``: images in the stream, known once a pass has reached its end. Subclasses give
    ``_samples(wanted)`` ((index, raw, label, path) in stream order) and ``_frame(raws)`` (the batch tensor)."""

    batch_size: int
    crop: int
    total: int | None = None  # for the progress line, when known in advance
    desc = "visualize: images"

    def __init__(self):
        self.count: int | None = None

    def __iter__(self):
        from zfnet.progress import bar

        n, buf = 0, []
        with bar(total=self.total, desc=self.desc, unit="img") as progress:
            for item in self._samples(None):
                buf.append(item)
                if len(buf) == self.batch_size:
                    yield self._batch(buf)
                    progress.update(len(buf))
                    n, buf = n + len(buf), []
            if buf:
                yield self._batch(buf)
                progress.update(len(buf))
                n += len(buf)
        self.count = n

    def _batch(self, items):
        return (self._frame([raw for _, raw, _, _ in items]), torch.tensor([label for _, _, label, _ in items]),
                [path for _, _, _, path in items])

    def take(self, indices) -> torch.Tensor:
        items = list(self._samples(sorted(int(i) for i in indices))) if len(indices) else []
        return self._batch(items)[0] if items else torch.zeros(0, 3, self.crop, self.crop)

    def head(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        items = list(self._samples(range(n))) if n > 0 else []
        if not items:
            return torch.zeros(0, 3, self.crop, self.crop), torch.zeros(0, dtype=torch.long)
        x, labels, _ = self._batch(items)
        return x, labels


class ValidationStream(_Stream):
    """The prepared validation shards as the network sees them: the centre ``crop`` of each 256-image minus
    the mean image, in shard order (the stream index counts from 0); ``limit``: the first n (None: all)."""

    def __init__(self, prepared_dir: str | Path, crop: int, limit: int | None, batch_size: int):
        super().__init__()
        self.dir, self.crop, self.limit, self.batch_size = Path(prepared_dir), int(crop), limit, int(batch_size)
        self.mean_full = torch.from_numpy(np.load(self.dir / "mean.npy")).float().permute(2, 0, 1)
        self.mean = _centre(self.mean_full, self.crop)
        shards.shards(self.dir, "val")  # no shards: the error names the folder now, not at the first pass
        stats = self.dir / "stats.json"
        written = json.loads(stats.read_text()).get("val", {}).get("written") if stats.is_file() else None
        known = [x for x in (limit, written) if x is not None]
        self.total = min(known) if known else None

    def _samples(self, wanted):
        for i, image, label, meta in shards.iter_split(self.dir, "val", limit=self.limit, wanted=wanted):
            yield i, image, label, meta["path"]

    def _frame(self, images):
        pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # a copy: the shards' bytes are read-only
        x = pixels.float() - self.mean_full
        return _centre(x, self.crop)


class FolderStream(_Stream):
    """An ImageFolder tree's first ``limit`` images (None: all), preprocessed as the pipeline does (minus
    the prepared mean image when there is one); ``names``: its class names."""

    def __init__(self, cfg, folder, limit: int | None, batch_size: int):
        from zfnet.analysis.inputs import _mean, image_folder

        super().__init__()
        paths, labels, self.names = image_folder(folder)
        self.paths, self.labels = paths[:limit], labels[:limit]
        mean_file = Path(cfg.prepare.out_dir) / "mean.npy"
        self.mean_path = str(mean_file) if mean_file.is_file() else None
        self.resize, self.crop, self.batch_size = int(cfg.data.resize), int(cfg.data.crop), int(batch_size)
        self.mean = _mean(self.mean_path, self.resize, self.crop).expand(3, self.crop, self.crop)
        self.total = len(self.paths)

    def _samples(self, wanted):
        for i in range(len(self.paths)) if wanted is None else [i for i in wanted if i < len(self.paths)]:
            yield i, self.paths[i], self.labels[i], str(self.paths[i])

    def _frame(self, paths):
        from zfnet.analysis.inputs import load_images

        return load_images(paths, self.resize, self.crop, mean=self.mean_path)


def image_limit(value) -> int | None:
    """``visualize.images``: a count, or ``all`` (None: every image)."""
    return None if value == "all" else int(value)


def occlusion_vs_boxes(cfg, maps: list[dict], paths: list[str], note: str = "") -> dict:
    """Where each image's probability minimum falls relative to its true class's object boxes, against
    chance: ``{"images": [...], "summary": {...}}``, or ``{}`` without ground-truth boxes.

    Boxes: ImageNet's validation boxes of ``data.imagenet_root`` (Kaggle's ``LOC_val_solution.csv`` or the
    bounding-box XMLs, or ``data.val_boxes``; the demo writes the CSV too), read by
    ``zfnet.data.imagenet_boxes`` for these images only (matched by file stem, ``ILSVRC2012_val_NNNNNNNN``),
    and carried into the network's input like the demo's (``zfnet.data.groundtruth.input_boxes``). An image
    may have several boxes: only those of its true class count, and a position is "in the box" when it lies
    in any of them. Images without a box of their class are left out.

    Per image: ``inside`` (the true-class probability's minimum lies inside a box), ``chance`` (the fraction
    of the square's positions whose centre falls in a box: where a random position would land), ``label``,
    ``predicted`` (the model's top-1 on the unoccluded image), ``correct``, ``box`` (the box holding the
    minimum, else the first) and ``boxes`` (all of the class's). The summary counts the correctly classified
    images (all of them when none is), with the count expected by chance and the one-sided Poisson-binomial
    p-value P(inside count >= observed) under random positions."""
    from PIL import Image

    from zfnet.data import imagenet, imagenet_boxes
    from zfnet.data.groundtruth import input_boxes

    root = cfg.data.get("imagenet_root")
    source = imagenet_boxes.find(root, cfg.data.get("val_boxes"))
    if source is None:
        return {}
    found = imagenet_boxes.read(source, [Path(p).stem for p in paths])
    classes_file = Path(cfg.prepare.out_dir) / "classes.json" if cfg.get("prepare") else None
    wnids = (json.loads(classes_file.read_text()).get("wnids") if classes_file and classes_file.is_file() else None) \
        or imagenet.classes(root)[0]  # the prepared labels' order: sorted wnids
    rows = []
    for m, path in zip(maps, paths):
        entry, label = found.get(Path(path).stem), int(m["target"])
        corners = entry.of_class(wnids[label]) if entry is not None and 0 <= label < len(wnids) else np.zeros((0, 4))
        if not len(corners):
            continue
        size = entry.size
        if size is None:  # the CSV has no image size: the file's header says it
            try:
                with Image.open(path) as image:
                    size = image.size
            except OSError:
                continue
        box = input_boxes(corners, *size, int(cfg.data.resize), int(cfg.data.crop))
        prob = torch.as_tensor(m["prob"])
        cys = np.asarray(m["ys"], float) + m["size"] / 2  # the square's centres
        cxs = np.asarray(m["xs"], float) + m["size"] / 2
        iy, ix = np.unravel_index(int(prob.argmin()), tuple(prob.shape))
        cy, cx = float(cys[iy]), float(cxs[ix])
        in_x = (box[:, [0]] <= cxs) & (cxs <= box[:, [2]])  # (K boxes, X positions)
        in_y = (box[:, [1]] <= cys) & (cys <= box[:, [3]])  # (K boxes, Y positions)
        chance = float((in_y[:, :, None] & in_x[:, None, :]).any(0).mean())  # in any box
        hits = in_y[:, iy] & in_x[:, ix]  # which boxes hold the minimum
        predicted = int(m["unoccluded"]["top_class"])
        rows.append({"image": Path(path).name, "label": label, "predicted": predicted, "correct": predicted == label,
                     "box": [round(float(v), 1) for v in box[int(hits.argmax())]],
                     "boxes": [[round(float(v), 1) for v in b] for b in box], "min_prob_centre": [cx, cy],
                     "min_prob": float(prob.min()), "unoccluded_prob": float(m["unoccluded"]["prob"]),
                     "inside": bool(hits.any()), "chance": round(chance, 4)})
    counted = [r for r in rows if r["correct"]] or rows
    dist = np.ones(1)  # Poisson-binomial distribution of the inside count under chance, by convolution
    for r in counted:
        dist = np.convolve(dist, [1 - r["chance"], r["chance"]])
    inside = sum(r["inside"] for r in counted)
    summary = {"images": len(rows), "correct": sum(r["correct"] for r in rows),
               "counted": "correctly classified" if any(r["correct"] for r in rows) else "all (none classified correctly)",
               "inside": inside, "out_of": len(counted),
               "expected_inside": round(sum(r["chance"] for r in counted), 3),
               "mean_chance": round(float(np.mean([r["chance"] for r in counted])), 3) if counted else None,
               "p_value": round(float(min(1.0, dist[inside:].sum())), 4) if counted else None,
               "note": note}
    return {"images": rows, "summary": summary}


def part_images(cfg, mean_full: torch.Tensor) -> tuple[torch.Tensor, dict[str, np.ndarray]] | str:
    """Validation images of the correspondence class with their part landmarks in input coordinates, or the
    reason there are none (Table 1 is then reported "not measurable").

    The landmarks come from ``<visualize.ground_truth>/landmarks.csv`` (``ImageId,part,x,y``, see
    :func:`zfnet.data.groundtruth.read_landmarks`): the demo writes its face class's eyes and nose there; real
    ImageNet has no landmarks, so Table 1 needs a user's file. Images are the validation images of
    ``data.imagenet_root`` whose name is an ``ImageId`` with every part, of class
    ``visualize.correspondence.class`` (null: any class), the first ``visualize.correspondence.images``."""
    from zfnet.data import imagenet
    from zfnet.data.groundtruth import read_landmarks, to_input

    wanted = cfg.visualize.correspondence
    gt = cfg.visualize.get("ground_truth")
    source = Path(gt) / "landmarks.csv" if gt else None
    if source is None or not source.is_file():
        return (f"no part landmarks: {source} does not exist (visualize.ground_truth; ImageNet has none: write "
                f"ImageId,part,x,y rows there to measure Table 1)" if source else "no part landmarks (visualize.ground_truth is null)")
    table = read_landmarks(source)
    parts = list(dict.fromkeys(table.part))  # in the file's order (Table 1's row order)
    complete = table.groupby("ImageId").part.nunique() == len(parts)
    ids = set(complete[complete].index)
    root = Path(cfg.data.imagenet_root)
    wnids, _ = imagenet.classes(root)
    val = imagenet.val_split(root)
    label = wnids.index(wanted["class"]) if wanted.get("class") in wnids else None
    if wanted.get("class") and label is None:
        return f"visualize.correspondence.class={wanted['class']!r} is not a class of {root}"
    chosen = [p for p, l in zip(val.paths, val.labels) if p.stem in ids and (label is None or l == label)]
    chosen = chosen[: int(wanted.images)]
    if len(chosen) < 2:
        return (f"{len(chosen)} validation image(s) of class {wanted.get('class')} have all parts ({', '.join(parts)}) "
                f"in {source}: at least 2 are needed")
    resize, crop = int(cfg.data.resize), int(cfg.data.crop)
    full = torch.stack([torch.from_numpy(center_crop(p, resize)).permute(2, 0, 1).float() for p in chosen])
    images = _centre(full - mean_full, crop)
    sizes = [Image.open(p).size for p in chosen]
    by_id = table.set_index(["ImageId", "part"])
    points = {}
    for part in parts:
        xy = np.array([by_id.loc[(p.stem, part), ["x", "y"]].to_numpy(float).reshape(-1, 2)[0] for p in chosen])
        x, y = to_input(xy[:, 0], xy[:, 1], np.array([w for w, _ in sizes]), np.array([h for _, h in sizes]), resize, crop)
        points[part] = np.stack([x, y], axis=1)
    return images, points


def write_invariance_curves(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Fig. 5's curves (mean over the images) as ``<out_dir>/<transform>.csv``: the DVC plots' data."""
    from zfnet.analysis.invariance import mean_curves
    from zfnet.io import write_text

    out_dir = Path(out_dir)
    curves = mean_curves(df)
    written = [write_text(out_dir / f"{kind}.csv", frame.to_csv(index=False)) for kind, frame in curves.items()]
    for stale in out_dir.glob("*.csv"):
        if stale.stem not in curves:
            stale.unlink()
    return written


def checkpoints_by_epoch(folder: Path) -> dict[str, torch.nn.Module]:
    found = sorted((int(m.group(1)), p) for p in folder.glob("epoch=*.ckpt") if (m := re.match(r"epoch=(\d+)", p.stem)))
    return {f"epoch {e}": load_model(p) for e, p in found}


def run(cfg) -> dict[str, list[str]]:
    from zfnet.figures import deconv as figures_deconv
    from zfnet.figures import sensitivity as figures_sensitivity
    from zfnet.figures.training import plot_history

    out = Path(cfg.visualize.out_dir)
    v = cfg.visualize
    prepared = Path(cfg.prepare.out_dir)
    crop = int(cfg.data.crop)
    classes_file = prepared / "classes.json"
    classes = json.loads(classes_file.read_text()) if classes_file.is_file() else {"names": []}
    folder = v.get("image_folder")
    limit, batch = image_limit(v.images), int(v.batch_size)
    stream = FolderStream(cfg, folder, limit, batch) if folder else ValidationStream(prepared, crop, limit, batch)
    if folder and (v.get("model") or not classes["names"]):  # a user's model: its classes are the folder's, in order
        classes = {"names": stream.names}
    mean = stream.mean
    model, arch = build_model(v, len(classes["names"]) or 1000)
    layers = list(v.get("layers") or figures_deconv.DEFAULT_LAYERS)
    own = not v.get("layers")  # our model: the paper's layers; otherwise the given paths
    figures: dict[str, list[str]] = {"filters": [str(save_filters(model, out / "filters" / f"conv1_{arch}.png"))]}
    history = cfg.train.get("history_path") or "metrics/train_history.csv"  # null: the pipeline's, as the checkpoint
    if not v.get("model") and Path(history).is_file():  # our training's curves, not a user's model's
        figures["training"] = [str(plot_history(history, out / "training" / "curves.png"))]

    # Fig. 2 (and Fig. 4): the top-k search streams the images, one batch at a time; only the winners are read again
    stream.desc = "visualize: top-k search (Fig. 2, then Fig. 4 per checkpoint)"
    checkpoints = (checkpoints_by_epoch(Path(v.checkpoints_dir)) or None) if not v.get("model") else None
    deconv = figures_deconv.export(model, stream, out, maps_per_layer=int(v.deconv.maps_per_layer), k=int(v.deconv.k),
                                   layers=layers, checkpoints=checkpoints, seed=int(cfg.seed),
                                   mean=mean.mean(dim=(1, 2)))  # patches are crops: a per-channel mean to display them
    searched = stream.count  # the Fig. 2 search read the whole stream
    fig2_maps, fig2_rows = deconv.pop("maps"), deconv.pop("rows")
    figures.update(deconv)
    if v.get("synthesis") is not None:  # network-centric views of the same maps, class models, inversions
        from zfnet.figures.synthesis import export_synthesis

        synthesis = OmegaConf.to_container(v.synthesis, resolve=True)
        first, _ = stream.head(max(1, int(synthesis.get("inversion_images") or 0)))  # the inversions' images
        figures.update(export_synthesis(model, first, out, synthesis, fig2_maps, class_names=classes["names"],
                                        mean=mean, fig2_rows=fig2_rows, progress=True))

    mean_full = stream.mean_full if own and not folder else None
    parts = part_images(cfg, mean_full) if own and not folder else None
    occ = {k: val for k, val in dict(v.occlusion).items() if k != "images" and val is not None}
    if not own:
        occ["layer"] = layers[-1]
    occ_images, occ_labels, chosen, occ_paths, occ_note = correctly_classified(model, stream, int(v.occlusion.images),
                                                                               searched)
    occ_sens = figures_sensitivity.export(
        model, occ_images, occ_labels, out, class_names=classes["names"], occlusion=occ, invariance=False,
        image_names=[f"{i:03d}" for i in chosen], mean=mean)
    figures.update(occ_sens.figures)
    inv_images, inv_labels = stream.head(int(v.invariance.images))
    sens = figures_sensitivity.export(
        model, inv_images, inv_labels, out,
        class_names=classes["names"], occlusion=False,
        invariance={"max_images": int(v.invariance.images), **({} if own else {"layers": [layers[0], layers[-1]]})},
        correspondence_images=parts[0] if isinstance(parts, tuple) else None,
        landmarks=parts[1] if isinstance(parts, tuple) else None,
        correspondence={k: val for k, val in dict(v.correspondence).items() if k not in ("class", "images") and val is not None},
        tables_dir=v.tables_dir, mean=mean)
    figures.update(sens.figures)
    if isinstance(parts, str) and v.get("tables_dir"):  # Table 1 says why it is missing (the claims stage shows it)
        write_unmeasured_table(parts, v.tables_dir, "table1_correspondence")
    if "invariance" in sens.tables and v.get("curves_dir"):
        write_invariance_curves(sens.tables["invariance"], v.curves_dir)
    summary = occlusion_vs_boxes(cfg, list(occ_sens.maps), occ_paths, note=occ_note)
    write_json(out / "occlusion" / "boxes.json", summary)

    # Fig. 6: layer 1 and 2 of Krizhevsky's model and ours (the Table 3 baselines: same data, epochs and
    # width), and ours trained without RMS clipping; each model's conv2 search streams the same images
    fig6_models = {label: load_model(p) for label, p in (("alexnet", v.fig6.alexnet), ("zfnet", v.fig6.zfnet),
                                                       ("zfnet, no RMS clipping", v.fig6.zfnet_noclip))
                   if own and not v.get("model") and Path(p).is_file()}
    if fig6_models:
        stream.desc = "visualize: conv2 search (Fig. 6)"
        figures["fig6"] = figures_deconv.fig6(fig6_models, stream, out, seed=int(cfg.seed))
    write_json(out / "index.json", figures)
    return figures


def correctly_classified(model, stream: _Stream, n: int, searched: int):
    """Fig. 7's images as in the paper: the first ``n`` images of ``stream`` the model classifies correctly
    (its own top-1), predicted batch by batch until enough are found; the first ``n`` images when none is.
    Returns (images, labels, their stream indices, source paths, a note saying which they are) ; ``searched``:
    the stream's size, for the note."""
    from zfnet.analysis._hooks import dtype_device, eval_mode

    dtype, device = dtype_device(model)
    correct, first, seen = [], [], 0
    stream.desc = "visualize: correctly classified images (Fig. 7)"
    with torch.no_grad(), eval_mode(model):
        for x, labels, paths in stream:
            predicted = torch.cat([model(b.to(device, dtype)).argmax(1).cpu() for b in x.split(32)])
            for j in range(len(x)):
                item = (x[j].clone(), int(labels[j]), seen + j, paths[j])
                if len(first) < n:
                    first.append(item)
                if int(predicted[j]) == int(labels[j]) and len(correct) < n:
                    correct.append(item)
            seen += len(x)
            if len(correct) >= n:
                break
    if not first:
        raise ValueError("visualize: no images to occlude (the stream is empty)")
    chosen = correct or first
    note = (f"the first {len(chosen)} of the {searched} images searched that the model classifies correctly"
            if len(correct) == n else
            f"only {len(correct)} of the {searched} images searched are classified correctly (configured: {n})"
            + ("" if correct else f"; showing the first {len(chosen)}, misclassified"))
    return (torch.stack([c[0] for c in chosen]), torch.tensor([c[1] for c in chosen]), [c[2] for c in chosen],
            [c[3] for c in chosen], note)
