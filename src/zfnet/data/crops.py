"""The paper's ten 224 crops (§3) as tensor ops: 4 corners + centre, each with and without a flip.

``ten_crops`` returns them in torchvision ``TenCrop`` order (tl, tr, bl, br, centre, then the same five of
the horizontally flipped image). ``batch_crops`` takes one crop per sample of a batch by index, in one
gather: what the training step runs on the device after the batch arrives.
"""

from __future__ import annotations

import torch


def crop_offsets(full: int, size: int) -> list[tuple[int, int]]:
    """(top, left) of the five crops in TenCrop order; the centre uses torchvision's rounding."""
    if size > full:
        raise ValueError(f"crop {size} larger than image {full}")
    c = int(round((full - size) / 2.0))
    far = full - size
    return [(0, 0), (0, far), (far, 0), (far, far), (c, c)]


def ten_crops(x: torch.Tensor, size: int) -> torch.Tensor:
    """(..., C, H, W) -> (..., 10, C, size, size), torchvision TenCrop order (square images)."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"ten_crops expects square images, got {tuple(x.shape[-2:])}")
    offsets = crop_offsets(x.shape[-1], size)
    five = [x[..., t : t + size, l : l + size] for t, l in offsets]
    # torchvision flips the whole image, then crops: a flipped corner is the mirror of the opposite corner
    flipped = x.flip(-1)
    five_f = [flipped[..., t : t + size, l : l + size] for t, l in offsets]
    return torch.stack(five + five_f, dim=-4)


def _windows(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, size: int) -> torch.Tensor:
    """Gather a size×size window at (top, left) from each sample, mirrored where ``flip``."""
    b, c = x.shape[:2]
    ar = torch.arange(size, device=x.device)
    rows = (top[:, None] + ar[None]).view(b, 1, size, 1)
    cols = (left[:, None] + ar[None]).view(b, 1, 1, size)
    out = x[torch.arange(b, device=x.device).view(b, 1, 1, 1), torch.arange(c, device=x.device).view(1, c, 1, 1), rows, cols]
    return torch.where(flip.view(b, 1, 1, 1), out.flip(-1), out)


def batch_crops(x: torch.Tensor, index: torch.Tensor, size: int, minus: torch.Tensor | None = None) -> torch.Tensor:
    """One crop per sample: (B, C, H, W) and (B,) ints in [0, 10) -> (B, C, size, size).

    Index k < 5 is crop k of the image, k >= 5 crop k-5 of the flipped image (TenCrop order). ``minus``:
    (10, C, size, size), e.g. the ten crops of the mean image; crop k of it is subtracted from the samples
    cropped at k (float32 out). One window copy per crop kind (at most ten ops whatever the batch size, no
    per-pixel gather): the fast path on CPU and GPU alike.
    """
    b, c, h, w = x.shape
    if h != w:
        raise ValueError(f"batch_crops expects square images, got {(h, w)}")
    offsets = crop_offsets(h, size)
    k = index.to(x.device).long()
    out = torch.empty((b, c, size, size), device=x.device, dtype=x.dtype if minus is None else torch.float32)
    for kind in range(10):
        sel = (k == kind).nonzero().flatten()
        if sel.numel() == 0:
            continue
        top, left = offsets[kind % 5]
        if kind >= 5:  # the flipped image's crop = the mirror of the opposite window of the image
            left = w - size - left
        crop = x[:, :, top : top + size, left : left + size].index_select(0, sel)
        if kind >= 5:
            crop = crop.flip(-1)
        if minus is not None:
            crop = crop.float().sub_(minus[kind])
        out.index_copy_(0, sel, crop)
    return out


def random_crops(x: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Krizhevsky-style: a uniformly random size×size window per sample, flipped with probability 1/2."""
    b, _, h, w = x.shape
    g = generator
    top = torch.randint(0, h - size + 1, (b,), generator=g).to(x.device)
    left = torch.randint(0, w - size + 1, (b,), generator=g).to(x.device)
    flip = (torch.rand(b, generator=g) < 0.5).to(x.device)
    return _windows(x, top, left, flip, size)
