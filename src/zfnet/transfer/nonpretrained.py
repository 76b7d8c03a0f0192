"""The paper's "non-pretrained" baseline (Tables 4, 5): the same network, layers 1–7 reset to random and
trained together with a new softmax on the target training images only (Lightning, SGD).

Training input: a random ``crop``² window of the ``resize``² image, flipped with probability 1/2, minus
the same-size centre of the target set's own mean image (there is no ImageNet here); evaluation: the
centre crop.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from zfnet.data.crops import crop_offsets, random_crops
from zfnet.models import build

__all__ = ["ScratchClassifier", "fit_predict"]


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
    def predict(self, images: torch.Tensor, batch_size: int = 128) -> np.ndarray:
        self.model.eval()
        crop = self.hparams.crop
        top, left = crop_offsets(images.shape[-1], crop)[4]
        out = []
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].float() - self.mean
            out.append(self.model(x[..., top : top + crop, left : left + crop]).argmax(1))
        return torch.cat(out).numpy() if out else np.zeros(0, np.int64)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum,
                              weight_decay=self.hparams.weight_decay)
        return {"optimizer": opt,
                "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.hparams.epochs))}


def fit_predict(images_train: torch.Tensor, y_train: np.ndarray, images_test: torch.Tensor, num_classes: int,
                model_cfg: dict, crop: int, epochs: int, batch_size: int, lr: float, momentum: float = 0.9,
                weight_decay: float = 5e-4, seed: int = 0, progress: bool = False) -> np.ndarray:
    """Train from scratch on uint8 (N, 3, s, s) images; predicted labels of the test images."""
    pl.seed_everything(seed, workers=True, verbose=False)
    mean = images_train.double().mean(0)
    module = ScratchClassifier(model_cfg, num_classes, crop, mean, lr, momentum, weight_decay, epochs)
    data = TensorDataset(images_train, torch.as_tensor(y_train, dtype=torch.long))
    loader = DataLoader(data, batch_size=min(batch_size, len(data)), shuffle=True, drop_last=len(data) > batch_size)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
                         deterministic=True)
    trainer.fit(module, loader)
    return module.cpu().predict(images_test)
