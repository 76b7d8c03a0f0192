"""Model weights on disk, without Lightning: ``model.pt`` for analyses, and reading a Lightning ``.ckpt``.

``export_model`` writes ``model.pt``: the state dict plus the plain-dict architecture, loadable with
``torch.load(..., weights_only=True)`` and rebuilt by ``load_model``. The same weights always give the
same bytes (the zip's records get a fixed name, not the temporary file's), so a
retrain that reproduces the weights leaves downstream DVC stages up to date. Analyses, transfer and
notebooks import this module, never ``zfnet.training``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from zfnet.io import atomic_path
from zfnet.models import build


class UnreadableCheckpoint(ValueError):
    """A weights file that ``torch.load(weights_only=True)`` cannot read (truncated, corrupt, foreign)."""


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict:
    """``torch.load(path, weights_only=True)``, with an error that names the file and what to do.

    Raises ``FileNotFoundError`` when the file is missing and ``UnreadableCheckpoint`` (a ``ValueError``)
    when it cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found; run the train stage first")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # zip, pickle and storage errors all mean the same thing here
        # torch's own message may advise weights_only=False, i.e. running arbitrary code: not repeated here
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        if "weights_only" in detail or "weights only" in detail.lower():
            detail = "it holds objects other than tensors and plain containers"
        raise UnreadableCheckpoint(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {detail}); the file is truncated, "
            f"corrupt or not a zfnet/Lightning checkpoint. Delete or move it and re-run the train stage "
            f"(`dvc repro train`) to write it again") from None
    if not isinstance(blob, dict):
        raise UnreadableCheckpoint(f"{path}: not a readable checkpoint (holds a {type(blob).__name__}, expected a "
                                   f"dict); re-run the train stage to write it again")
    return blob


def save_stable(obj, path: str | Path) -> Path:
    """``torch.save(obj, path)``, atomically, with the same bytes for the same ``obj``.

    Saved to a path, torch names the zip's records after the file's stem (here the temporary name, which
    holds the process id); saved to an open file, always ``archive/...``. The zip's timestamps are fixed.
    """
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        torch.save(obj, fh)
    return Path(path)


def export_model(model: torch.nn.Module, path: str | Path, extra: dict | None = None) -> Path:
    """``model.pt``: {"arch": model.config, "state_dict": ..., **extra}; weights_only-loadable, byte-stable."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return save_stable({"arch": dict(model.config), "state_dict": state, **(extra or {})}, path)


def load_model(path: str | Path, map_location: str = "cpu") -> torch.nn.Module:
    """Rebuild a model from ``model.pt`` (weights_only) or a Lightning ``.ckpt``, in eval mode."""
    path = Path(path)
    blob = read_checkpoint(path, map_location)
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


def read_state_dict(path: str | Path) -> tuple[dict, int | None]:
    """A user's state-dict file (bare, or under ``state_dict`` / ``model``) and its class count, read from
    its last 2-D weight (None when it has no fully connected layer)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    mats = [t for k, t in state.items() if k.endswith("weight") and t.ndim == 2]
    return state, int(mats[-1].shape[0]) if mats else None


def build_model(v, num_classes: int) -> tuple[torch.nn.Module, str]:
    """A stage's model from its config block ``v`` and its label: ``v.model`` (a registered name or
    ``torchvision:<arch>``) with ``v.weights`` (a state-dict file), or the trained checkpoint
    ``v.checkpoint`` (the visualize and dissect stages)."""
    spec = v.get("model")
    if not spec:
        model = load_model(v.checkpoint)
        return model, str(getattr(model, "arch", type(model).__name__))
    state = None
    if v.get("weights"):
        state, found = read_state_dict(v.weights)
        num_classes = found or num_classes
    if str(spec).startswith("torchvision:"):
        import torchvision

        arch = str(spec).split(":", 1)[1]
        if not hasattr(torchvision.models, arch):
            raise ValueError(f"model={spec!r}: torchvision has no architecture {arch!r}")
        model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    else:
        arch = str(spec)
        model = build(arch, num_classes)
    if state is not None:
        model.load_state_dict(state)
    return model.eval(), arch.replace("/", "_")
