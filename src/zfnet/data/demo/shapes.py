"""Drawing primitives for the synthetic demo datasets (see :mod:`zfnet.data.demo`).

Everything is plain numpy on float32 RGB canvases with values in [0, 255]; PIL is used only for
one bicubic upsampling of the low-frequency background noise (:mod:`.canvas`: colours, background, noise). All randomness comes from the
``numpy.random.Generator`` passed in, so a scene is a pure function of its generator's seed.

An object is described in a local, normalised frame ``(u, v)``: the object's nominal radius is 1,
``u`` points right and ``v`` points *down* (image convention) before rotation. Shapes are signed
distance functions (negative inside) in that frame, which gives anti-aliased edges for free;
textures are functions of the same frame, so they scale and rotate with the object.

The ``face`` family is special: a frontal, dog-like face (head ellipse, two hanging ears, a light
muzzle, two eyes and a nose). Its landmarks are returned in image pixel coordinates. The subject's
*right* eye sits at local ``u < 0``, i.e. on the image's left side (as seen by the viewer), the
convention of the paper's dog-face correspondence study.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Shape families usable as class objects and as background distractors ("face" is extra).
FAMILIES: tuple[str, ...] = (
    "disc",
    "square",
    "ring",
    "star",
    "triangle",
    "cross",
    "crescent",
    "hexagon",
    "rhombus",
    "blob",
    "arrow",
)
FACE = "face"
TEXTURES: tuple[str, ...] = ("solid", "stripes", "checker", "dots", "grid", "rings", "split", "speckle")

_F32 = np.float32


# --------------------------------------------------------------------------------------------
# objects
# --------------------------------------------------------------------------------------------


@dataclass
class ObjectSpec:
    """Everything needed to paint one object; all random draws happen in :func:`random_object`."""

    family: str
    texture: str
    cx: float
    cy: float
    r: float  # nominal radius in pixels
    angle: float  # radians, rotation of the local frame
    sx: float = 1.0  # anisotropic stretch of the local frame
    sy: float = 1.0
    c1: np.ndarray = field(default_factory=lambda: np.zeros(3, _F32))
    c2: np.ndarray = field(default_factory=lambda: np.zeros(3, _F32))
    freq: float = 2.5  # texture frequency (cycles per unit radius)
    phase: float = 0.0
    shade: float = 0.0  # direction of the soft lighting gradient
    waves: tuple = ()  # blob outline / speckle / fur parameters
    face: dict = field(default_factory=dict)  # face geometry (eyes, nose, ears)


def random_object(
    rng: np.random.Generator,
    family: str,
    texture: str,
    cx: float,
    cy: float,
    r: float,
    colours: tuple[np.ndarray, np.ndarray],
) -> ObjectSpec:
    """Draw the per-instance parameters (rotation, stretch, texture phase, face geometry...)."""
    c1, c2 = colours
    if family == FACE:
        angle = rng.uniform(-0.2, 0.2)  # frontal, small in-plane tilt (about +-11 degrees)
        sx, sy = rng.uniform(0.9, 1.1), rng.uniform(0.92, 1.08)
    else:
        angle = rng.uniform(0.0, 2.0 * math.pi)
        sx, sy = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2)
    waves = tuple(
        (rng.uniform(-4.0, 4.0), rng.uniform(-4.0, 4.0), rng.uniform(0.0, 2.0 * math.pi)) for _ in range(3)
    ) + ((rng.uniform(0.15, 0.28), rng.uniform(0.05, 0.15), rng.uniform(0, 6.3), rng.uniform(0, 6.3)),)
    spec = ObjectSpec(
        family=family,
        texture=texture,
        cx=float(cx),
        cy=float(cy),
        r=float(r),
        angle=float(angle),
        sx=float(sx),
        sy=float(sy),
        c1=c1,
        c2=c2,
        freq=float(rng.uniform(2.0, 3.0)),
        phase=float(rng.uniform(0.0, 2.0 * math.pi)),
        shade=float(rng.uniform(0.0, 2.0 * math.pi)),
        waves=waves,
    )
    if family == FACE:
        spec.face = {
            "ex": rng.uniform(0.28, 0.4),  # half distance between the eyes
            "ey": rng.uniform(-0.32, -0.12),  # eye height (negative = above the centre)
            "er": rng.uniform(0.1, 0.14),  # eye radius
            "ny": rng.uniform(0.28, 0.42),  # nose height
            "nx": rng.uniform(-0.04, 0.04),
            "ear_tilt": rng.uniform(0.15, 0.45),
            "ear_len": rng.uniform(0.5, 0.7),
            "head_ax": rng.uniform(0.74, 0.86),
        }
    return spec


# signed distance helpers (local frame, negative inside) --------------------------------------


def _box(u, v, bx, by):
    qx = np.abs(u) - bx
    qy = np.abs(v) - by
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0)


def _ngon(u, v, n, radius=1.0, phase=-math.pi / 2):
    """Regular n-gon with circumradius ``radius`` and a vertex at angle ``phase``."""
    d = None
    for i in range(n):
        a = phase + (2 * i + 1) * math.pi / n
        di = u * _F32(math.cos(a)) + v * _F32(math.sin(a))
        d = di if d is None else np.maximum(d, di)
    return d - _F32(radius * math.cos(math.pi / n))


def _convex(u, v, pts):
    """Convex polygon given counter-clockwise (in u-right, v-down coordinates: clockwise on screen)."""
    d = None
    n = len(pts)
    for i in range(n):
        (x0, y0), (x1, y1) = pts[i], pts[(i + 1) % n]
        ex, ey = x1 - x0, y1 - y0
        ln = math.hypot(ex, ey)
        nx, ny = ey / ln, -ex / ln  # outward normal for this winding
        di = (u - _F32(x0)) * _F32(nx) + (v - _F32(y0)) * _F32(ny)
        d = di if d is None else np.maximum(d, di)
    return d


def _ellipse(u, v, ax, ay):
    k = np.sqrt((u / _F32(ax)) ** 2 + (v / _F32(ay)) ** 2)
    return (k - 1) * _F32(min(ax, ay))


def _sdf(family, u, v, spec: ObjectSpec):
    if family == "disc":
        return np.sqrt(u * u + v * v) - 1
    if family == "square":
        return _box(u, v, 0.82, 0.82)
    if family == "ring":
        return np.abs(np.sqrt(u * u + v * v) - 0.74) - 0.26
    if family == "star":
        rho = np.sqrt(u * u + v * v)
        th = np.arctan2(v, u)
        t = np.abs(np.mod(th * _F32(5 / (2 * math.pi)), 1.0) - 0.5) * 2  # 1 at the tips
        return (rho - (0.45 + 0.6 * t)) * 0.6
    if family == "triangle":
        return _ngon(u, v, 3, radius=1.15)
    if family == "cross":
        return np.minimum(_box(u, v, 1.0, 0.3), _box(u, v, 0.3, 1.0))
    if family == "crescent":
        d1 = np.sqrt(u * u + v * v) - 1
        d2 = np.sqrt((u - 0.5) ** 2 + v * v) - 0.8
        return np.maximum(d1, -d2)
    if family == "hexagon":
        return _ngon(u, v, 6, radius=1.0, phase=0.0)
    if family == "rhombus":
        return (np.abs(u) + np.abs(v) / 0.55 - 1.05) * 0.5
    if family == "blob":
        a1, a2, p1, p2 = spec.waves[3]
        rho = np.sqrt(u * u + v * v)
        th = np.arctan2(v, u)
        rad = 0.85 * (1 + a1 * np.sin(3 * th + p1) + a2 * np.sin(5 * th + p2))
        return (rho - rad) * 0.7
    if family == "arrow":
        shaft = _box(u + 0.3, v, 0.6, 0.2)
        head = _convex(u, v, [(1.05, 0.0), (0.15, 0.62), (0.15, -0.62)])
        return np.minimum(shaft, head)
    raise ValueError(f"unknown shape family {family!r}")


def _texture(texture, u, v, spec: ObjectSpec):
    f = _F32(spec.freq)
    p = _F32(spec.phase)
    if texture == "solid":
        return None
    if texture == "stripes":
        return np.clip(0.5 + 2.5 * np.sin(u * f * _F32(math.pi) + p), 0, 1)
    if texture == "checker":
        s = np.sin(u * f * _F32(math.pi) + p) * np.sin(v * f * _F32(math.pi) + p)
        return np.clip(0.5 + 6 * s, 0, 1)
    if texture == "dots":
        fu = np.mod(u * f * 1.2 + p, 1.0) - 0.5
        fv = np.mod(v * f * 1.2 + p, 1.0) - 0.5
        return np.clip((0.3 - np.sqrt(fu * fu + fv * fv)) * 12 + 0.5, 0, 1)
    if texture == "grid":
        fu = np.abs(np.mod(u * f + p, 1.0) - 0.5)
        fv = np.abs(np.mod(v * f + p, 1.0) - 0.5)
        return np.clip((np.maximum(fu, fv) - 0.36) * 20 + 0.5, 0, 1)
    if texture == "rings":
        rho = np.sqrt(u * u + v * v)
        return np.clip(0.5 + 2.5 * np.sin(rho * f * _F32(2 * math.pi) + p), 0, 1)
    if texture == "split":
        return np.clip(0.5 + (u * _F32(math.cos(p)) + v * _F32(math.sin(p))) * 20, 0, 1)
    if texture in ("speckle", "fur"):
        s = None
        scale = 3.0 if texture == "speckle" else 1.3
        for a, b, ph in spec.waves[:3]:
            w = np.sin((u * _F32(a) + v * _F32(b)) * _F32(scale) + _F32(ph))
            s = w if s is None else s + w
        if texture == "fur":
            return np.clip(0.5 + 0.25 * s, 0, 1)
        return np.clip(0.5 + 3 * s, 0, 1)
    raise ValueError(f"unknown texture {texture!r}")


def _alpha(d, scale):
    """Anti-aliased coverage from a signed distance in local units (``scale`` = pixels per unit)."""
    return np.clip(_F32(0.5) - d * _F32(scale), 0, 1)


def _blend(patch, alpha, colour):
    """patch = patch * (1 - alpha) + colour * alpha, colour either (3,) or (h, w, 3)."""
    a = alpha[:, :, None]
    patch *= 1 - a
    if colour.ndim == 1:
        patch += a * colour[None, None, :]
    else:
        patch += a * colour


def frame(spec: ObjectSpec, h: int, w: int):
    """The window of an (h, w) image that ``spec`` may cover and its local frame there.

    Returns ``(x0, y0, x1, y1, u, v, px)`` (window ``[y0:y1, x0:x1]``; ``u, v`` float32 local
    coordinates of its pixel centres; ``px`` pixels per local unit) or None if the window is empty.
    """
    ext = 1.75 if spec.family == FACE else 1.3
    reach = spec.r * ext * max(spec.sx, spec.sy)
    x0 = max(0, int(math.floor(spec.cx - reach)))
    x1 = min(w, int(math.ceil(spec.cx + reach)) + 1)
    y0 = max(0, int(math.floor(spec.cy - reach)))
    y1 = min(h, int(math.ceil(spec.cy + reach)) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    dx = np.arange(x0, x1, dtype=_F32) + _F32(0.5 - spec.cx)
    dy = np.arange(y0, y1, dtype=_F32) + _F32(0.5 - spec.cy)
    ca, sa = math.cos(spec.angle), math.sin(spec.angle)
    # local frame: p = cx + r * R(angle) @ (u * sx, v * sy)
    u = (dx[None, :] * _F32(ca) + dy[:, None] * _F32(sa)) * _F32(1.0 / (spec.r * spec.sx))
    v = (dy[:, None] * _F32(ca) - dx[None, :] * _F32(sa)) * _F32(1.0 / (spec.r * spec.sy))
    px = spec.r * min(spec.sx, spec.sy)  # pixels per local unit (conservative)
    return x0, y0, x1, y1, u, v, px


def paint(img: np.ndarray, spec: ObjectSpec):
    """Paint ``spec`` into the float32 canvas ``img`` (H, W, 3) in place.

    Returns ``(box, landmarks)``: ``box`` = (xmin, ymin, xmax, ymax), 0-based inclusive pixel
    indices of the pixels at least half covered by the object (clipped to the image) or None if
    nothing of it is visible; ``landmarks`` = dict of (x, y) image coordinates for the face
    family (left_eye, right_eye, nose, where left/right are the subject's), else None.
    """
    fr = frame(spec, *img.shape[:2])
    if fr is None:
        return None, None
    x0, y0, x1, y1, u, v, px = fr
    patch = img[y0:y1, x0:x1]
    landmarks = None
    if spec.family == FACE:
        cover, landmarks = _paint_face(patch, u, v, px, spec)
    else:
        d = _sdf(spec.family, u, v, spec)
        cover = _alpha(d, px)
        t = _texture(spec.texture, u, v, spec)
        if t is None:
            col = np.broadcast_to(spec.c1, patch.shape).astype(_F32)
        else:
            col = spec.c1[None, None, :] + (spec.c2 - spec.c1)[None, None, :] * t[:, :, None]
        shade = 1 + _F32(0.18) * (u * _F32(math.cos(spec.shade)) + v * _F32(math.sin(spec.shade)))
        col = col * shade[:, :, None]
        _blend(patch, cover, col)
    ys, xs = np.nonzero(cover >= 0.5)
    if len(xs) == 0:
        return None, landmarks
    box = (int(xs.min()) + x0, int(ys.min()) + y0, int(xs.max()) + x0, int(ys.max()) + y0)
    if landmarks is not None:
        landmarks = {k: _to_image(spec, lu, lv) for k, (lu, lv) in landmarks.items()}
    return box, landmarks


def _to_image(spec: ObjectSpec, lu: float, lv: float) -> tuple[float, float]:
    ca, sa = math.cos(spec.angle), math.sin(spec.angle)
    a, b = lu * spec.sx * spec.r, lv * spec.sy * spec.r
    return spec.cx + ca * a - sa * b, spec.cy + sa * a + ca * b


def _paint_face(patch, u, v, px, spec: ObjectSpec):
    g = spec.face
    c1, c2 = spec.c1, spec.c2
    ax = g["head_ax"]
    # ears: hang down beside the head, tilted outwards, drawn under the head
    cover = None
    for side in (-1.0, 1.0):
        t = -side * g["ear_tilt"]
        ct, st = math.cos(t), math.sin(t)
        eu, ev = u - _F32(side * (ax + 0.02)), v - _F32(0.1)
        ru = eu * _F32(ct) + ev * _F32(st)
        rv = ev * _F32(ct) - eu * _F32(st)
        a = _alpha(_ellipse(ru, rv, 0.27, g["ear_len"]), px)
        _blend(patch, a, c2)
        cover = a if cover is None else np.maximum(cover, a)
    # head with a soft fur texture
    a = _alpha(_ellipse(u, v, ax, 1.0), px)
    fur = _texture("fur", u, v, spec)
    col = c1[None, None, :] * (_F32(0.75) + _F32(0.4) * fur[:, :, None])
    _blend(patch, a, col)
    cover = np.maximum(cover, a)
    # light muzzle
    muzzle = np.minimum(c1 * 0.4 + 160.0, 255.0).astype(_F32)
    _blend(patch, _alpha(_ellipse(u, v - _F32(0.45), 0.42, 0.34), px), muzzle)
    dark = np.array([25.0, 20.0, 18.0], _F32)
    white = np.array([235.0, 235.0, 230.0], _F32)
    er = g["er"]
    for side in (-1.0, 1.0):
        eu = side * g["ex"]
        _blend(patch, _alpha(np.sqrt((u - _F32(eu)) ** 2 + (v - _F32(g["ey"])) ** 2) - _F32(er), px), dark)
        hl = np.sqrt((u - _F32(eu + er * 0.3)) ** 2 + (v - _F32(g["ey"] - er * 0.3)) ** 2) - _F32(er * 0.3)
        _blend(patch, _alpha(hl, px), white)
    _blend(patch, _alpha(_ellipse(u - _F32(g["nx"]), v - _F32(g["ny"]), 0.17, 0.12), px), dark)
    landmarks = {
        # subject's right eye = image left (u < 0)
        "right_eye": (-g["ex"], g["ey"]),
        "left_eye": (g["ex"], g["ey"]),
        "nose": (g["nx"], g["ny"]),
    }
    return cover, landmarks


# regions of a painted object (exact ground truth for the Broden-layout probe set) ------------

FACE_REGIONS = ("ear", "head", "muzzle", "eye", "highlight", "nose")  # painting order, 1-based ids


def regions(spec: ObjectSpec, h: int, w: int):
    """Which pixels of an (h, w) image :func:`paint` gives to which part of ``spec``.

    A pixel belongs to a layer of the object where that layer's coverage is at least 0.5 (the box
    rule of :func:`paint`), later layers painted over earlier ones. Returns ``(x0, y0, x1, y1, layer)``
    or None: ``layer`` is a uint8 map of the window ``[y0:y1, x0:x1]``. For the face family its values
    are 1 + the index in :data:`FACE_REGIONS` (0 = not the object); for the other families 1 = the
    primary colour ``c1``, 2 = the secondary colour ``c2`` (texture value >= 0.5).
    """
    fr = frame(spec, h, w)
    if fr is None:
        return None
    x0, y0, x1, y1, u, v, px = fr
    layer = np.zeros(u.shape, np.uint8)
    if spec.family != FACE:
        cover = _alpha(_sdf(spec.family, u, v, spec), px) >= 0.5
        t = _texture(spec.texture, u, v, spec)
        layer[cover] = 1
        if t is not None:
            layer[cover & (t >= 0.5)] = 2
        return x0, y0, x1, y1, layer
    g = spec.face
    ax = g["head_ax"]
    for side in (-1.0, 1.0):
        t = -side * g["ear_tilt"]
        ct, st = math.cos(t), math.sin(t)
        eu, ev = u - _F32(side * (ax + 0.02)), v - _F32(0.1)
        ru = eu * _F32(ct) + ev * _F32(st)
        rv = ev * _F32(ct) - eu * _F32(st)
        layer[_alpha(_ellipse(ru, rv, 0.27, g["ear_len"]), px) >= 0.5] = 1
    layer[_alpha(_ellipse(u, v, ax, 1.0), px) >= 0.5] = 2
    layer[_alpha(_ellipse(u, v - _F32(0.45), 0.42, 0.34), px) >= 0.5] = 3
    er = g["er"]
    for side in (-1.0, 1.0):
        eu = side * g["ex"]
        layer[_alpha(np.sqrt((u - _F32(eu)) ** 2 + (v - _F32(g["ey"])) ** 2) - _F32(er), px) >= 0.5] = 4
        hl = np.sqrt((u - _F32(eu + er * 0.3)) ** 2 + (v - _F32(g["ey"] - er * 0.3)) ** 2) - _F32(er * 0.3)
        layer[_alpha(hl, px) >= 0.5] = 5
    layer[_alpha(_ellipse(u - _F32(g["nx"]), v - _F32(g["ny"]), 0.17, 0.12), px) >= 0.5] = 6
    return x0, y0, x1, y1, layer
