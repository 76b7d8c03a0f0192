"""Projections in their units' receptive-field frames (the fast deconvnet's output)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

@dataclass
class Projections:
    """Projections in their units' receptive-field frames.

    ``values[u]`` (3, h, w) covers image rows ``top[u] .. top[u] + h`` and columns ``left[u] .. left[u] + w``
    (the unclipped receptive field; rows/columns outside the image are zero). ``full()`` pastes them into
    full-size images; ``crop(images, image_index)`` cuts the same windows out of images.
    """

    values: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    image_size: tuple[int, int]
    units: dict[str, torch.Tensor] = field(default_factory=dict)  # image_index, channel, y, x, value

    def __len__(self) -> int:
        return self.values.shape[0]

    def full(self) -> torch.Tensor:
        """(U, 3, H, W): each projection pasted into a full-size image."""
        return _paste(self.values, self.top, self.left, self.image_size)

    def crop(self, images: torch.Tensor, image_index: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """The windows of ``images[image_index]`` matching ``values`` (zero outside the image)."""
        if image_index is None:
            image_index = self.units["image_index"]
        image_index = torch.as_tensor(image_index, dtype=torch.long)
        _, _, h, w = self.values.shape
        H, W = images.shape[-2:]
        out = images.new_zeros((len(image_index), images.shape[1], h, w))
        for i, (n, t, l) in enumerate(zip(image_index.tolist(), self.top.tolist(), self.left.tolist())):
            y0, y1, x0, x1 = max(t, 0), min(t + h, H), max(l, 0), min(l + w, W)
            if y0 < y1 and x0 < x1:
                out[i, :, y0 - t:y1 - t, x0 - l:x1 - l] = images[n, :, y0:y1, x0:x1]
        return out


def _paste(values: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    u, c, h, w = values.shape
    H, W = size
    out = values.new_zeros((u, c, H, W))
    for i, (t, l) in enumerate(zip(top.tolist(), left.tolist())):
        y0, y1, x0, x1 = max(t, 0), min(t + h, H), max(l, 0), min(l + w, W)
        if y0 < y1 and x0 < x1:
            out[i, :, y0:y1, x0:x1] = values[i, :, y0 - t:y1 - t, x0 - l:x1 - l]
    return out


