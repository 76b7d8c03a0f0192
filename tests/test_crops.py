"""Ten crops against torchvision's TenCrop; the batched per-sample crop against the ten crops."""

import torch
from torchvision.transforms import TenCrop

from zfnet.data.crops import batch_crops, crop_offsets, random_crops, ten_crops


def test_ten_crops_equals_torchvision_tencrop_order():
    x = torch.randint(0, 256, (3, 3, 41, 41), dtype=torch.uint8)
    ref = torch.stack([torch.stack(TenCrop(32)(img)) for img in x])
    assert torch.equal(ten_crops(x, 32), ref)


def test_ten_crops_paper_size():
    x = torch.randn(1, 3, 256, 256)
    ref = torch.stack(TenCrop(224)(x[0]))
    assert torch.equal(ten_crops(x, 224)[0], ref)


def test_batch_crops_selects_each_samples_crop():
    x = torch.randn(20, 3, 40, 40)
    index = torch.arange(20) % 10
    out = batch_crops(x, index, 32)
    crops = ten_crops(x, 32)
    for i in range(20):
        assert torch.equal(out[i], crops[i, index[i]])


def test_batch_crops_minus_subtracts_the_same_crop_of_the_mean():
    x = torch.randint(0, 256, (30, 3, 40, 40), dtype=torch.uint8)
    mean = torch.rand(3, 40, 40, dtype=torch.float64) * 255
    index = torch.randint(0, 10, (30,))
    out = batch_crops(x.contiguous(memory_format=torch.channels_last), index, 32, minus=ten_crops(mean, 32).float())
    ref = torch.stack(TenCrop(32)(x.double() - mean), dim=1)[torch.arange(30), index]  # torchvision, float64
    assert out.dtype == torch.float32 and out.shape == (30, 3, 32, 32)
    assert (out.double() - ref).abs().max() < 1e-4


def test_random_crops_are_windows_of_the_image_or_its_mirror():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 10 * 10, dtype=torch.float32).view(2, 3, 10, 10)
    out = random_crops(x, 6, generator=g)
    for i in range(2):
        windows = [src[:, t:t + 6, l:l + 6] for src in (x[i], x[i].flip(-1)) for t in range(5) for l in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_crop_offsets_reject_oversized_crop():
    assert crop_offsets(256, 224)[4] == (16, 16)
    try:
        crop_offsets(100, 112)
    except ValueError as err:
        assert "112" in str(err)
    else:
        raise AssertionError("expected ValueError")
