"""Image parameterizations and transformation robustness for network-centric synthesis.

An image of the model's mean-subtracted input space is ``scale * P(param)``:

* ``"pixel"``: ``P`` is the identity, optionally followed by the colour decorrelation below.
* ``"fft"``: Lucid's decorrelated Fourier parameterization (Olah et al. 2017, ``lucid.optvis.param.spatial
  .fft_image``): the parameter is the real FFT of the image (``norm="ortho"``), each frequency multiplied by
  ``1 / max(|f|, 1 / max(h, w))^decay`` and the result divided by 4 (Lucid's constants); then the colour
  decorrelation: each pixel's 3 channels times Lucid's square root of ImageNet's colour covariance (its
  columns scaled to a largest norm of 1).

``to_param`` inverts ``image`` exactly (the FFT is unitary, the colour matrix invertible), so an image can be
put back into parameter space (periodic blur, starting from a given image).

:func:`random_affine` is Lucid's transformation robustness (jitter, small random scaling and rotation) as
one ``grid_sample`` per batch with per-image parameters drawn from per-image generators: image ``i``'s
transformation depends only on its own generator, so a batch is the same as its images one at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["COLOR_SQRT", "Parameterization", "random_affine"]

# Lucid's color_correlation_svd_sqrt (ImageNet), normalized as in lucid/lucent (columns' largest norm -> 1)
_C = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float64)
COLOR_SQRT = _C / _C.norm(dim=0).max()


class Parameterization:
    """``kind`` ``"pixel"`` or ``"fft"``, for images of ``(h, w)``; ``decorrelate``: mix colours by
    :data:`COLOR_SQRT`; ``scale``: the image's unit in model input space; ``decay``: the FFT's 1/f power."""

    def __init__(self, kind: str, h: int, w: int, *, scale: float = 1.0, decorrelate: bool = True,
                 decay: float = 1.0, dtype=torch.float32, device="cpu"):
        if kind not in ("pixel", "fft"):
            raise ValueError(f"param: expected 'pixel' or 'fft', got {kind!r}")
        self.kind, self.h, self.w, self.scale, self.decorrelate = kind, int(h), int(w), float(scale), bool(decorrelate)
        self.dtype, self.device = dtype, torch.device(device)
        self.color = COLOR_SQRT.to(dtype=dtype, device=self.device)
        if kind == "fft":
            fy = torch.fft.fftfreq(self.h, dtype=torch.float64)[:, None]
            fx = torch.fft.rfftfreq(self.w, dtype=torch.float64)[None, :]
            f = torch.sqrt(fx * fx + fy * fy)
            self.freq_scale = (1.0 / torch.clamp(f, min=1.0 / max(self.h, self.w)) ** decay).to(dtype=dtype, device=self.device)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one image's parameter (the FFT's as real and imaginary parts in a last axis of 2)."""
        return (3, self.h, self.w) if self.kind == "pixel" else (3, self.h, self.w // 2 + 1, 2)

    def init(self, generators: Sequence[torch.Generator], sd: float = 0.01) -> torch.Tensor:
        """A random parameter per generator (N(0, sd^2), Lucid's initialization), drawn on the CPU."""
        return torch.stack([torch.randn(self.shape, generator=g, dtype=torch.float64) * sd for g in generators]).to(
            dtype=self.dtype, device=self.device)

    def image(self, p: torch.Tensor) -> torch.Tensor:
        """Parameters (B, *shape) -> images (B, 3, h, w) in model input space."""
        if self.kind == "fft":
            spec = torch.view_as_complex(p.contiguous()) * self.freq_scale
            x = torch.fft.irfftn(spec, s=(self.h, self.w), dim=(-2, -1), norm="ortho") / 4.0
        else:
            x = p
        if self.decorrelate:
            x = torch.einsum("ij,bjhw->bihw", self.color, x)
        return x * self.scale

    def to_param(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, h, w) -> the parameters whose :meth:`image` they are."""
        x = x.to(self.dtype) / self.scale
        if self.decorrelate:
            x = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.color), x)
        if self.kind == "pixel":
            return x.contiguous()
        spec = torch.fft.rfftn(x * 4.0, dim=(-2, -1), norm="ortho") / self.freq_scale
        return torch.view_as_real(spec).contiguous()


def random_affine(x: torch.Tensor, generators: Sequence[torch.Generator], *, jitter: float = 0.0,
                  scale: Sequence[float] | float = 0.0, rotate: float = 0.0) -> torch.Tensor:
    """Each image moved by its own random translation (a whole number of pixels, uniform in ±``jitter``), scaling (a uniform pick
    among ``scale`` factors, or uniform in 1 ± ``scale`` for a float) and rotation (uniform in ±``rotate``
    degrees), about its centre; zero (the mean image) where the source falls outside. Draws exactly 4
    numbers from each generator per call, whatever the options."""
    b, _, h, w = x.shape
    draws = torch.stack([torch.rand(4, generator=g, dtype=torch.float64) for g in generators])  # (B, 4)
    if isinstance(scale, (int, float)):
        s = 1.0 + (2 * draws[:, 0] - 1) * float(scale)
    else:
        choices = torch.tensor([float(v) for v in scale], dtype=torch.float64) if len(scale) else torch.ones(1, dtype=torch.float64)
        s = choices[(draws[:, 0] * len(choices)).long().clamp(max=len(choices) - 1)]
    a = (2 * draws[:, 1] - 1) * math.radians(rotate)
    tx = torch.round((2 * draws[:, 2] - 1) * jitter)  # whole pixels, as Lucid's jitter
    ty = torch.round((2 * draws[:, 3] - 1) * jitter)
    if jitter == 0 and rotate == 0 and bool((s == 1).all()):
        return x
    # grid_sample maps output coordinates to input coordinates: the inverse of "scale by s, rotate by a, move"
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 1] = cos, sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = -sin * w / h, cos
    theta[:, 0, 2] = -(cos * 2 * tx / w + sin * h / w * 2 * ty / h)
    theta[:, 1, 2] = -(-sin * w / h * 2 * tx / w + cos * 2 * ty / h)
    grid = F.affine_grid(theta.to(x.dtype).to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
