"""center_crop against torchvision's Resize(256) + CenterCrop(256); every kind of bad input."""

import io

import numpy as np
import pytest
import torchvision.transforms as T
from PIL import Image

from zfnet.data.preprocess import BadImage, center_crop


def natural_like(w, h, seed=0):
    """A smooth image with edges: low-frequency noise plus a few sharp shapes (JPEG-friendly, like photos)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 16 + 2, w // 16 + 2, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize((w, h), Image.BICUBIC)
    arr = np.asarray(img).copy()
    for _ in range(6):
        x0, y0 = rng.integers(0, w - 20), rng.integers(0, h - 20)
        arr[y0:y0 + rng.integers(10, h // 3), x0:x0 + rng.integers(10, w // 3)] = rng.integers(0, 256, 3)
    return Image.fromarray(arr)


def within_rounding(a, b):
    """Equal up to the rounding of two resampling passes (each rounds to uint8, with other weight precision
    in torch than in PIL): no pixel more than 2 levels off, under a tenth of a level on average."""
    diff = np.abs(a.astype(int) - b.astype(int))
    return a.shape == b.shape and diff.max() <= 2 and diff.mean() <= 0.1


def torchvision_reference(path, size):
    return np.asarray(T.CenterCrop(size)(T.Resize(size)(Image.open(path).convert("RGB"))))


@pytest.mark.parametrize("w,h", [(500, 375), (375, 500), (333, 500), (256, 256), (300, 200), (1024, 768), (1600, 1200), (2400, 1800)])
def test_agrees_with_torchvision(tmp_path, w, h):
    path = tmp_path / "x.JPEG"
    natural_like(w, h, seed=w + h).save(path, quality=90)
    ours, ref = center_crop(path, 256), torchvision_reference(path, 256)
    assert ours.shape == ref.shape == (256, 256, 3) and ours.dtype == np.uint8
    diff = np.abs(ours.astype(int) - ref.astype(int))
    if min(w, h) < 3 * 256:
        # no reduced-scale decoding below 3x the target; torch's resampler vs PIL's: equal up to rounding
        assert within_rounding(ours, ref), (diff.max(), diff.mean())
    else:  # reduced-scale JPEG decoding of large images stays within ~1 level
        assert diff.mean() <= 1.0, diff.mean()


def test_accepts_pil_and_small_sizes(tmp_path):
    img = natural_like(200, 160)
    ref = np.asarray(T.CenterCrop(128)(T.Resize(128)(img)))
    assert within_rounding(center_crop(img, 128), ref)


def save(tmp_path, name, img, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path


def test_decodes_every_colour_kind_to_rgb(tmp_path):
    rgb = natural_like(300, 240)
    grey = rgb.convert("L")
    cases = {
        "png_named_jpeg.JPEG": save(tmp_path, "png_named_jpeg.JPEG", rgb, format="PNG"),
        "cmyk.JPEG": save(tmp_path, "cmyk.JPEG", rgb.convert("CMYK"), format="JPEG", quality=95),
        "grey.JPEG": save(tmp_path, "grey.JPEG", grey, format="JPEG"),
        "progressive.JPEG": save(tmp_path, "progressive.JPEG", rgb, format="JPEG", progressive=True),
        "palette.png": save(tmp_path, "palette.png", rgb.convert("P"), format="PNG"),
        "rgba.png": save(tmp_path, "rgba.png", rgb.convert("RGBA"), format="PNG"),
    }
    for name, path in cases.items():
        out = center_crop(path, 128)
        assert out.shape == (128, 128, 3), name
    # colour is decoded correctly: every kind equals torchvision's own decode-and-resize up to rounding
    for name, path in cases.items():
        assert within_rounding(center_crop(path, 128), torchvision_reference(path, 128)), name
    # CMYK -> RGB lands near the original colours; greyscale has three equal channels
    cmyk = center_crop(cases["cmyk.JPEG"], 128).astype(int)
    assert np.abs(cmyk - center_crop(rgb, 128).astype(int)).mean() < 6
    g = center_crop(cases["grey.JPEG"], 128)
    assert np.array_equal(g[..., 0], g[..., 1]) and np.array_equal(g[..., 1], g[..., 2])


def test_sixteen_bit_keeps_the_top_byte(tmp_path):
    arr16 = (np.linspace(0, 65535, 200 * 200).reshape(200, 200)).astype(np.uint16)
    path = tmp_path / "sixteen.png"
    Image.fromarray(arr16).save(path)
    assert Image.open(path).mode.startswith("I")
    out = center_crop(path, 200)
    assert np.abs(out[..., 0].astype(int) - (arr16 >> 8)).max() <= 1


@pytest.mark.parametrize("kind", ["empty", "truncated", "not_an_image", "bomb"])
def test_bad_input_raises_badimage_naming_the_file(tmp_path, kind):
    path = tmp_path / f"{kind}.JPEG"
    buf = io.BytesIO()
    natural_like(400, 300).save(buf, format="JPEG", quality=90)
    data = {"empty": b"", "truncated": buf.getvalue()[: len(buf.getvalue()) // 2],
            "not_an_image": b"<html>404 not found</html>"}.get(kind)
    if kind == "bomb":
        Image.new("L", (3000, 3000)).save(path, format="JPEG")
        with pytest.raises(BadImage) as err:
            center_crop(path, 256, max_pixels=1_000_000)
    else:
        path.write_bytes(data)
        with pytest.raises(BadImage) as err:
            center_crop(path, 256)
    assert str(path) in str(err.value)
    assert err.value.reason == {"empty": "empty file", "truncated": "truncated", "not_an_image": "not an image",
                                "bomb": "decompression bomb"}[kind]
