"""The gradient family: deconvnet, guided backpropagation and gradient saliency of single units.

All three map one unit per example of a layer back to the input with one backward pass over the batch,
and differ only in the backward rule of the ReLUs (:mod:`zfnet.analysis.deconvnet.rectifiers`):

* :func:`project`, the deconvnet (Zeiler & Fergus 2014 §2.1): ``relu(incoming signal)``; max-pool backward
  supplies the switches (overlapping 3x3/2 pools *sum* at shared switch positions, the linear adjoint,
  i.e. autograd's ``max_pool2d`` backward); transposed filters; no biases. Seeded with the unit's
  activation value (the paper's "all other activations set to zero"). LRN: ``lrn="identity"`` (paper) or
  ``"gradient"`` (Captum's convention). Equals Captum's ``NeuronDeconvolution`` x activation.
* :func:`guided_backprop` (Springenberg et al. 2015): ``relu(incoming signal) * (forward output > 0)``,
  seeded with 1: equals Captum's ``NeuronGuidedBackprop``.
* :func:`saliency` (Simonyan et al. 2014): the plain gradient of the unit (seed 1) with respect to the
  input, any nonlinearity: Captum's ``NeuronGradient`` (``Saliency`` is its absolute value).

Every model works: layers are module paths (``"conv5"``, ``"features.28"``, ``"layer4.1"``), the forward
stops at the layer, residual additions, concatenations and adaptive pooling are ordinary autograd. The
deconvnet and guided backprop refuse nonlinearities that are not ReLUs (naming the module); a layer module
that runs more than once per forward is refused unless ``call=`` picks the call. The model runs in eval
mode; every module's own flag is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from zfnet.analysis import hooks
from zfnet.analysis.deconvnet.rectifiers import BackpropMode, ModuleTracker, RectifierGuard, check_lrn

__all__ = ["RULES", "backprop_units", "guided_backprop", "project", "saliency", "select_units"]

RULES = ("deconvnet", "guided", "gradient")


# ------------------------------------------------------------------------------------- unit choice
def select_units(
    acts: torch.Tensor,
    channels: Sequence[int] | torch.Tensor | None = None,
    positions: Sequence[Sequence[int]] | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick one unit per example of ``acts`` (B, C, H, W): returns (channel, y, x, value), each (B,).

    ``channels=None``: the strongest unit over all channels and positions; ``channels`` (B,): that channel
    at its max position, unless ``positions`` (B, 2) = (y, x) is given; ``positions`` alone: the strongest
    channel at that position. Ties go to the first index in (channel, y, x) row-major order.
    """
    if acts.ndim == 2:
        acts = acts[:, :, None, None]
        if positions is not None:
            raise ValueError("positions: this layer's output is 2-D (B, C); give channels only")
    if acts.ndim != 4:
        raise ValueError(f"layer output must be (B, C, H, W) or (B, C); got shape {tuple(acts.shape)}")
    b, c_n, h, w = acts.shape
    dev = acts.device
    a = acts.detach()
    if channels is not None:
        ch = torch.as_tensor(channels, dtype=torch.long, device=dev).reshape(-1)
        if ch.numel() != b:
            raise ValueError(f"channels: expected {b} entries (one per example), got {ch.numel()}")
        if ((ch < 0) | (ch >= c_n)).any():
            raise ValueError(f"channels: expected values in [0, {c_n}), got {ch.tolist()}")
    if positions is not None:
        pos = torch.as_tensor(positions, dtype=torch.long, device=dev).reshape(-1, 2)
        if pos.shape[0] != b:
            raise ValueError(f"positions: expected ({b}, 2) (y, x) per example, got {tuple(pos.shape)}")
        if ((pos[:, 0] < 0) | (pos[:, 0] >= h) | (pos[:, 1] < 0) | (pos[:, 1] >= w)).any():
            raise ValueError(f"positions: expected y in [0, {h}) and x in [0, {w}), got {pos.tolist()}")
        ys, xs = pos[:, 0], pos[:, 1]
        if channels is None:
            ch = a[torch.arange(b, device=dev), :, ys, xs].argmax(dim=1)
    elif channels is None:
        flat = a.reshape(b, -1).argmax(dim=1)
        ch, rest = flat // (h * w), flat % (h * w)
        ys, xs = rest // w, rest % w
    else:
        flat = a[torch.arange(b, device=dev), ch].reshape(b, -1).argmax(dim=1)
        ys, xs = flat // w, flat % w
    vals = a[torch.arange(b, device=dev), ch, ys, xs]
    return ch, ys, xs, vals

