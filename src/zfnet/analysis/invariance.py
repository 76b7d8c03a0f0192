"""Feature invariance (Zeiler & Fergus 2014, Fig. 5): vertical translation, scale and rotation sweeps.

For every image and every amount of each transformation: the Euclidean distance between the feature
vectors (block outputs, flattened) of the original and of the transformed image at two layers (the paper:
layer 1 and layer 7, i.e. ``conv1`` and ``fc7``), and the probability of the true class of the
transformed image.

Transformations act on the mean-subtracted tensor with ``torchvision.transforms.v2.functional``, bilinear,
filling uncovered pixels with 0 (the mean):

* ``translate``: ``affine(translate=[0, amount])``, amount in pixels, positive = down;
* ``scale``: ``affine(scale=amount)`` about the centre, same canvas (amount 1 = identity);
* ``rotate``: ``rotate(angle=amount)`` in degrees, counter-clockwise, same canvas.

Default amounts follow Fig. 5: translation -60..60 px at 224 (scaled with the image height, in steps of
10 px at 224), scale 1.0..1.8 in steps of 0.1, rotation 0..350 degrees in steps of 10.
The model (any ``nn.Module``; layers by module path) runs in eval mode; every module's flag is restored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from zfnet.analysis import hooks

__all__ = ["TRANSFORMS", "default_amounts", "transform", "invariance_sweep", "mean_curves"]

TRANSFORMS = ("translate", "scale", "rotate")


def default_amounts(height: int = 224) -> dict[str, list[float]]:
    """Fig. 5's ranges; translations scaled to ``height`` (pixels at 224: -60, -50, ..., 60)."""
    f = height / 224.0
    return {
        "translate": [float(round(v * f)) for v in range(-60, 61, 10)],
        "scale": [round(1.0 + 0.1 * i, 2) for i in range(9)],
        "rotate": [float(a) for a in range(0, 360, 10)],
    }


def transform(x: torch.Tensor, kind: str, amount: float) -> torch.Tensor:
    """Apply one transformation to (..., C, H, W) mean-subtracted images (fill 0, bilinear)."""
    bilinear = InterpolationMode.BILINEAR
    if kind == "translate":
        return TF.affine(x, angle=0.0, translate=[0.0, float(amount)], scale=1.0, shear=[0.0, 0.0],
                         interpolation=bilinear, fill=0.0)
    if kind == "scale":
        if not amount > 0:
            raise ValueError(f"scale amount must be positive, got {amount!r}")
        return TF.affine(x, angle=0.0, translate=[0.0, 0.0], scale=float(amount), shear=[0.0, 0.0],
                         interpolation=bilinear, fill=0.0)
    if kind == "rotate":
        return TF.rotate(x, angle=float(amount), interpolation=bilinear, fill=0.0)
    raise ValueError(f"unknown transform {kind!r}; known: {list(TRANSFORMS)}")


def _layer_col(layer: str) -> str:
    return f"distance_{layer}"


@torch.no_grad()
def invariance_sweep(
    model: nn.Module,
    images: torch.Tensor,
    labels: Sequence[int] | torch.Tensor,
    transforms: Mapping[str, Iterable[float]] | None = None,
    layers: Sequence[str] = ("conv1", "fc7"),
    chunk: int = 32,
    image_ids: Sequence | None = None,
    *,
    call: int | None = None,
) -> pd.DataFrame:
    """The Fig. 5 measurements as a long table.

    ``images`` (N, 3, H, W) mean-subtracted; ``labels`` (N,) true classes; ``transforms`` maps a kind
    (``translate``, ``scale``, ``rotate``) to its amounts (None: ``default_amounts(H)``); ``layers``: the
    two (or more) layers whose distances are measured; ``chunk``: transformed copies per forward.

    Returns a DataFrame with one row per (transform, amount, image): ``transform``, ``amount``, ``image``
    (index or ``image_ids[i]``), ``label``, one ``distance_<layer>`` column per layer (Euclidean distance
    between the flattened outputs of the original and the transformed image) and ``p_true`` (softmax
    probability of the true class on the transformed image, from the model's output). ``layers`` are module
    paths of any model (``("conv1", "fc7")`` for ours, ``("features.0", "classifier.4")`` for vgg16).
    """
    if images.dim() != 4:
        raise ValueError(f"images: expected (N, C, H, W), got {tuple(images.shape)}")
    labels = torch.as_tensor(labels).long().flatten()
    if labels.numel() != images.shape[0]:
        raise ValueError(f"labels: expected {images.shape[0]} labels, got {labels.numel()}")
    if image_ids is not None and len(image_ids) != images.shape[0]:
        raise ValueError(f"image_ids: expected {images.shape[0]} ids, got {len(image_ids)}")
    transforms = dict(default_amounts(images.shape[-2]) if transforms is None else transforms)
    for kind in transforms:
        if kind not in TRANSFORMS:
            raise ValueError(f"transforms: unknown transform {kind!r}; known: {list(TRANSFORMS)}")
    layers = list(layers)
    dtype, device = hooks.dtype_device(model)
    images = images.to(device=device, dtype=dtype)

    def keep(_p, out):  # a copy inside the hook: later in-place ops cannot change it
        return out.detach().flatten(1).clone()

    rows = []
    with hooks.eval_mode(model):
        which = hooks.calls(model, images[:1], layers, call)
        ref = hooks.run(model, images, layers, reduce=keep, call=which)[0]
        for kind, amounts in transforms.items():
            amounts = [float(a) for a in amounts]
            for i in range(images.shape[0]):
                copies = torch.stack([transform(images[i], kind, a) for a in amounts])
                for start in range(0, len(amounts), chunk):
                    out, logits = hooks.run(model, copies[start : start + chunk], layers, reduce=keep, call=which,
                                             stop=False)
                    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                        raise ValueError("invariance_sweep: the model's output must be (B, classes) logits")
                    p = torch.softmax(logits, dim=1)[:, labels[i]]
                    dists = {layer: torch.linalg.vector_norm(out[layer] - ref[layer][i], dim=1) for layer in layers}
                    for j in range(p.shape[0]):
                        row = {
                            "transform": kind,
                            "amount": amounts[start + j],
                            "image": image_ids[i] if image_ids is not None else i,
                            "label": int(labels[i]),
                        }
                        row.update({_layer_col(layer): float(dists[layer][j]) for layer in layers})
                        row["p_true"] = float(p[j])
                        rows.append(row)
    columns = ["transform", "amount", "image", "label", *[_layer_col(layer) for layer in layers], "p_true"]
    return pd.DataFrame(rows, columns=columns)


def mean_curves(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Fig. 5's curves averaged over the images: per transformation (in ``df``'s order), one row per amount
    (ascending) with the mean of every ``distance_<layer>`` column and of ``p_true``, and ``images``, the
    number of images averaged. ``df`` is ``invariance_sweep``'s table."""
    missing = {"transform", "amount", "image", "p_true"} - set(df.columns)
    if missing:
        raise ValueError(f"invariance table: missing columns {sorted(missing)}; expected invariance_sweep's output")
    values = [c for c in df.columns if c.startswith("distance_")] + ["p_true"]
    curves = {}
    for kind in dict.fromkeys(df["transform"]):
        part = df[df["transform"] == kind]
        mean = part.groupby("amount", sort=True)[values].mean()
        mean["images"] = part.groupby("amount", sort=True)["image"].nunique()
        curves[str(kind)] = mean.reset_index()
    return curves
