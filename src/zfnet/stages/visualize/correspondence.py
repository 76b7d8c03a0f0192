"""Visualize part ``correspondence``: Table 1 (and its figure) on validation images of a class with part
landmarks in ``visualize.ground_truth``; without them the table says why it is not measurable. Our model
on the prepared images only (a user's model or image folder: nothing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from zfnet.data.preprocess import center_crop
from zfnet.figures.notes import write_notes
from zfnet.stages.visualize.stream import centre, mean_image

NAME = "correspondence"
FOLDERS = ("correspondence",)
#: the folder's notes (:mod:`zfnet.figures.notes`): title, what the paper shows there, place in the report
NOTES = {"correspondence": ("Table 1 / Fig. 8: correspondence",
                            "Δ, the consistency of the change caused by masking the same part in different images "
                            "(lower = more consistent), ours beside the paper's.", 110)}


def run(ctx) -> dict[str, list[str]]:
    if not ctx.own or ctx.folder:
        return {}
    from zfnet.analysis.correspondence import correspondence_table
    from zfnet.figures.correspondence import write_correspondence
    from zfnet.figures.tables import write_unmeasured_table

    v = ctx.v
    parts = part_images(ctx.cfg, mean_image(ctx.prepared))
    if isinstance(parts, str):  # Table 1 says why it is missing (the claims stage shows it)
        if v.get("tables_dir"):
            write_unmeasured_table(parts, v.tables_dir, "table1_correspondence")
        return {}
    images, landmarks = parts
    options = {k: val for k, val in dict(v.correspondence).items() if k not in ("class", "images") and val is not None}
    df = correspondence_table(ctx.model, images, landmarks, **options)
    title, text, order = NOTES["correspondence"]
    write_notes(ctx.out / "correspondence", title, text, order=order)
    return {"correspondence": write_correspondence(df, ctx.out / "correspondence", v.tables_dir)}


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
    images = centre(full - mean_full, crop)
    sizes = [Image.open(p).size for p in chosen]
    by_id = table.set_index(["ImageId", "part"])
    points = {}
    for part in parts:
        xy = np.array([by_id.loc[(p.stem, part), ["x", "y"]].to_numpy(float).reshape(-1, 2)[0] for p in chosen])
        x, y = to_input(xy[:, 0], xy[:, 1], np.array([w for w, _ in sizes]), np.array([h for _, h in sizes]), resize, crop)
        points[part] = np.stack([x, y], axis=1)
    return images, points


