"""Lightning checkpoints: atomic writes and the feature-evolution epochs.

Lightning checkpoints (``epoch=NN.ckpt`` at the configured epochs, ``last.ckpt`` every epoch) go through
``AtomicCheckpointIO``: written to a temporary file and renamed, so an interrupted write never leaves a
broken checkpoint. The plain weights file for analyses (``model.pt``) is ``zfnet.models.weights``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from zfnet.io import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


class EpochCheckpoints(pl.callbacks.Checkpoint):
    """Save ``epoch=NN.ckpt`` (1-based epochs, as the paper counts) at the given epochs, and ``last.ckpt``.

    A ``Checkpoint`` callback: Lightning runs its ``on_train_epoch_end`` after the module's, like
    ``ModelCheckpoint(save_on_train_epoch_end=True)``, so the saved state is that of a finished epoch.
    """

    def __init__(self, dirpath: str | Path, epochs: list[int]):
        self.dirpath, self.epochs = Path(dirpath), {int(e) for e in epochs}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch in self.epochs:
            trainer.save_checkpoint(self.dirpath / f"epoch={epoch:02d}.ckpt", weights_only=False)
        trainer.save_checkpoint(self.dirpath / "last.ckpt", weights_only=False)
