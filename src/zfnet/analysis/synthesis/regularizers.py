"""Image priors of network-centric synthesis (the survey: Hadji & Wildes,
"What Do We Understand About Convolutional Networks?", arXiv:1803.08834, §4.1.1), per image of a batch.

Every regularizer returns one value per image, ``(B,)``, so a batch of independent images is a sum of
independent problems. Values are taken on the image divided by ``scale`` (the mean-subtracted input's
typical magnitude), so the weights do not depend on the pixel range.

* :func:`l2`: ``mean((x / scale)^2)`` (Simonyan et al. 2014's ``λ‖I‖²``, per pixel).
* :func:`tv`: Mahendran & Vedaldi's β-total variation, ``mean(((Δx)^2 + (Δy)^2 + eps)^(β/2))`` over the
  (H-1)x(W-1) positions that have both a right and a lower neighbour, channels summed inside.
* :func:`alpha_norm`: Mahendran & Vedaldi's α-norm ``mean(|x / scale|^α)`` (the norm bound).
* :func:`gaussian_blur`: Yosinski et al.'s periodic blur (a separable Gaussian, reflect padding).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["alpha_norm", "gaussian_blur", "l2", "tv"]


def l2(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Mean squared pixel of each image of ``x`` (B, C, H, W), in units of ``scale``: (B,)."""
    return (x / scale).pow(2).flatten(1).mean(1)


def alpha_norm(x: torch.Tensor, alpha: float = 6.0, scale: float = 1.0) -> torch.Tensor:
    """Mean ``|x / scale|^alpha`` per image (Mahendran & Vedaldi's bound on the pixel range): (B,)."""
    return (x / scale).abs().pow(alpha).flatten(1).mean(1)


def tv(x: torch.Tensor, beta: float = 2.0, scale: float = 1.0, eps: float = 1e-8) -> torch.Tensor:
    """β-total variation per image (Mahendran & Vedaldi 2015, eq. 4), in units of ``scale``: (B,)."""
    y = x / scale
    dx = y[..., :-1, 1:] - y[..., :-1, :-1]
    dy = y[..., 1:, :-1] - y[..., :-1, :-1]
    return (dx.pow(2) + dy.pow(2) + eps).pow(beta / 2).sum(1).flatten(1).mean(1)


def _kernel(sigma: float, dtype, device) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each channel of each image blurred by a Gaussian of ``sigma`` pixels (reflect padding), same shape."""
    if sigma <= 0:
        return x
    b, c, h, w = x.shape
    k = _kernel(sigma, x.dtype, x.device)
    r = (k.numel() - 1) // 2
    y = x.reshape(b * c, 1, h, w)
    mode = "reflect" if r < min(h, w) else "replicate"
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode=mode), k.reshape(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode=mode), k.reshape(1, 1, -1, 1))
    return y.reshape(b, c, h, w)
