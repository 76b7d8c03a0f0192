"""Checkpoints: atomic writes, the feature-evolution epochs, and a plain weights file for analyses.

Lightning checkpoints (``epoch=NN.ckpt`` at the configured epochs, ``last.ckpt`` every epoch) go through
``AtomicCheckpointIO``: written to a temporary file and renamed, so an interrupted write never leaves a
broken checkpoint. ``export_model`` writes ``model.pt``: the state dict plus the plain-dict architecture,
loadable with ``torch.load(..., weights_only=True)`` and rebuilt by ``load_model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from zfnet.io import atomic_path
from zfnet.models import build


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


def export_model(model: torch.nn.Module, path: str | Path, extra: dict | None = None) -> Path:
    """``model.pt``: {"arch": model.config, "state_dict": ..., **extra}; weights_only-loadable."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"arch": dict(model.config), "state_dict": state, **(extra or {})}, tmp)
    return Path(path)


def load_model(path: str | Path, map_location: str = "cpu") -> torch.nn.Module:
    """Rebuild a model from ``model.pt`` (weights_only) or a Lightning ``.ckpt``, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found; run the train stage first")
    blob = torch.load(path, map_location=map_location, weights_only=True)
    if "arch" in blob:
        arch, state = blob["arch"], blob["state_dict"]
    elif "state_dict" in blob and "hyper_parameters" in blob:  # Lightning checkpoint of Classifier
        hp = blob["hyper_parameters"]
        arch = {**hp["model_cfg"], "num_classes": hp["num_classes"], "input_size": hp["crop"]}
        state = {k.removeprefix("model."): v for k, v in blob["state_dict"].items() if k.startswith("model.")}
    else:
        raise ValueError(f"{path}: neither a zfnet model.pt nor a Lightning checkpoint of zfnet.training.Classifier")
    arch = dict(arch)
    model = build(arch.pop("name"), arch.pop("num_classes"), **arch)
    model.load_state_dict(state)
    return model.eval()
