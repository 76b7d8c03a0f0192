"""The DataModule: one of the ten crops per sample, minus the mean image, in the paper's 0-255 units."""

import numpy as np
import pytest
import torch

from test_prepare import make_imagenet, settings
from zfnet.data.crops import ten_crops
from zfnet.data.datamodule import ShardDataModule
from zfnet.data.prepare import prepare


class _Trainer:
    training = True
    world_size = 1


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("dm")
    make_imagenet(root / "in", bad=False)
    prepare(settings(), root / "in", root / "out", progress=False)
    return root / "out"


def test_training_samples_are_one_of_ten_mean_subtracted_crops(prepared):
    dm = ShardDataModule(prepared, crop=32, batch_size=15, crops="ten")
    dm.setup()
    images, labels = dm.splits["train"].tensors
    mean = torch.from_numpy(np.load(prepared / "mean.npy")).permute(2, 0, 1)
    candidates = ten_crops(images.double() - mean, 32)  # reference in float64 from the raw arrays
    dm.trainer = _Trainer()
    torch.manual_seed(0)
    seen = set()
    for _ in range(30):
        x, y = dm.on_after_batch_transfer((images, labels), 0)
        assert x.shape == (15, 3, 32, 32) and x.dtype == torch.float32
        assert torch.equal(y, labels)
        for i in range(15):
            err = (candidates[i] - x[i].double()).abs().flatten(1).max(1).values
            k = int(err.argmin())
            assert err[k] < 1e-4
            seen.add(k)
    assert seen == set(range(10))  # every crop of the ten is drawn
    assert x.abs().max() > 20  # paper units: 0-255 pixels minus the mean, not rescaled


def test_validation_batches_stay_whole_and_pixel_scale_applies(prepared):
    dm = ShardDataModule(prepared, crop=32, batch_size=4, pixel_scale=1 / 255)
    dm.setup()
    images, labels = next(iter(dm.val_dataloader()))
    x, _ = dm.on_after_batch_transfer((images, labels), 0)  # no trainer: evaluation path
    mean = np.load(prepared / "mean.npy")
    expected = (images.permute(0, 2, 3, 1).numpy().astype(np.float64) - mean) / 255
    assert x.shape == (4, 3, 40, 40)
    assert np.allclose(x.permute(0, 2, 3, 1).numpy(), expected, atol=1e-6)


def test_bad_settings_are_named(prepared):
    with pytest.raises(ValueError, match="data.crops"):
        ShardDataModule(prepared, crop=32, batch_size=4, crops="five")
    dm = ShardDataModule(prepared, crop=64, batch_size=4)
    with pytest.raises(ValueError, match="data.crop=64"):
        dm.setup()


@pytest.mark.parametrize("in_memory,workers", [(False, 2), (True, 0), (True, 2)])
def test_epoch_covers_the_split_once(prepared, in_memory, workers):
    dm = ShardDataModule(prepared, crop=32, batch_size=5, in_memory=in_memory, num_workers=workers)
    dm.setup()
    from zfnet.data import shards

    images, labels = shards.load_split(prepared, "train")
    keys = {bytes(img.tobytes()): int(l) for img, l in zip(images, labels)}
    orders = []
    loader = dm.train_dataloader()  # made once and iterated every epoch, as Lightning does (persistent workers)
    for _ in range(2):
        seen = []
        for batch_images, batch_labels in loader:
            assert batch_images.shape[1:] == (3, 40, 40) and batch_images.dtype == torch.uint8
            for img, label in zip(batch_images, batch_labels):
                seen.append(bytes(img.permute(1, 2, 0).numpy().tobytes()))
                assert keys[seen[-1]] == int(label)
        if in_memory:  # drop_last: all but the last partial batch
            assert len(seen) == len(keys) - len(keys) % 5 and len(set(seen)) == len(seen) and set(seen) <= set(keys)
        else:  # every training image exactly once, with its label, over 2 workers
            assert sorted(seen) == sorted(keys)
        orders.append(seen)
    assert orders[0] != orders[1]  # reshuffled each epoch
