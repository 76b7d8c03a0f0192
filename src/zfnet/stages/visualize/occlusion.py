"""Visualize part ``occlusion``: Fig. 7 on the first ``visualize.occlusion.images`` images the model
classifies correctly (predicted batch by batch), and where each probability minimum falls against the
image's object boxes (``occlusion/boxes.json``, the claims stage's input)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from zfnet.figures.notes import write_notes
from zfnet.io import write_json
from zfnet.stages.visualize.stream import _Stream

NAME = "occlusion"
FOLDERS = ("occlusion",)
#: the folder's notes (:mod:`zfnet.figures.notes`): title, what the paper shows there, place in the report
NOTES = {"occlusion": ("Fig. 7: occlusion sensitivity",
                       "A grey square slid over the input: the strongest layer-5 map, the probability of the correct "
                       "class and the most probable class as functions of the square's position.", 70)}
#: the boxes table's first columns (the others follow by name)
BOX_COLUMNS = ("image", "label", "predicted", "correct", "inside", "chance", "min_prob", "unoccluded_prob",
               "min_prob_centre", "box")


def run(ctx) -> dict[str, list[str]]:
    from zfnet.analysis.occlusion.images import occlude_images
    from zfnet.figures.occlusion import write_occlusion

    v, stream = ctx.v, ctx.stream
    occ = {k: val for k, val in dict(v.occlusion).items() if k != "images" and val is not None}
    if not ctx.own:
        occ["layer"] = ctx.layers[-1]
    images, labels, chosen, paths, note = correctly_classified(ctx.model, stream, int(v.occlusion.images), stream.size())
    names = [f"{i:03d}" for i in chosen]
    maps = occlude_images(ctx.model, images, labels, names=names, **occ)
    figures = {"occlusion": write_occlusion(images, maps, ctx.out / "occlusion", names, class_names=ctx.classes,
                                            mean=ctx.mean)}
    summary = occlusion_vs_boxes(ctx.cfg, maps, paths, note=note)
    write_json(ctx.out / "occlusion" / "boxes.json", summary)
    title, text, order = NOTES["occlusion"]
    write_notes(ctx.out / "occlusion", title, text, order=order, sections=box_sections(summary))
    return figures


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
                     "inside": bool(hits.any()), "chance": round(chance, 4),
                     "size": int(m["size"]), "stride": int(m["stride"])})  # the claims stage's untrained control
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



def correctly_classified(model, stream: _Stream, n: int, searched: int):
    """Fig. 7's images as in the paper: the first ``n`` images of ``stream`` the model classifies correctly
    (its own top-1), predicted batch by batch until enough are found; the first ``n`` images when none is.
    Returns (images, labels, their stream indices, source paths, a note saying which they are) ; ``searched``:
    the stream's size, for the note."""
    from zfnet.analysis.hooks import dtype_device, eval_mode

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


def occlusion_text(boxes: dict) -> str:
    """The occlusion page's sentence on ``boxes.json`` (:func:`occlusion_vs_boxes`): the minimum inside the
    box, against chance; '' without a count."""
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
    return text


def box_sections(boxes: dict) -> list[dict]:
    """The occlusion page's section on ``boxes.json``: its sentence and the images' table (:data:`BOX_COLUMNS`
    first); none without ground-truth boxes."""
    if not boxes:
        return []
    images = boxes.get("images") or []
    found = sorted({k for r in images for k in r})
    columns = [c for c in BOX_COLUMNS if c in found] + [c for c in found if c not in BOX_COLUMNS]
    section = {"title": "Where the true-class probability drops most", "text": occlusion_text(boxes)}
    if images:
        section["table"] = {"columns": columns, "rows": [[r.get(c) for c in columns] for r in images]}
    return [section]
