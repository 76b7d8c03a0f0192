"""One image, the paper's way (§3): smallest side resized to ``size`` (antialiased), centre crop size×size.

Exact by default: the result is torchvision's ``Resize(size)`` + ``CenterCrop(size)`` on the PIL RGB image
(what the paper-era pipelines ran), because it is computed by the same calls: PIL decodes the full image,
PIL's bilinear antialiased ``resize`` to the size torchvision computes, the crop at torchvision's
offsets. Nothing faster was exact: torch's uint8 antialiased ``interpolate`` (what ``Resize`` runs on
tensors; 2-4x faster) is up to 0.2 levels off on average on some images (int16 filter weights, and since
Pillow 13 PIL resamples vertically first when the height shrinks much more than the width: a
version-dependent pass order); a reduced-scale JPEG decode, about a level off.

``fast_decode=True`` (the prepare stage's ``prepare.fast_decode``; opt-in) is the fast approximation:
baseline JPEGs decoded by ``torchvision.io.decode_jpeg`` (libjpeg-turbo) straight into an RGB array,
large JPEGs at a reduced DCT scale (PIL's ``Image.draft``: at half size where that keeps 1.5 times the
target, a quarter or an eighth where that keeps twice the target), resized by torch's uint8 antialiased
interpolation. It is not the paper's preprocessing: on photographs whose short side is 2-6x the target
it differs from torchvision's by about a level on average and by tens of levels at single pixels
(edges); benchmarks/results/prepare.json has both modes' agreement and speed.

Whatever the file holds is decoded to 8-bit RGB: greyscale, palette, CMYK (also the PNG or CMYK files
named ``.JPEG`` in the real ILSVRC2012 train set), alpha (dropped), 16-bit. Anything unreadable raises
``BadImage`` with the path and reason (a directory or a broken symlink where a file was listed included),
so a caller can list it instead of aborting.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile
from torchvision.io import ImageReadMode, decode_jpeg

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


def _open(data: bytes, name: str, max_pixels) -> Image.Image:
    """PIL's lazy open (header only), with the decompression-bomb guard."""
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = max_pixels
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadImage(name, "decompression bomb", str(err)) from err
    except Image.UnidentifiedImageError as err:
        raise BadImage(name, "not an image", str(err)) from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise BadImage(name, "corrupt", str(err)) from err
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit


def _unreadable_reason(path: Path) -> str:
    """Why ``path`` could not be read (only asked after a read failed: no extra system calls per image)."""
    if path.is_symlink() and not path.exists():
        return "broken symlink"
    if path.exists() and not path.is_file():
        return "not a file"  # a directory, a FIFO, a device
    if not path.exists():
        return "missing"
    return "unreadable"


def _read(source) -> tuple[bytes, str]:
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as err:
        raise BadImage(name, _unreadable_reason(Path(source)), str(err)) from err
    if not data:
        raise BadImage(name, "empty file")
    return data, name


