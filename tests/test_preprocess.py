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


def photo_like(w, h, seed=0):
    """A large photograph's mix: smooth regions, sharp-edged shapes, a fine texture (stripes near the
    sampling rate) and sensor-like noise: what reduced-scale DCT decoding gets wrong."""
    rng = np.random.default_rng(seed)
    arr = np.asarray(natural_like(w, h, seed)).astype(float)
    yy, xx = np.mgrid[0:h, 0:w]
    arr += (40 * np.sin(0.9 * xx + 0.4 * yy) * (xx > w // 2))[..., None]  # textured right half
    arr += rng.normal(0, 8, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def within_rounding(a, b):
    """Equal up to the rounding of two resampling passes (each rounds to uint8, with other weight precision
    in torch than in PIL): no pixel more than 2 levels off, under 0.05 levels on average."""
    diff = np.abs(a.astype(int) - b.astype(int))
    return a.shape == b.shape and diff.max() <= 2 and diff.mean() <= 0.05


def torchvision_reference(path, size):
    return np.asarray(T.CenterCrop(size)(T.Resize(size)(Image.open(path).convert("RGB"))))


@pytest.mark.parametrize("w,h", [(500, 375), (375, 500), (333, 500), (256, 256), (300, 200), (1024, 768), (1600, 1200), (2400, 1800)])
def test_agrees_with_torchvision(tmp_path, w, h):
    path = tmp_path / "x.JPEG"
    natural_like(w, h, seed=w + h).save(path, quality=90)
    ours, ref = center_crop(path, 256), torchvision_reference(path, 256)
    assert ours.shape == ref.shape == (256, 256, 3) and ours.dtype == np.uint8
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert within_rounding(ours, ref), (diff.max(), diff.mean())


@pytest.mark.parametrize("w,h,mode", [(683, 512, "RGB"), (1024, 768, "RGB"), (768, 1024, "RGB"), (1365, 1024, "RGB"),
                                      (2048, 1536, "RGB"), (1536, 1536, "RGB"), (1024, 768, "L"), (1536, 1152, "CMYK")])
def test_exact_on_large_photographs(tmp_path, w, h, mode):
    """The default is the paper's preprocessing at every size: short sides 2-6x the target, where the
    reduced-scale decode (fast_decode) is about a level off, agree with torchvision to rounding."""
    path = tmp_path / "x.JPEG"
    photo_like(w, h, seed=w * h).convert(mode).save(path, quality=90)
    ref = torchvision_reference(path, 256)
    for ours in (center_crop(path), center_crop(path, 256, fast_decode=False), center_crop(path.read_bytes())):
        diff = np.abs(ours.astype(int) - ref.astype(int))
        assert within_rounding(ours, ref), (diff.mean(), diff.max())


@pytest.mark.parametrize("w,h,size", [(257, 577, 128), (515, 1038, 224), (200, 160, 128), (147, 321, 64)])
def test_exact_where_torch_resampling_is_not(tmp_path, w, h, size):
    """Geometries where torch's uint8 antialiased resize is 0.06-0.2 levels off PIL's on average (its
    int16 weights; Pillow 13 resampling vertically first when the height shrinks more): the default
    preprocessing still agrees with torchvision's PIL transforms."""
    path = tmp_path / "x.JPEG"
    photo_like(w, h, seed=w).save(path, quality=90)
    ours, ref = center_crop(path, size), torchvision_reference(path, size)
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert within_rounding(ours, ref), (diff.mean(), diff.max())


def test_fast_decode_is_opt_in_and_approximate(tmp_path):
    path = tmp_path / "x.JPEG"
    photo_like(1024, 768, seed=3).save(path, quality=90)
    ref = torchvision_reference(path, 256).astype(int)
    diff = np.abs(center_crop(path, 256, fast_decode=True).astype(int) - ref)
    assert 0.05 < diff.mean() < 3, diff.mean()  # decoded at half size: close, but not the reference


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
