"""Fine-tuning with Lightning: SGD over the strategy's parameter groups, cosine-annealed, on uint8 images
read batch by batch (:mod:`zfnet.data.image_files`: memory is a few batches, not the image set).

Training input: a random ``crop``² window of the ``resize``² image, flipped with probability 1/2, minus the
source model's mean (and divided by ``std`` for torchvision-style models); evaluation: the centre crop.
Frozen batch-norm layers stay in eval mode, so their running statistics do not move either. The per-epoch
history (train loss / accuracy, validation loss / accuracy) is kept on the module.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from zfnet.data.crops import crop_offsets, random_crops
from zfnet.data.image_files import loader
from zfnet.training.progress import trainer_progress

__all__ = ["FineTuner", "fit", "predict"]


def _centre(x: torch.Tensor, crop: int) -> torch.Tensor:
    top, left = crop_offsets(x.shape[-1], crop)[4]
    return x[..., top : top + crop, left : left + crop]


class FineTuner(pl.LightningModule):
    def __init__(self, model: nn.Module, groups: list[dict], mean: torch.Tensor, crop: int, epochs: int,
                 momentum: float = 0.9, weight_decay: float = 5e-4, std: torch.Tensor | None = None,
                 scale: float = 1.0):
        super().__init__()
        self.model, self.groups, self.crop, self.epochs = model, groups, int(crop), int(epochs)
        self.momentum, self.weight_decay, self.scale = float(momentum), float(weight_decay), float(scale)
        self.register_buffer("mean", mean.float())  # (3, 1, 1) or (3, resize, resize)
        self.register_buffer("std", (std if std is not None else torch.ones(3, 1, 1)).float())
        self.history: list[dict] = []
        self._sums: dict[str, float] = {}

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() * self.scale - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_train_epoch_start(self) -> None:
        self.model.train()  # the source comes in eval mode; Lightning leaves a module's mode as it finds it
        for m in self.model.modules():  # a frozen batch norm keeps its running statistics too
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
                m.eval()
        self._sums = {"train_loss": 0.0, "train_correct": 0.0, "train_n": 0.0, "val_loss": 0.0, "val_correct": 0.0,
                      "val_n": 0.0}

    def _tally(self, split: str, logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        n = float(y.shape[0])
        self._sums[f"{split}_loss"] += float(loss.detach()) * n
        self._sums[f"{split}_correct"] += float((logits.argmax(1) == y).sum())
        self._sums[f"{split}_n"] += n

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(random_crops(self.normalize(x), self.crop))
        loss = F.cross_entropy(logits, y)
        self._tally("train", logits, y, loss)
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(_centre(self.normalize(x), self.crop))
        self._tally("val", logits, y, F.cross_entropy(logits, y))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._sums.get("train_n"):
            return
        s = self._sums
        row = {"epoch": self.current_epoch + 1, "train_loss": s["train_loss"] / s["train_n"],
               "train_accuracy": s["train_correct"] / s["train_n"],
               "lr": self.trainer.optimizers[0].param_groups[0]["lr"]}
        if s["val_n"]:
            row |= {"val_loss": s["val_loss"] / s["val_n"], "val_accuracy": s["val_correct"] / s["val_n"]}
        self.history.append(row)

    def configure_optimizers(self):
        opt = torch.optim.SGD([{"params": g["params"], "lr": g["lr"]} for g in self.groups],
                              lr=self.groups[0]["lr"], momentum=self.momentum, weight_decay=self.weight_decay)
        return {"optimizer": opt,
                "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.epochs))}


def _dataset(data) -> Dataset:
    """A Dataset of (uint8 image, label): one as it is, or an (images (N, 3, s, s), labels (N,)) pair."""
    if isinstance(data, Dataset):
        return data
    images, labels = data
    return TensorDataset(images, torch.as_tensor(labels).long())


def fit(module: FineTuner, train, val, batch_size: int, accelerator: str = "cpu", seed: int = 0,
        progress: bool = False, workers: int = 1) -> FineTuner:
    """Train ``module`` for its epochs; validation after every epoch. ``train`` / ``val``: Datasets of
    (uint8 (3, s, s) image, label), e.g. :class:`zfnet.data.image_files.ImageFiles` (decoded batch by batch,
    ``workers`` processes), or (images, labels) tensor pairs. The batches, their order and so the result
    are the same either way."""
    pl.seed_everything(seed, workers=True, verbose=False)
    data = _dataset(train)
    bs = min(int(batch_size), len(data))
    train_loader = loader(data, bs, workers, shuffle=True, drop_last=len(data) > bs)
    val_loader = loader(_dataset(val), max(bs, 64), workers)
    callbacks, bar = trainer_progress(progress)  # Lightning's bar on a terminal, log lines without one
    trainer = pl.Trainer(max_epochs=module.epochs, accelerator=accelerator, devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=bar, callbacks=callbacks,
                         enable_model_summary=False, num_sanity_val_steps=0, deterministic=True)
    module.model.train()  # the source comes in eval mode (frozen batch norms go back to eval each epoch)
    trainer.fit(module, train_loader, val_loader)
    return module


@torch.no_grad()
def predict(module: FineTuner, images, batch_size: int = 64) -> np.ndarray:
    """Class probabilities (N, C), centre crop, eval mode, of uint8 images: a (N, 3, s, s) tensor (run
    ``batch_size`` at a time) or an iterable of uint8 batches (or of (images, labels) batches)."""
    model = module.model
    was = model.training
    model.eval()
    device = module.mean.device
    batches = images.split(batch_size) if isinstance(images, torch.Tensor) else images
    out = []
    for x in batches:
        x = x[0] if isinstance(x, (list, tuple)) else x
        out.append(F.softmax(model(_centre(module.normalize(x.to(device)), module.crop)), 1).cpu())
    model.train(was)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)
