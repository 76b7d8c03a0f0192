"""The network to fine-tune: the source model, its new C-way head, which parameters train and at what rate.

* :func:`load_source`: our trained ``model.pt`` (the default), or a torchvision architecture
  (``torchvision:vgg16``) with a state-dict file; also returns how to build the same architecture afresh.
* :func:`replace_head`: the last ``nn.Linear`` (in module registration order, the classifier of every
  torchvision CNN and ours) becomes a new ``in_features -> C`` layer (weights N(0, 0.01²), bias 0);
  every other module and weight is kept as it is.
* :func:`apply_strategy`: ``last`` trains the new layer only; ``fc`` every fully connected layer (the
  seed document's choice for VGG16: "we can fine-tune all these layers"); ``all`` the whole network,
  with ``pretrained_lr`` on the pretrained layers and ``lr`` on the new one (optimizer parameter groups);
  frozen parameters get ``requires_grad=False`` and no optimizer state, so they stay bit-identical.
  ``scratch`` is ``all`` on a re-initialized network of the same architecture (:func:`load_source`'s
  ``fresh``), every layer at ``lr``: the baseline of the paper's Fig. 9.
* :func:`parameter_counts`: total and trainable parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

__all__ = ["apply_strategy", "fc_layers", "last_linear", "load_source", "parameter_counts", "replace_head"]

TRAINABLE = ("last", "fc", "all")


def load_source(model: str | None, weights: str | None, checkpoint: str | Path
                ) -> tuple[nn.Module, Callable[[], nn.Module], str]:
    """(the pretrained model in eval mode, a function building the same architecture freshly initialized,
    a label). ``model`` None: our ``checkpoint`` (``model.pt`` or a Lightning ``.ckpt``); ``torchvision:<arch>``
    with ``weights`` (a state dict; the class count is read from its last 2-D weight)."""
    if not model:
        from zfnet.models import build
        from zfnet.models.weights import load_model

        net = load_model(checkpoint)
        config = dict(net.config)
        return net, lambda: build(**config).eval(), str(getattr(net, "arch", "model"))
    spec = str(model)
    if not spec.startswith("torchvision:"):
        raise ValueError(f"finetune.model={spec!r}: expected null (our trained checkpoint) or torchvision:<arch>")
    import torchvision

    arch = spec.split(":", 1)[1]
    if not callable(getattr(torchvision.models, arch, None)):
        raise ValueError(f"finetune.model={spec!r}: torchvision has no architecture {arch!r}")
    if not weights:
        raise ValueError(f"finetune.model={spec!r} needs finetune.weights: a state-dict file of the pretrained network")
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"finetune.weights={str(path)!r}: file not found")
    from zfnet.models.weights import read_state_dict

    state, num_classes = read_state_dict(path)
    if num_classes is None:
        raise ValueError(f"finetune.weights={str(path)!r}: no 2-D weight (no fully connected layer) in the state dict")

    def fresh() -> nn.Module:
        return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes).eval()

    net = fresh()
    net.load_state_dict(state)
    return net.eval(), fresh, arch


def last_linear(model: nn.Module) -> str:
    """Module path of the last ``nn.Linear`` registered in ``model`` (the classifier)."""
    found = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"{type(model).__name__}: no nn.Linear layer to replace with the new task's classifier")
    return found[-1]


def fc_layers(model: nn.Module) -> list[str]:
    """Module paths of every ``nn.Linear``, in registration order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def replace_head(model: nn.Module, num_classes: int, generator: torch.Generator | None = None) -> str:
    """Replace the last ``nn.Linear`` by a new ``in_features -> num_classes`` one (N(0, 0.01²) weights, zero
    bias, same dtype and device), in place; returns its module path."""
    path = last_linear(model)
    old = model.get_submodule(path)
    new = nn.Linear(old.in_features, int(num_classes), bias=old.bias is not None,
                    device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(torch.randn(new.weight.shape, generator=generator) * 0.01)
        if new.bias is not None:
            new.bias.zero_()
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)
    config = getattr(model, "config", None)
    if isinstance(config, dict) and "num_classes" in config:  # ours: model.pt records the architecture
        model.config = {**config, "num_classes": int(num_classes)}
    return path


def apply_strategy(model: nn.Module, head: str, trainable: str, lr: float, pretrained_lr: float | None = None
                   ) -> list[dict]:
    """Freeze what ``trainable`` (``last`` / ``fc`` / ``all``) leaves fixed; the optimizer's parameter groups:
    ``{"name": "new layer", "params", "lr": lr}`` and, when other layers train, ``{"name": "other layers",
    "params", "lr": pretrained_lr (None: lr)}``."""
    if trainable not in TRAINABLE:
        raise ValueError(f"trainable={trainable!r}: expected one of {list(TRAINABLE)}")
    for p in model.parameters():
        p.requires_grad_(False)
    if trainable == "last":
        modules = [model.get_submodule(head)]
    elif trainable == "fc":
        modules = [model.get_submodule(n) for n in fc_layers(model)]
    else:
        modules = [model]
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(True)
    head_ids = {id(p) for p in model.get_submodule(head).parameters()}
    new = [p for p in model.parameters() if id(p) in head_ids]
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"name": "new layer", "params": new, "lr": float(lr)}]
    if rest:
        groups.append({"name": "other layers", "params": rest,
                       "lr": float(lr if pretrained_lr is None else pretrained_lr)})
    return groups


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """{"total": every parameter, "trainable": those with requires_grad}."""
    params = list(model.parameters())
    return {"total": sum(p.numel() for p in params), "trainable": sum(p.numel() for p in params if p.requires_grad)}