def _decode(source, max_pixels, reduce_to: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """(RGB image, original (w, h)). ``reduce_to``: the smallest side the caller will resize to; large JPEGs
    are decoded at a reduced DCT scale (``_draft_factor``)."""
    if isinstance(source, Image.Image):
        return _to_rgb(source), source.size
    data, name = _read(source)
    img = _open(data, name, max_pixels)
    return _load(img, name, reduce_to), img.size


def _draft_factor(img: Image.Image, reduce_to: int | None) -> int:
    """The DCT scale-down factor (1, 2, 4 or 8) to decode a JPEG at, before resizing to ``reduce_to``:
    1/2 keeps at least 1.5x the target, 1/4 and 1/8 (cruder filters) at least 2x; 1 for other images."""
    if not reduce_to or img.format != "JPEG":
        return 1
    short = min(img.size)
    for factor in (8, 4):
        if short // factor >= 2 * reduce_to:
            return factor
    return 2 if short // 2 >= 1.5 * reduce_to else 1


def _load(img: Image.Image, name: str, reduce_to: int | None) -> Image.Image:
    """Decode an opened image (at the reduced DCT scale of ``_draft_factor``) to RGB."""
    try:
        factor = _draft_factor(img, reduce_to)
        if factor > 1:
            w, h = img.size
            img.draft(img.mode, (w // factor, h // factor))  # PIL takes the largest factor that fits this size
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        reason = "truncated" if "truncated" in str(err) else "corrupt"
        raise BadImage(name, reason, str(err)) from err
    try:
        return _to_rgb(img)
    except (OSError, ValueError) as err:
        raise BadImage(name, "unsupported mode", f"{img.mode}: {err}") from err


def _decode_tensor(source, max_pixels, reduce_to: int | None) -> tuple[torch.Tensor, tuple[int, int]]:
    """(uint8 (3, H, W) RGB tensor in HWC memory, original (w, h)) for ``center_crop``.

    Colour and greyscale JPEGs go to libjpeg-turbo through ``decode_jpeg`` at full size; anything it
    refuses (truncated, 12-bit, ...) falls back to PIL, which decodes it or names what is wrong.
    ``reduce_to``: the target's smallest side when a reduced-scale decode is allowed (``fast_decode``),
    else None (exact)."""
    if isinstance(source, Image.Image):
        rgb, size = _to_rgb(source), source.size
    else:
        data, name = _read(source)
        img = _open(data, name, max_pixels)
        size = img.size
        if img.format == "JPEG" and img.mode in ("RGB", "L") and _draft_factor(img, reduce_to) == 1:
            try:
                x = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
                if (x.shape[2], x.shape[1]) == size:
                    return x, size
            except RuntimeError:
                pass  # PIL decodes it, or raises BadImage with the reason
        rgb = _load(img, name, reduce_to)
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1), size


def crop_box(resized: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of torchvision's ``CenterCrop(size)`` in an image of size ``resized``."""
    w, h = resized
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return left, top, left + size, top + size


def resize_center_crop(x: torch.Tensor, original: tuple[int, int], size: int) -> torch.Tensor:
    """uint8 (3, h, w) -> uint8 (size, size, 3): torchvision's Resize(size) + CenterCrop(size) on a tensor
    (torch's uint8 antialiased kernel: the fast path; see the module for how far it is from PIL's).

    ``original`` is the image's size before any reduced-scale decoding (it sets the output geometry)."""
    w, h = resized_size(*original, size)
    # channels-last uint8 is the layout of torch's vectorized antialiased kernel (no float round trip)
    x = x.unsqueeze(0).contiguous(memory_format=torch.channels_last)
    x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    left, top, right, bottom = crop_box((w, h), size)
    return x[0, :, top:bottom, left:right].permute(1, 2, 0)


def center_crop(path_or_pil: str | Path | bytes | Image.Image, size: int = 256, max_pixels: int | None = 89_478_485,
                fast_decode: bool = False) -> np.ndarray:
    """Smallest side -> ``size``, centre crop ``size``×``size``; uint8 array (size, size, 3).

    Exactly torchvision's ``CenterCrop(size)(Resize(size)(image.convert("RGB")))`` unless ``fast_decode``:
    then large JPEGs are decoded at a reduced DCT scale and resized by torch (faster, about a level off on
    average; see the module)."""
    if fast_decode:
        x, original = _decode_tensor(path_or_pil, max_pixels, reduce_to=size)
        return np.ascontiguousarray(resize_center_crop(x, original, size).numpy())
    rgb, original = _decode(path_or_pil, max_pixels)
    resized = resized_size(*original, size)
    if rgb.size != resized:  # torchvision's Resize: PIL's resize, bilinear (antialiased: PIL always is)
        rgb = rgb.resize(resized, Image.BILINEAR)
    return np.array(rgb.crop(crop_box(resized, size)), dtype=np.uint8)
