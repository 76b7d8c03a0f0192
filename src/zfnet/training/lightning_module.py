"""The paper's training (§3) as a LightningModule.

SGD (lr 1e-2, momentum 0.9), learning rate ×0.1 when validation error plateaus, dropout in the model,
conv filter RMS clipping after every optimizer step. Validation scores the centre crop and the
10-crop average from the same whole (mean-subtracted) images, ``eval_crop_chunk`` crops per forward
(``eval_crop_chunk // 10`` images' ten crops at a time), so the activations' memory is bounded by that
setting, not by the batch size; the logits are those of one forward over all the crops. Metrics are
torchmetrics, so they are reduced across DDP ranks.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from zfnet.data.crops import ten_crops
from zfnet.models import build
from zfnet.training.rms_clip import filter_rms, rms_clip_


class Classifier(pl.LightningModule):
    def __init__(self, model_cfg: dict, num_classes: int, crop: int, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 5e-4, lr_factor: float = 0.1, lr_patience: int = 3,
                 rms_clip: float | None = 0.1, channels_last: bool = False, eval_crop_chunk: int = 320):
        super().__init__()
        if int(eval_crop_chunk) < 10:
            raise ValueError(f"train.eval_crop_chunk: expected an integer >= 10 (one image's ten crops), got {eval_crop_chunk!r}")
        self.save_hyperparameters()
        self.model = build(num_classes=num_classes, input_size=crop, **model_cfg)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        k5 = min(5, num_classes)
        self.metrics = torch.nn.ModuleDict({
            "train_top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "train_top5": MulticlassAccuracy(num_classes, top_k=k5, average="micro"),
            "val_top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "val_top5": MulticlassAccuracy(num_classes, top_k=k5, average="micro"),
            "val10_top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "val10_top5": MulticlassAccuracy(num_classes, top_k=k5, average="micro"),
        })
        self.train_loss = MeanMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.metrics["train_top1"].update(logits, y)
        self.metrics["train_top5"].update(logits, y)
        self.train_loss.update(loss.detach(), weight=y.shape[0])
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def train_epoch_summary(self) -> dict[str, float] | None:
        """This epoch's training metrics, synchronized across ranks (valid until on_train_epoch_end).

        None when no batch was seen: Lightning replays the epoch-end hooks when it resumes from a
        checkpoint written at the end of an epoch, whose metrics were already reported.
        """
        if self.train_loss.update_count == 0:
            return None
        return {
            "train/loss": float(self.train_loss.compute()),
            "train/top1_error": 1 - float(self.metrics["train_top1"].compute()),
            "train/top5_error": 1 - float(self.metrics["train_top5"].compute()),
            "lr": self.trainer.optimizers[0].param_groups[0]["lr"],
            **{f"filter_rms/{name}": value for name, value in filter_rms(self.model).items()},
        }

    def on_train_epoch_end(self):
        for key, value in (self.train_epoch_summary() or {}).items():
            self.log(key, value)
        for metric in (self.train_loss, self.metrics["train_top1"], self.metrics["train_top5"]):
            metric.reset()

    def ten_crop_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) whole images -> (B, 10, classes) logits of their ten crops (TenCrop order), cropped
        and run ``eval_crop_chunk // 10`` images at a time: at most that many crops in memory at once."""
        per = max(1, int(self.hparams.eval_crop_chunk) // 10)
        out = []
        for part in x.split(per):
            crops = ten_crops(part, self.hparams.crop)  # (b, 10, C, s, s): this chunk's crops only
            out.append(self(crops.flatten(0, 1)).view(part.shape[0], 10, -1))
            del crops
        return torch.cat(out)

    def validation_step(self, batch, batch_idx):
        x, y = batch  # whole images; centre crop and the ten crops of each
        logits = self.ten_crop_logits(x)
        centre = logits[:, 4]
        avg = logits.softmax(-1).mean(1)
        self.log("val/loss", F.cross_entropy(centre, y), on_epoch=True, sync_dist=True)
        for prefix, scores in (("val", centre), ("val10", avg)):
            self.metrics[f"{prefix}_top1"].update(scores, y)
            self.metrics[f"{prefix}_top5"].update(scores, y)

    def on_validation_epoch_end(self):
        for prefix, name in (("val", "val"), ("val10", "val_10crop")):
            for k in ("top1", "top5"):
                self.log(f"{name}/{k}_error", 1 - self.metrics[f"{prefix}_{k}"].compute(), prog_bar=k == "top1")
                self.metrics[f"{prefix}_{k}"].reset()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # RNG state at the end of a finished epoch: shuffling, crop choice and dropout of the next epoch
        # continue from it, so a run resumed from last.ckpt ends with the same weights as one never stopped
        checkpoint["rng_state"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng_state"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("rng_state")
        if state:
            torch.set_rng_state(state["torch"])
            if "cuda" in state and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda"])

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        rms_clip_(self.model, self.hparams.rms_clip)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum,
                              weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=self.hparams.lr_factor,
                                                           patience=self.hparams.lr_patience)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/top1_error"}}
