"""Model weights on disk, without Lightning: ``model.pt`` for analyses, and reading a Lightning ``.ckpt``.

``export_model`` writes ``model.pt``: the state dict plus the plain-dict architecture, loadable with
``torch.load(..., weights_only=True)`` and rebuilt by ``load_model``. Analyses, transfer and notebooks
import this module, never ``zfnet.training``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from zfnet.io import atomic_path
from zfnet.models import build


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
