"""Correspondence analysis (Zeiler & Fergus 2014, §4.3, Table 1).

Occlude the same part (right eye, left eye, nose) of the object in each of N images, or a random region.
For image i at layer l, ``eps_i = x_i - x~_i``: the block output of the original minus that of the
occluded image, flattened. ``Delta_l`` is the mean, over ordered pairs ``i != j``, of the *normalized*
Hamming distance between ``sign(eps_i)`` and ``sign(eps_j)``: the fraction of elements whose signs differ.
(The paper writes a sum over pairs; its reported values, about 0.07-0.1, are fractions averaged over the
pairs, which is what is computed here. Ordered and unordered pairs give the same mean.)

``sign(0) = 0``: an element that the occlusion leaves unchanged (common after ReLU: a unit off in both
images) has sign 0; 0 versus 0 counts as equal, 0 versus +1 or -1 counts as different.

Occluded pixels are set to ``fill`` (default 0: the mean of mean-subtracted images). The model runs in eval
mode (dropout off); its training flag is restored afterwards.

Repetitions in ``correspondence_table`` (the paper reports mean +- std without saying over what): each
repetition re-draws the masks. Random masks: new independent positions for every image. Part masks: every
image's square is centred on its landmark shifted by an independent integer offset, uniform in
``[-jitter, jitter]`` pixels per axis (annotation noise; ``jitter=0`` makes the part rows deterministic, std
0). Mean and sample standard deviation (ddof 1) are over the repetitions.

The repetitions re-draw masks over the *same* images, so their std does not measure how the gap between
the random row and the part rows would vary with other images. ``gap_<key>_se_images`` (on the random row)
is that: the bootstrap standard error over images of ``Delta_random - mean over parts of Delta_part``, each
draw resampling the N images with replacement (the same draw for every row: the rows are paired) and
averaging each row's pairwise disagreement (mean over the repetitions) over the drawn pairs of distinct
images.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from zfnet.analysis import hooks
from zfnet.paper import TABLE1


__all__ = [
    "PAPER_TABLE1",
    "correspondence_table",
    "delta",
    "delta_from_eps",
    "part_masks",
    "bootstrap_gap_se",
    "random_masks",
    "sign_disagreement",
    "table_markdown",
]

#: Table 1 of the paper: occlusion -> layer -> (mean, std)
PAPER_TABLE1 = TABLE1


# --------------------------------------------------------------------------------------- Delta
def sign_disagreement(eps: torch.Tensor) -> torch.Tensor:
    """(N, D) differences -> (N, N) fraction of the D elements whose signs differ (sign(0) = 0)."""
    if eps.dim() != 2:
        raise ValueError(f"eps: expected (N, D), got {tuple(eps.shape)}")
    s = torch.sign(eps)
    equal = torch.zeros(eps.shape[0], eps.shape[0], dtype=torch.float64, device=eps.device)
    for v in (-1.0, 0.0, 1.0):  # counts of equal signs, one value at a time, as matrix products
        a = (s == v).to(torch.float64)
        equal += a @ a.T
    return 1.0 - equal / eps.shape[1]


def delta_from_eps(eps: torch.Tensor) -> float:
    """Mean over ordered pairs i != j of the normalized Hamming distance between sign(eps_i), sign(eps_j)."""
    n = eps.shape[0]
    if n < 2:
        raise ValueError(f"Delta needs at least 2 images, got {n}")
    return delta_from_pairs(sign_disagreement(eps.flatten(1)))


def delta_from_pairs(d: torch.Tensor) -> float:
    """The mean of an (N, N) pairwise matrix over ordered pairs i != j."""
    n = d.shape[0]
    return float((d.sum() - d.diagonal().sum()) / (n * (n - 1)))


def bootstrap_gap_se(random_pairs: torch.Tensor, part_pairs: Sequence[torch.Tensor], draws: int,
                     generator: torch.Generator) -> float:
    """Bootstrap standard error over images of ``Delta(random_pairs) - mean(Delta(p) for p in part_pairs)``;
    each argument an (N, N) matrix of pairwise sign disagreements. A draw resamples the N images with
    replacement and averages over the drawn pairs of distinct images (a draw of one image only is redrawn)."""
    n = random_pairs.shape[0]
    diff = random_pairs.double() - torch.stack([p.double() for p in part_pairs]).mean(0)  # the gap, pair by pair
    gaps = []
    while len(gaps) < draws:
        idx = torch.randint(0, n, (n,), generator=generator)
        distinct = idx[:, None] != idx[None, :]
        if distinct.any():
            gaps.append(float(diff[idx][:, idx][distinct].mean()))
    return float(torch.tensor(gaps, dtype=torch.float64).std(correction=1))


def _occlude(images: torch.Tensor, masks: torch.Tensor, fill) -> torch.Tensor:
    if masks.dtype != torch.bool:
        raise ValueError(f"masks: expected a bool tensor, got {masks.dtype}")
    if masks.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"masks: expected shape {(images.shape[0], *images.shape[-2:])}, got {tuple(masks.shape)}")
    f = torch.as_tensor(fill, dtype=images.dtype, device=images.device)
    if f.dim() == 1:
        f = f[:, None, None]
    return torch.where(masks[:, None].to(images.device), f, images)


def _features(model: nn.Module, x: torch.Tensor, layers: Sequence[str], chunk: int = 64,
              call: int | None = None) -> dict[str, torch.Tensor]:
    """Flattened outputs of ``layers`` (module paths), the forward stopped at the deepest; model in eval mode."""
    which = hooks.calls(model, x[:1], layers, call)
    outs: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    for start in range(0, x.shape[0], chunk):
        got = hooks.run(model, x[start : start + chunk], layers, call=which,
                         reduce=lambda _p, o: o.detach().flatten(1).clone())[0]
        for layer in layers:
            outs[layer].append(got[layer])
    return {layer: torch.cat(v) for layer, v in outs.items()}


@torch.no_grad()
def delta(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, layer: str, fill=0.0, *,
          call: int | None = None) -> float:
    """Delta_l of §4.3 for ``images`` (N, 3, H, W) (mean-subtracted) occluded where ``masks`` (N, H, W) is
    True (set to ``fill``), at the output of ``layer`` (a module path of any model). See the module docstring."""
    if images.dim() != 4:
        raise ValueError(f"images: expected (N, C, H, W), got {tuple(images.shape)}")
    dtype, device = hooks.dtype_device(model)
    images = images.to(device=device, dtype=dtype)
    occluded = _occlude(images, masks, fill)
    with hooks.eval_mode(model):
        f = _features(model, torch.cat([images, occluded]), [layer], call=call)[layer]
    n = images.shape[0]
    return delta_from_eps(f[:n] - f[n:])


# --------------------------------------------------------------------------------------- masks
def _hw(image_hw) -> tuple[int, int]:
    h, w = (image_hw, image_hw) if isinstance(image_hw, int) else (int(image_hw[0]), int(image_hw[1]))
    return h, w


def _square_masks(tops: torch.Tensor, lefts: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    rows = torch.arange(h)
    cols = torch.arange(w)
    my = (rows[None] >= tops[:, None]) & (rows[None] < tops[:, None] + size)
    mx = (cols[None] >= lefts[:, None]) & (cols[None] < lefts[:, None] + size)
    return my[:, :, None] & mx[:, None, :]


def _check_size(size: int, h: int, w: int) -> int:
    if isinstance(size, bool) or int(size) != size or not 1 <= size <= min(h, w):
        raise ValueError(f"size: expected an int in [1, {min(h, w)}], got {size!r}")
    return int(size)


def part_masks(landmarks, size: int, image_hw, offsets: torch.Tensor | None = None) -> torch.Tensor:
    """(N, H, W) bool squares of side ``size`` centred on ``landmarks`` (N, 2) as (x, y).

    Landmarks are continuous pixel coordinates (pixel column i covers [i, i + 1)); the square's left column
    is ``round(x - size / 2)`` (so its centre is within half a pixel of x), likewise the top row. Squares
    that would leave the image are shifted inside it (same area for every image). ``offsets`` (N, 2) integer
    (dx, dy) shifts are added first (used for jitter).
    """
    h, w = _hw(image_hw)
    size = _check_size(size, h, w)
    lm = torch.as_tensor(landmarks, dtype=torch.float64)
    if lm.dim() != 2 or lm.shape[1] != 2:
        raise ValueError(f"landmarks: expected (N, 2) (x, y) coordinates, got {tuple(lm.shape)}")
    if not torch.isfinite(lm).all():
        raise ValueError("landmarks: every landmark must be finite (a part missing in an image?)")
    lefts = torch.floor(lm[:, 0] - size / 2 + 0.5).long()
    tops = torch.floor(lm[:, 1] - size / 2 + 0.5).long()
    if offsets is not None:
        lefts = lefts + offsets[:, 0]
        tops = tops + offsets[:, 1]
    return _square_masks(tops.clamp(0, h - size), lefts.clamp(0, w - size), size, h, w)


def random_masks(n: int, size: int, image_hw, generator: torch.Generator | None = None,
                 boxes=None) -> torch.Tensor:
    """(n, H, W) bool squares of side ``size`` at independent uniformly random positions inside the image;
    with ``boxes`` (n, 4) (xmin, ymin, xmax, ymax) the square's centre is drawn inside each image's box
    (then shifted inside the image): random parts of the object."""
    h, w = _hw(image_hw)
    size = _check_size(size, h, w)
    if boxes is None:
        tops = torch.randint(0, h - size + 1, (n,), generator=generator)
        lefts = torch.randint(0, w - size + 1, (n,), generator=generator)
        return _square_masks(tops, lefts, size, h, w)
    b = torch.as_tensor(boxes, dtype=torch.float64)
    if b.shape != (n, 4):
        raise ValueError(f"boxes: expected ({n}, 4) (xmin, ymin, xmax, ymax), got {tuple(b.shape)}")
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    cx = b[:, 0] + u[:, 0] * (b[:, 2] - b[:, 0])
    cy = b[:, 1] + u[:, 1] * (b[:, 3] - b[:, 1])
    return part_masks(torch.stack([cx, cy], 1), size, (h, w))


# --------------------------------------------------------------------------------------- table
def _layer_key(layer: str) -> str:
    m = re.search(r"(\d+)$", layer)
    return f"layer{m.group(1)}" if m else layer


def _pretty(part: str) -> str:
    s = str(part).replace("_", " ").replace("-", " ").strip()
    return s[:1].upper() + s[1:].lower()


@torch.no_grad()
def correspondence_table(
    model: nn.Module,
    images: torch.Tensor,
    landmarks: Mapping[str, object],
    layers: Sequence[str] = ("conv5", "fc7"),
    size: int | None = None,
    repeats: int = 5,
    seed: int = 0,
    *,
    jitter: int | None = None,
    fill=0.0,
    random: bool = True,
    boxes=None,
    bootstrap: int = 1000,
) -> pd.DataFrame:
    """Table 1: Delta per occlusion (each part of ``landmarks``, then ``Random``) and layer.

    ``images`` (N, 3, H, W) mean-subtracted; ``landmarks`` maps a part name (``right_eye``...) to (N, 2)
    (x, y) coordinates; ``size``: side of the square (None: H // 7, 32 px at 224); ``repeats``, ``seed``,
    ``jitter`` (None: size // 4): see the module docstring; ``random``: add the random-occlusion row
    (``boxes``: draw it inside the objects' boxes); ``bootstrap``: draws of the standard error over images
    (module docstring; 0: none).

    Columns: ``occlusion``, then per layer ``delta_<key>_mean``, ``delta_<key>_std`` (key ``layer5`` for
    conv5, ``layer7`` for fc7), then the paper's ``paper_delta_<key>_mean`` / ``_std`` (NaN where the
    paper has no such row), ``repeats``, ``size``; with the random row and ``bootstrap`` draws,
    ``gap_<key>_se_images`` (NaN on the part rows).
    """
    if images.dim() != 4:
        raise ValueError(f"images: expected (N, C, H, W), got {tuple(images.shape)}")
    n, _, h, w = images.shape
    if n < 2:
        raise ValueError(f"correspondence needs at least 2 images, got {n}")
    size = _check_size(h // 7 if size is None else size, h, w)
    jitter = size // 4 if jitter is None else int(jitter)
    if repeats < 1:
        raise ValueError(f"repeats: expected a positive int, got {repeats!r}")
    lms = {}
    for part, lm in landmarks.items():
        t = torch.as_tensor(lm, dtype=torch.float64)
        if t.shape != (n, 2):
            raise ValueError(f"landmarks[{part!r}]: expected ({n}, 2) (x, y) coordinates, got {tuple(t.shape)}")
        lms[part] = t
    dtype, device = hooks.dtype_device(model)
    images = images.to(device=device, dtype=dtype)
    layers = list(layers)
    g = torch.Generator().manual_seed(int(seed))

    rows = []
    pairs: dict[tuple[str, str], torch.Tensor] = {}  # (kind, layer) -> pairwise disagreement, mean over repeats
    with hooks.eval_mode(model):
        ref = _features(model, images, layers)
        occlusions = [(part, "part") for part in lms] + ([("random", "random")] if random else [])
        for part, kind in occlusions:
            values: dict[str, list[float]] = {layer: [] for layer in layers}
            for _r in range(repeats):
                if kind == "part":
                    off = torch.randint(-jitter, jitter + 1, (n, 2), generator=g) if jitter > 0 else None
                    masks = part_masks(lms[part], size, (h, w), offsets=off)
                else:
                    masks = random_masks(n, size, (h, w), generator=g, boxes=boxes)
                occ = _features(model, _occlude(images, masks, fill), layers)
                for layer in layers:
                    d = sign_disagreement((ref[layer] - occ[layer]).flatten(1))
                    values[layer].append(delta_from_pairs(d))
                    pairs[part, layer] = pairs.get((part, layer), 0) + d / repeats
            name = _pretty(part)
            row: dict[str, object] = {"occlusion": name}
            for layer in layers:
                v = torch.tensor(values[layer], dtype=torch.float64)
                key = _layer_key(layer)
                row[f"delta_{key}_mean"] = float(v.mean())
                row[f"delta_{key}_std"] = float(v.std(correction=1)) if len(v) > 1 else 0.0
            for layer in layers:
                key = _layer_key(layer)
                mean, std = PAPER_TABLE1.get(name, {}).get(key, (math.nan, math.nan))
                row[f"paper_delta_{key}_mean"], row[f"paper_delta_{key}_std"] = mean, std
            row["repeats"], row["size"] = repeats, size
            rows.append(row)
    if random and lms and bootstrap > 0:
        for layer in layers:
            se = bootstrap_gap_se(pairs["random", layer], [pairs[part, layer] for part in lms], int(bootstrap),
                                  torch.Generator().manual_seed(int(seed) + 1))
            rows[-1][f"gap_{_layer_key(layer)}_se_images"] = se
    return pd.DataFrame(rows)


def _pm(mean, std) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{mean:.3f} ± {std:.3f}"


def table_markdown(df: pd.DataFrame) -> str:
    """A Markdown table in the paper's layout, ours beside the paper's (no tabulate needed)."""
    keys = [c[len("delta_") : -len("_mean")] for c in df.columns if c.startswith("delta_") and c.endswith("_mean")]
    header = ["occlusion"]
    for key in keys:
        label = key.replace("layer", "layer ")
        header += [f"Δ {label} (ours)", f"Δ {label} (paper)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in df.iterrows():
        cells = [str(r["occlusion"])]
        for key in keys:
            cells.append(_pm(r[f"delta_{key}_mean"], r[f"delta_{key}_std"]))
            cells.append(_pm(r.get(f"paper_delta_{key}_mean"), r.get(f"paper_delta_{key}_std")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
