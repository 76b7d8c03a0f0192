"""Lightning checkpoints: atomic writes, the feature-evolution epochs, and what a checkpoint says of its run.

Two kinds of checkpoint, both written through ``AtomicCheckpointIO`` (a temporary file renamed, so an
interrupted write never leaves a broken checkpoint, and the same state always gives the same bytes):

- ``last.ckpt``, every epoch: Lightning's full checkpoint (weights, optimizer momentum, scheduler, loops,
  callbacks, RNG state), the only one a run resumes from;
- ``epoch=NN.ckpt`` at the feature-evolution epochs: weights only (``state_dict``, ``hyper_parameters``,
  ``epoch``, ``global_step``), what the analyses read (``zfnet.models.weights.load_model``): about half
  the bytes of a full checkpoint, since SGD's momentum buffer is as large as the weights.

Each carries ``checkpoint["zfnet_run"] = {"fingerprint", "epochs_done", ...}`` (see ``RUN_KEY``), which
decides whether a later run may resume it (``last.ckpt``) and says which run wrote it. The plain weights
file for analyses (``model.pt``) is ``zfnet.models.weights``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from zfnet.models.weights import read_checkpoint, save_stable

RUN_KEY = "zfnet_run"  # top-level checkpoint key: the run's fingerprint and the epochs it finished


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        save_stable(checkpoint, path)


class EpochCheckpoints(pl.callbacks.Checkpoint):
    """Save ``epoch=NN.ckpt`` (1-based epochs, as the paper counts; weights only) at the given epochs, and
    ``last.ckpt`` (the full resume state) every epoch.

    A ``Checkpoint`` callback: Lightning runs its ``on_train_epoch_end`` after the module's and the other
    callbacks', like ``ModelCheckpoint(save_on_train_epoch_end=True)``, so the saved state is that of a
    finished epoch. ``run`` (e.g. the fingerprint) goes into each checkpoint under ``RUN_KEY`` with
    ``epochs_done``; ``on_saved(epochs_done)`` is called after each ``last.ckpt``.
    """

    def __init__(self, dirpath: str | Path, epochs: list[int], run: dict | None = None, on_saved=None):
        self.dirpath, self.epochs = Path(dirpath), {int(e) for e in epochs}
        self.run, self.on_saved, self._epochs_done = dict(run or {}), on_saved, None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        self._epochs_done = epoch
        try:
            if epoch in self.epochs:
                self.save_weights(trainer, pl_module, self.dirpath / f"epoch={epoch:02d}.ckpt")
            trainer.save_checkpoint(self.dirpath / "last.ckpt", weights_only=False)
        finally:
            self._epochs_done = None
        if self.on_saved is not None and trainer.global_rank == 0:
            self.on_saved(epoch)

    def save_weights(self, trainer: pl.Trainer, pl_module: pl.LightningModule, path: Path) -> None:
        """A weights-only checkpoint with the run's ``RUN_KEY`` (Lightning's own ``weights_only=True`` save
        skips the callbacks' ``on_save_checkpoint``, which adds it), through the strategy's public API: rank
        0 writes, through ``AtomicCheckpointIO``."""
        checkpoint = {
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "pytorch-lightning_version": pl.__version__,
            "state_dict": trainer.strategy.lightning_module_state_dict(),
            "hyper_parameters": dict(pl_module.hparams),
            RUN_KEY: {**self.run, "epochs_done": self._epochs_done},
        }
        trainer.strategy.save_checkpoint(checkpoint, path)
        trainer.strategy.barrier("EpochCheckpoints.save_weights")

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if self._epochs_done is not None:  # only the end-of-epoch saves above say how many epochs they hold
            checkpoint[RUN_KEY] = {**self.run, "epochs_done": self._epochs_done}


def run_info(path: str | Path) -> dict:
    """``RUN_KEY`` of a checkpoint ({} when it has none, e.g. written by an older version);
    ``zfnet.models.weights.UnreadableCheckpoint`` when the file cannot be read."""
    info = read_checkpoint(path).get(RUN_KEY)
    return dict(info) if isinstance(info, dict) else {}
