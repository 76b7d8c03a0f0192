"""One image, the paper's way (§3): smallest side resized to ``size`` (antialiased), centre crop size×size.

Geometry and filter equal torchvision's ``Resize(size)`` + ``CenterCrop(size)`` on a PIL image (bilinear,
antialiased, the same output-size and crop-offset rounding). For speed, large JPEGs are decoded at a
reduced DCT scale first (``Image.draft``), never below twice the target size, which costs well under
one intensity level on average.

Whatever the file holds is decoded to 8-bit RGB: greyscale, palette, CMYK (also the PNG or CMYK files
named ``.JPEG`` in the real ILSVRC2012 train set), alpha (dropped), 16-bit. Anything unreadable raises
``BadImage`` with the path and reason, so a caller can list it instead of aborting.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

ImageFile.LOAD_TRUNCATED_IMAGES = False


class BadImage(ValueError):
    """An image that cannot be decoded to RGB; ``reason`` is a short machine-readable tag."""

    def __init__(self, path: str, reason: str, detail: str = ""):
        detail = re.sub(r"<[^>]* at 0x[0-9a-f]+>", "<data>", detail)  # no memory addresses: stable reports
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))
        self.path, self.reason, self.detail = path, reason, detail


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(w, h) after resizing the smaller side to ``size`` (torchvision's rounding: int of the long side)."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit greyscale: keep the top 8 bits of 16
        arr = np.asarray(img, dtype=np.uint32)
        shift = 8 if arr.max(initial=0) > 255 else 0
        return Image.fromarray((arr >> shift).clip(0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")  # L, LA, P, RGBA, CMYK (PIL undoes Adobe's inverted CMYK), YCbCr, ...


def open_rgb(source: str | Path | bytes | Image.Image, max_pixels: int | None = 89_478_485) -> Image.Image:
    """Decode ``source`` to an RGB PIL image at full size, or raise ``BadImage``."""
    return _decode(source, max_pixels)[0]


def _decode(source, max_pixels, reduce_to: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """(RGB image, original (w, h)). ``reduce_to``: the smallest side the caller will resize to; JPEGs at
    least four times as large are decoded at a reduced DCT scale keeping the smallest side >= 2 * ``reduce_to``."""
    if isinstance(source, Image.Image):
        return _to_rgb(source), source.size
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as err:
        raise BadImage(name, "unreadable", str(err)) from err
    if not data:
        raise BadImage(name, "empty file")
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = max_pixels
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            original = img.size
            if reduce_to and img.format == "JPEG":
                w, h = img.size
                scale = min(w, h) / (2 * reduce_to)  # keep 2x the target: the resize filter then dominates
                if scale >= 2:
                    img.draft(img.mode, (int(np.ceil(w / scale)), int(np.ceil(h / scale))))
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadImage(name, "decompression bomb", str(err)) from err
    except Image.UnidentifiedImageError as err:
        raise BadImage(name, "not an image", str(err)) from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        reason = "truncated" if "truncated" in str(err) else "corrupt"
        raise BadImage(name, reason, str(err)) from err
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    try:
        return _to_rgb(img), original
    except (OSError, ValueError) as err:
        raise BadImage(name, "unsupported mode", f"{img.mode}: {err}") from err


def center_crop(path_or_pil: str | Path | bytes | Image.Image, size: int = 256, max_pixels: int | None = 89_478_485) -> np.ndarray:
    """Smallest side -> ``size``, centre crop ``size``×``size``; uint8 array (size, size, 3)."""
    img, original = _decode(path_or_pil, max_pixels, reduce_to=size)
    w, h = resized_size(*original, size)
    img = img.resize((w, h), Image.BILINEAR)
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