# ---------------------------------------------------------------------------------------- the core
def backprop_units(
    model: nn.Module,
    images: torch.Tensor,
    layer: str | nn.Module,
    channels: Sequence[int] | torch.Tensor | None = None,
    positions: Sequence[Sequence[int]] | torch.Tensor | None = None,
    *,
    rule: str = "deconvnet",
    seed: str = "activation",
    lrn: str = "identity",
    strict: bool = True,
    call: int | None = None,
    return_units: bool = False,
):
    """One unit per example of ``layer`` mapped back to the input with ``rule``'s ReLU backward: (B, C, H, W).

    ``rule``: "deconvnet", "guided" or "gradient" (plain autograd); ``seed``: "activation" (the unit's value)
    or "one"; ``call``: which call of a layer module that runs several times per forward. See
    :func:`select_units` for the unit choice; ``return_units=True`` also returns ``(channel, y, x, value)``.
    """
    if rule not in RULES:
        raise ValueError(f"rule: expected one of {list(RULES)}, got {rule!r}")
    if seed not in ("activation", "one"):
        raise ValueError(f"seed: expected 'activation' or 'one', got {seed!r}")
    check_lrn(lrn)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images: expected a (B, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    path = hooks.path_of(model, layer)
    hooks.find_layer(model, layer)
    x = images.detach().clone().requires_grad_(True)
    where = {"deconvnet": "deconvnet.project", "guided": "guided_backprop"}.get(rule, rule)
    with hooks.eval_mode(model), torch.enable_grad():
        which = hooks.calls(model, x.detach(), [layer], call)
        if rule == "gradient":
            outs, _ = hooks.run(model, x, [layer], call=which)
        else:
            guard = RectifierGuard()
            try:
                with ModuleTracker(model) as tracker, BackpropMode(rule, lrn, strict, x, tracker, where), guard:
                    outs, _ = hooks.run(model, x, [layer], call=which)
            except RuntimeError as exc:
                guard.reraise(exc)
                raise
        acts = outs[path]
        ch, ys, xs, vals = select_units(acts, channels, positions)
        grad_seed = torch.zeros_like(acts)
        bidx = torch.arange(acts.shape[0], device=acts.device)
        value = vals if seed == "activation" else torch.ones_like(vals)
        if acts.ndim == 2:
            grad_seed[bidx, ch] = value
        else:
            grad_seed[bidx, ch, ys, xs] = value
        if acts.grad_fn is None:
            raise RuntimeError(f"layer {path!r} output does not depend on the input")
        (proj,) = torch.autograd.grad(acts, x, grad_seed)
    proj = proj.detach()
    if return_units:
        return proj, (ch, ys, xs, vals.detach())
    return proj


# -------------------------------------------------------------------------------------- the family
def project(model: nn.Module, images: torch.Tensor, layer: str | nn.Module,
            channels: Sequence[int] | torch.Tensor | None = None,
            positions: Sequence[Sequence[int]] | torch.Tensor | None = None, *, lrn: str = "identity",
            strict: bool = True, call: int | None = None, return_units: bool = False):
    """Deconvnet projection of one unit per example to pixel space: ``(B, 3, H, W)`` (dtype of ``images``).

    ``images`` (B, 3, H, W): mean-subtracted input. ``layer``: module path (``"conv5"``, ``"features.10"``).
    Unit per example: see :func:`select_units` (``channels=None``: the strongest activation). The seed is
    the unit's activation value; one backward projects the batch. ``lrn``: ``"identity"`` (the paper's
    deconvnet, default) or ``"gradient"`` (Captum's convention). ``strict=False`` lets smooth non-ReLU
    nonlinearities through with their true gradient. With ``return_units=True`` also returns
    ``(channel, y, x, value)`` tensors (B,).
    """
    return backprop_units(model, images, layer, channels, positions, rule="deconvnet", seed="activation",
                          lrn=lrn, strict=strict, call=call, return_units=return_units)


def guided_backprop(model: nn.Module, images: torch.Tensor, layer: str | nn.Module,
                    channels: Sequence[int] | torch.Tensor | None = None,
                    positions: Sequence[Sequence[int]] | torch.Tensor | None = None, *, lrn: str = "gradient",
                    call: int | None = None, return_units: bool = False):
    """Guided backpropagation of one unit per example (seed 1): same signature and batching as :func:`project`."""
    return backprop_units(model, images, layer, channels, positions, rule="guided", seed="one", lrn=lrn,
                          call=call, return_units=return_units)


def saliency(model: nn.Module, images: torch.Tensor, layer: str | nn.Module,
             channels: Sequence[int] | torch.Tensor | None = None,
             positions: Sequence[Sequence[int]] | torch.Tensor | None = None, *, call: int | None = None,
             return_units: bool = False):
    """Gradient saliency: d(unit)/d(input) per example, any nonlinearity (take ``.abs()`` for Captum's
    ``Saliency``). Same signature and batching as :func:`project`; ``layer`` may be the model's output
    module (``"fc"``, ``"classifier.6"``) with ``channels`` the classes."""
    return backprop_units(model, images, layer, channels, positions, rule="gradient", seed="one",
                          call=call, return_units=return_units)
