"""Colours, background and sensor noise of a demo image (see :mod:`zfnet.data.demo`): plain numpy on
float32 RGB canvases with values in [0, 255]; PIL only for one bicubic upsampling of the low-frequency
background noise. All randomness comes from the ``numpy.random.Generator`` passed in."""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image

_F32 = np.float32


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """HSV in [0, 1] (hue wraps) to an RGB float32 triple in [0, 255]."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return np.array([r * 255.0, g * 255.0, b * 255.0], dtype=_F32)


def class_colours(rng: np.random.Generator, hue: float) -> tuple[np.ndarray, np.ndarray]:
    """Primary and secondary colour of a class object.

    The hue is the class hue +- 0.12, but one time in four it is drawn uniformly, so colour
    helps but never decides the class. The secondary colour contrasts in value.
    """
    if rng.random() < 0.25:
        h = rng.random()
    else:
        h = hue + rng.uniform(-0.12, 0.12)
    s = rng.uniform(0.35, 1.0)
    v = rng.uniform(0.45, 1.0)
    c1 = hsv(h, s, v)
    h2 = h + rng.uniform(-0.1, 0.1) if rng.random() < 0.7 else h + 0.5
    v2 = v - rng.uniform(0.3, 0.45) if v > 0.6 else v + rng.uniform(0.3, 0.45)
    c2 = hsv(h2, rng.uniform(0.2, 1.0), v2)
    return c1, c2


def random_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two unrelated colours (distractors)."""
    return hsv(rng.random(), rng.uniform(0.1, 1.0), rng.uniform(0.2, 1.0)), hsv(
        rng.random(), rng.uniform(0.1, 1.0), rng.uniform(0.2, 1.0)
    )


# --------------------------------------------------------------------------------------------
# background
# --------------------------------------------------------------------------------------------


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Clutter-free base: a linear two-colour gradient mixed with low-frequency colour noise."""
    ca = hsv(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.2, 0.95))
    cb = hsv(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.2, 0.95))
    ang = rng.uniform(0.0, 2.0 * math.pi)
    xs = np.linspace(-0.5, 0.5, width, dtype=_F32) * _F32(math.cos(ang) * width / max(width, height))
    ys = np.linspace(-0.5, 0.5, height, dtype=_F32) * _F32(math.sin(ang) * height / max(width, height))
    g = (ys[:, None] + xs[None, :]) + _F32(0.5)  # roughly in [0, 1]
    img = ca[None, None, :] + (cb - ca)[None, None, :] * g[:, :, None]
    gw, gh = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    grid = rng.integers(0, 256, size=(gh, gw, 3), dtype=np.uint8)
    low = np.asarray(Image.fromarray(grid, "RGB").resize((width, height), Image.BICUBIC), dtype=_F32)
    m = _F32(rng.uniform(0.25, 0.6))
    img *= _F32(1.0) - m
    img += low * m
    return img


def add_noise(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Pixel noise and a global contrast/brightness jitter; returns uint8."""
    sigma = _F32(rng.uniform(2.0, 9.0))
    img += rng.standard_normal(img.shape, dtype=_F32) * sigma
    gain = _F32(rng.uniform(0.85, 1.15))
    bias = _F32(rng.uniform(-15.0, 15.0))
    img *= gain
    img += bias
    np.clip(img, 0.0, 255.0, out=img)
    return img.astype(np.uint8)
