"""The paper's "non-pretrained" baseline (Tables 4, 5): the same network, layers 1–7 reset to random and
trained together with a new softmax on the target training images only (Lightning, SGD).

Training input: a random ``crop``² window of the ``resize``² image, flipped with probability 1/2, minus
the same-size centre of the target set's own mean image (there is no ImageNet here); evaluation: the
centre crop.

Memory: the images are read batch by batch from their files (:mod:`zfnet.data.image_files`, ``workers``
decode processes) in every epoch, the mean image in one pass summing exact integers: a few batches are held,
never the target set. The batches, their order and the mean are those of the former in-memory path.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from zfnet.data.crops import crop_offsets, random_crops
from zfnet.data.image_files import loader, side_loader
from zfnet.models import build

__all__ = ["ScratchClassifier", "fit_predict", "mean_image"]


class ScratchClassifier(pl.LightningModule):
    def __init__(self, model_cfg: dict, num_classes: int, crop: int, mean: torch.Tensor, lr: float = 0.01,
                 momentum: float = 0.9, weight_decay: float = 5e-4, epochs: int = 30):
        super().__init__()
        self.save_hyperparameters(ignore=["mean"])
        self.model = build(num_classes=num_classes, input_size=crop, **model_cfg)
        self.register_buffer("mean", mean.float())  # (3, resize, resize)

    def training_step(self, batch, batch_idx):
        x, y = batch
        x = random_crops(x.float() - self.mean, self.hparams.crop)
        loss = F.cross_entropy(self.model(x), y)
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    @torch.no_grad()
    def predict(self, images, batch_size: int = 128) -> np.ndarray:
        """Predicted labels of uint8 images: a (N, 3, s, s) tensor (``batch_size`` at a time) or an iterable
        of uint8 batches (or of (images, labels) batches)."""
        self.model.eval()
        crop = self.hparams.crop
        batches = images.split(batch_size) if isinstance(images, torch.Tensor) else images
        out = []
        for x in batches:
            x = (x[0] if isinstance(x, (list, tuple)) else x).float() - self.mean
            top, left = crop_offsets(x.shape[-1], crop)[4]
            out.append(self.model(x[..., top : top + crop, left : left + crop]).argmax(1))
        return torch.cat(out).numpy() if out else np.zeros(0, np.int64)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum,
                              weight_decay=self.hparams.weight_decay)
        return {"optimizer": opt,
                "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.hparams.epochs))}


def _dataset(images, labels=None) -> Dataset:
    if isinstance(images, Dataset):
        return images
    n = len(images)
    return TensorDataset(images, torch.as_tensor(labels if labels is not None else np.zeros(n), dtype=torch.long))


def mean_image(data: Dataset, batch_size: int = 256, workers: int = 1) -> torch.Tensor:
    """float64 (3, s, s) mean of a Dataset's uint8 images, one pass: the sum of uint8 values is an exact
    integer, so the result equals ``torch.stack(images).double().mean(0)`` bit for bit."""
    total, n = None, 0
    for x, _ in side_loader(data, batch_size, workers):
        s = x.sum(0, dtype=torch.int64)
        total, n = (s if total is None else total + s), n + len(x)
    if total is None:
        raise ValueError("mean_image: no images")
    return total.double() / n


def fit_predict(train, y_train: np.ndarray | None, test, num_classes: int, model_cfg: dict, crop: int, epochs: int,
                batch_size: int, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4, seed: int = 0,
                progress: bool = False, workers: int = 1) -> np.ndarray:
    """Train from scratch; predicted labels of the test images. ``train`` / ``test``: Datasets of (uint8
    (3, s, s) image, label), e.g. :class:`zfnet.data.image_files.ImageFiles` (``y_train`` then None), or
    uint8 (N, 3, s, s) tensors with ``y_train``."""
    pl.seed_everything(seed, workers=True, verbose=False)
    data = _dataset(train, y_train)
    mean = mean_image(data, workers=workers)
    module = ScratchClassifier(model_cfg, num_classes, crop, mean, lr, momentum, weight_decay, epochs)
    train_loader = loader(data, min(batch_size, len(data)), workers, shuffle=True, drop_last=len(data) > batch_size)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
                         deterministic=True)
    trainer.fit(module, train_loader)
    return module.cpu().predict(side_loader(_dataset(test), 128, workers))
