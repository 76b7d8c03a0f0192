"""Streaming evaluation and streaming lengths (``data.in_memory: false``).

- Validation streamed from the shards gives the same top-1/top-5, ten-crop and loss numbers as an independent
  computation (torchvision's TenCrop on the images read by the old whole-split reader, the model applied per
  image) and as the in-memory path, with batch sizes that do not divide the set, with and without workers.
- Each process's slice under DDP: disjoint, covering, the same number of batches on every rank.
- Ten-crop logits in chunks equal those of one forward over all crops, with no forward above the chunk.
- The streaming training split's length (and its loader's) is what an epoch actually yields.
"""

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchvision.transforms import TenCrop

from test_prepare import make_imagenet, settings
from zfnet.data import shards
from zfnet.data.datamodule import EvalShards, SampleIndex, ShardDataModule, StreamingShards
from zfnet.data.prepare import prepare
from zfnet.training.lightning_module import Classifier

pytestmark = pytest.mark.usefixtures("one_thread")

CROP = 64
SIZE = 72
MODEL = {"name": "zfnet", "width": 0.125, "init": "kaiming"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    make_imagenet(root / "in", per_class=5, val_per_class=5, bad=False)  # 15 train, 15 val images; shards of 4
    prepare(settings(size=SIZE), root / "in", root / "out", progress=False)
    return root / "out"


@pytest.fixture(scope="module")
def module(prepared):
    torch.manual_seed(0)
    return Classifier(MODEL, num_classes=3, crop=CROP).eval()


@pytest.fixture(scope="module")
def reference(prepared, module):
    """Errors and loss computed without the data module or the validation step: the old whole-split reader,
    the mean image subtracted in float64, torchvision's TenCrop per image, the model per image."""
    images, labels = shards.load_split(prepared, "val")
    mean = np.load(prepared / "mean.npy")
    tencrop = TenCrop(CROP)
    centre, avg = [], []
    with torch.no_grad():
        for image in images:
            x = torch.from_numpy((image.astype(np.float64) - mean).astype(np.float32)).permute(2, 0, 1)
            logits = torch.cat([module.model(c[None]) for c in tencrop(x)])  # (10, classes), one crop at a time
            centre.append(logits[4])
            avg.append(logits.softmax(-1).mean(0))
    y = torch.from_numpy(labels)
    centre, avg = torch.stack(centre), torch.stack(avg)
    assert len(set(centre.argmax(1).tolist())) > 1  # the model tells images apart: a wrong image would show

    def err(scores, k):
        return 1 - (scores.topk(k, 1).indices == y[:, None]).any(1).double().mean().item()

    return {"val/top1_error": err(centre, 1), "val/top5_error": err(centre, 3),
            "val_10crop/top1_error": err(avg, 1), "val_10crop/top5_error": err(avg, 3),
            "val/loss": F.cross_entropy(centre, y).item()}


def _validate(prepared, module, batch_size, in_memory, workers=0):
    dm = ShardDataModule(prepared, crop=CROP, batch_size=batch_size, in_memory=in_memory, num_workers=workers)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False)
    (metrics,) = trainer.validate(module, datamodule=dm, verbose=False)
    return dm, metrics


@pytest.mark.parametrize("batch_size,workers", [(4, 0), (7, 2), (16, 0)])
def test_streaming_validation_matches_torchvision_reference_and_in_memory(prepared, module, reference,
                                                                         batch_size, workers):
    dm, streamed = _validate(prepared, module, batch_size, in_memory=False, workers=workers)
    assert isinstance(dm.splits["val"], SampleIndex)  # nothing held: an index of byte ranges
    _, in_memory = _validate(prepared, module, batch_size, in_memory=True)
    for key, expected in reference.items():
        assert streamed[key] == pytest.approx(expected, abs=1e-5), key
        assert in_memory[key] == pytest.approx(expected, abs=1e-5), key
    assert 0 < reference["val/top1_error"] < 1  # neither all right nor all wrong: a miscount would show


@pytest.mark.parametrize("batch_size,workers", [(4, 0), (4, 2), (6, 3)])
def test_streamed_batches_are_the_split_in_order(prepared, batch_size, workers):
    images, labels = shards.load_split(prepared, "val")
    dm = ShardDataModule(prepared, crop=CROP, batch_size=batch_size, in_memory=False, num_workers=workers)
    dm.setup()
    batches = list(dm.val_dataloader())
    assert len(batches) == len(dm.val_dataloader()) == math.ceil(len(labels) / batch_size)
    assert all(0 < len(b[1]) <= batch_size for b in batches)
    got = torch.cat([b[0] for b in batches])
    assert got.dtype == torch.uint8 and got.shape == (len(labels), 3, SIZE, SIZE)
    assert np.array_equal(got.permute(0, 2, 3, 1).numpy(), images)
    assert np.array_equal(torch.cat([b[1] for b in batches]).numpy(), labels)


