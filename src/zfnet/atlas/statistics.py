"""Per-unit statistics of the atlas, every map of the chosen layers in one streaming pass.

For every feature map ("unit") of each layer, over the images of a stream: the running top-k images (as
:func:`zfnet.analysis.topk.top_activations` gives them, the same accumulator) and their class labels; the
mean and maximum activation over every image and position; the fire rate (the fraction of (image,
position) where the activation is > 0); each class's mean of the map's spatial mean; and the class
selectivity index of Morcos et al. 2018 ("On the importance of single directions for generalization"):

    selectivity = (mu_max - mu_-max) / (mu_max + mu_-max)

with mu_max the largest class-conditional mean activity and mu_-max the mean of the other classes' means
(classes seen in the stream only). 0: no class preferred; 1: the unit is active for one class only. The
index is defined for non-negative activities (a layer after a ReLU); it is NaN where a class mean is
negative, where fewer than 2 classes were seen, or where the denominator is 0 (a dead unit).

Memory: per layer O(C x (k + n_classes)) (the running top-k, the class sums), plus one batch; the maps are
reduced inside forward hooks, so no full feature map outlives its batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch
from torch import nn

from zfnet.analysis import hooks
from zfnet.analysis.topk import RunningTopK, TopK, _per_image_max

__all__ = ["LayerStats", "labelled_batches", "selectivity_index", "unit_statistics"]


class LayerStats(NamedTuple):
    """One layer's statistics, C maps."""

    topk: TopK  # (C, k) fields, the same as top_activations would give
    top_labels: torch.Tensor  # (C, k) int64: the class labels of the top-k images
    mean: torch.Tensor  # (C,) mean activation over every image and position
    max: torch.Tensor  # (C,) maximum activation
    fire_rate: torch.Tensor  # (C,) fraction of (image, position) with activation > 0
    class_mean: torch.Tensor  # (C, n_classes): mean over each class's images of the map's spatial mean (NaN: no image)
    selectivity: torch.Tensor  # (C,) class selectivity index (Morcos et al. 2018) from class_mean; NaN when undefined


def labelled_batches(stream, batch_size: int = 64) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images (B, 3, H, W), labels (B,) int64)`` batches of ``stream``: an iterable of ``(images, labels,
    ...)`` batches (the visualize streams yield ``(images, labels, paths)``) or one ``(images, labels)`` pair
    of tensors (cut into ``batch_size`` batches)."""
    if (isinstance(stream, (tuple, list)) and len(stream) == 2 and all(isinstance(t, torch.Tensor) for t in stream)
            and stream[0].ndim == 4):
        x, y = stream
        if len(x) != len(y):
            raise ValueError(f"stream: {len(x)} images but {len(y)} labels")
        for s in range(0, len(x), batch_size):
            yield x[s:s + batch_size], y[s:s + batch_size].long()
        return
    for batch in stream:
        if not (isinstance(batch, (tuple, list)) and len(batch) >= 2 and isinstance(batch[0], torch.Tensor)):
            raise TypeError("stream: expected batches of (images, labels, ...) or one (images, labels) pair of "
                            f"tensors, got a batch of {type(batch).__name__}")
        x, y = batch[0], torch.as_tensor(batch[1]).long()
        if len(x) != len(y):
            raise ValueError(f"stream: a batch of {len(x)} images with {len(y)} labels")
        yield x, y


def selectivity_index(class_mean: torch.Tensor) -> torch.Tensor:
    """(C, n_classes) class means (NaN: class not seen) -> (C,) selectivity index (module docstring)."""
    cm = class_mean.double()
    seen = ~torch.isnan(cm)
    n = seen.sum(1)
    filled = torch.where(seen, cm, torch.zeros((), dtype=cm.dtype))
    top = torch.where(seen, cm, torch.full((), -torch.inf, dtype=cm.dtype)).max(1).values
    rest = (filled.sum(1) - top) / (n - 1).clamp_min(1)
    denom = top + rest
    negative = (seen & (cm < 0)).any(1)
    out = (top - rest) / denom
    bad = (n < 2) | (denom == 0) | negative
    return torch.where(bad, torch.full((), torch.nan, dtype=cm.dtype), out).to(class_mean.dtype)


def _reduce(name: str, out: torch.Tensor):
    """Per image and map: (max, its position, W) for the top-k, the spatial mean, the positions firing."""
    vals, pos, w = _per_image_max(out, name)
    a = out.detach()
    a = a.flatten(2) if a.ndim == 4 else a[:, :, None]
    return vals, pos, w, a.mean(2), (a > 0).sum(2), a.shape[2]


@torch.no_grad()
def unit_statistics(model: nn.Module, stream, layers: Sequence[str], *, n_classes: int, k: int = 9,
                    call: int | None = None) -> dict[str, LayerStats]:
    """:class:`LayerStats` of every map of ``layers`` in one pass over ``stream`` (see :func:`labelled_batches`);
    labels must be in ``0..n_classes-1``. The forward stops at the deepest layer; eval mode, restored after."""
    layers = list(layers)
    if not layers:
        raise ValueError("layers: give at least one layer")
    if n_classes < 1:
        raise ValueError(f"n_classes: expected a positive int, got {n_classes!r}")
    dtype, device = hooks.dtype_device(model)
    top = {name: RunningTopK(k) for name in layers}
    sums: dict[str, list] = {}  # layer -> [spatial-mean sum (C,), firing count (C,), class sums (C, n_classes)]
    class_count = torch.zeros(n_classes, dtype=torch.float64)
    positions: dict[str, int] = {}
    which = None
    with hooks.eval_mode(model):
        for xb, yb in labelled_batches(stream):
            if len(xb) == 0:
                continue
            if int(yb.min()) < 0 or int(yb.max()) >= n_classes:
                raise ValueError(f"stream: labels must be in 0..{n_classes - 1} (n_classes={n_classes}), "
                                 f"got {int(yb.min())}..{int(yb.max())}")
            xb = xb.to(device=device, dtype=dtype)
            if which is None:
                which = hooks.calls(model, xb, layers, call)
            outs, _ = hooks.run(model, xb, layers, reduce=_reduce, call=which)
            onehot = torch.nn.functional.one_hot(yb, n_classes).double()
            class_count += onehot.sum(0)
            for name in layers:
                vals, pos, w, means, firing, hw = outs[name]
                top[name].update(vals, pos, w, {"label": yb.to(vals.device)})
                means = means.double().cpu()
                s = sums.setdefault(name, [0.0, 0, 0.0])
                s[0] = s[0] + means.sum(0)
                s[1] = s[1] + firing.sum(0).cpu()
                s[2] = s[2] + means.t() @ onehot
                positions[name] = hw
    n = int(class_count.sum())
    if n == 0:
        raise ValueError("stream: no images")
    out = {}
    for name in layers:
        total, firing, class_sum = sums[name]
        class_mean = (class_sum / class_count).float()  # 0/0 = NaN for a class without images
        tk = top[name].result()
        out[name] = LayerStats(
            topk=tk, top_labels=top[name].extra("label").long(), mean=(total / n).float(),
            max=tk.values[:, 0].clone(), fire_rate=(firing.double() / (n * positions[name])).float(),
            class_mean=class_mean, selectivity=selectivity_index(class_mean))
    return out