@pytest.mark.parametrize("world,batch_size", [(2, 4), (3, 2), (4, 3), (4, 1), (15, 5)])
def test_ranks_take_disjoint_slices_in_equal_batch_counts(prepared, world, batch_size):
    images, labels = shards.load_split(prepared, "val")
    index = SampleIndex(shards.shards(prepared, "val"))
    parts = [EvalShards(index, batch_size, rank, world) for rank in range(world)]
    counts = {len(p) for p in parts}
    # equal on every rank; batch size 1 cannot even out 15 images over 4 ranks (documented)
    assert len(counts) == 1 or (batch_size == 1 and max(counts) - min(counts) == 1)
    seen = []
    for part in parts:
        for batch_images, batch_labels in part:
            assert 0 < len(batch_labels) <= batch_size
            seen += [(img.permute(1, 2, 0).numpy().tobytes(), int(l)) for img, l in zip(batch_images, batch_labels)]
    # concatenated rank by rank: every image exactly once, in shard order
    assert seen == [(img.tobytes(), int(l)) for img, l in zip(images, labels)]
    with pytest.raises(ValueError, match="16 processes"):
        EvalShards(index, 4, 0, 16)


@pytest.mark.parametrize("chunk", [10, 30, 70])
def test_chunked_ten_crop_equals_one_forward(prepared, chunk):
    torch.manual_seed(1)
    chunked = Classifier(MODEL, num_classes=3, crop=CROP, eval_crop_chunk=chunk).eval()
    whole = Classifier(MODEL, num_classes=3, crop=CROP, eval_crop_chunk=10_000).eval()
    whole.load_state_dict(chunked.state_dict())
    x = torch.rand(13, 3, SIZE, SIZE) * 255 - 120
    sizes = []
    chunked.model.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    with torch.no_grad():
        got = chunked.ten_crop_logits(x)
        expected = whole.ten_crop_logits(x)
        # independent: torchvision's TenCrop, each image's ten crops through the model
        ref = torch.stack([whole.model(torch.stack(TenCrop(CROP)(img))) for img in x])
    assert got.shape == (13, 10, 3)
    assert max(sizes) <= chunk and sum(sizes) == 130
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    assert torch.allclose(got, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="train.eval_crop_chunk"):
        Classifier(MODEL, num_classes=3, crop=CROP, eval_crop_chunk=9)


def _produced(loader):
    batches = samples = 0
    for _images, labels in loader:
        batches += 1
        samples += len(labels)
    return batches, samples


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_streaming_train_length_is_what_an_epoch_yields(prepared, workers):
    dm = ShardDataModule(prepared, crop=CROP, batch_size=3, in_memory=False, num_workers=workers)
    dm.setup()
    data, loader = dm.splits["train"], dm.train_dataloader()
    assert len(data) == 15
    assert _produced(loader) == (len(loader), 15)  # 4 shards of 4, 4, 4, 3 images
    if workers == 2:  # each worker ends with its own partial batch: 8 + 7 images in 3 + 3 batches, not 5
        assert len(loader) == 6


def test_streaming_train_length_per_rank(prepared, monkeypatch):
    """Under DDP each rank streams shards rank::world (webdataset's split_by_node reads RANK / WORLD_SIZE)."""
    urls = [str(p) for p in shards.shards(prepared, "train")]
    monkeypatch.setenv("WORLD_SIZE", "3")
    for rank, expected in enumerate([4 + 3, 4, 4]):
        monkeypatch.setenv("RANK", str(rank))
        data = StreamingShards(urls)
        loader = torch.utils.data.DataLoader(data, batch_size=3, collate_fn=lambda s: list(zip(*s)))
        assert len(data) == expected
        assert sum(len(labels) for _images, labels in loader) == expected


def test_shard_sizes_with_and_without_sidecars(prepared, tmp_path):
    paths = shards.shards(prepared, "train")
    counts = [sum(1 for _ in shards.iter_shard(p)) for p in paths]
    assert shards.shard_sizes(paths) == counts == [4, 4, 4, 3]
    bare = []
    for p in paths:  # shards without the prepare stage's sidecars: counted from the tar headers
        (tmp_path / p.name).write_bytes(p.read_bytes())
        bare.append(tmp_path / p.name)
    assert shards.shard_sizes(bare) == counts
