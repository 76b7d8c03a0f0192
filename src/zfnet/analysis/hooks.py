"""Hook machinery shared by every analysis: layers by module path, eval mode, hooks, forward until a layer.

* :func:`attached`: forward (and forward-pre) hooks registered for the duration of a ``with`` block, removed
  after it whatever happens; every hook site of the analyses goes through it.
* :func:`find_layer`: the module at a dotted path (``"conv5"``, ``"features.28"``, ``"layer4.1"``), with an
  error listing the model's paths.
* :func:`eval_mode`: eval mode for the duration, then every module's *own* training flag restored.
* :func:`run`: one forward with forward hooks on the layers; what each hook returns (``reduce(output)``) is
  collected, and the forward stops (an internal exception) as soon as the last layer needed has run.
* Reused modules: a module that runs more than once per forward (torchvision resnet's ``layer4.1.relu`` is
  called twice by its block) has no single output. :func:`calls` counts the calls of each layer on a
  one-image probe (cached per model and input shape); such a layer is refused by name unless the caller
  picks the call (``call=`` index, 0-based).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

__all__ = ["ReusedLayerError", "Stop", "attached", "calls", "dtype_device", "eval_mode", "find_layer", "path_of",
           "run"]


class Stop(Exception):
    """Raised by a forward hook to end the forward pass once every wanted layer has run."""


class ReusedLayerError(ValueError):
    """A layer module runs more than once per forward and the caller did not say which call to use."""


def find_layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """The module named ``layer`` (a dotted module path, e.g. ``"conv3"``, ``"features.10"``, ``"layer4.1"``)."""
    if isinstance(layer, nn.Module):
        return layer
    if not isinstance(layer, str):
        raise TypeError(f"layer: expected a module path (str) or a module, got {type(layer).__name__}")
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        short = names if len(names) <= 40 else names[:40] + ["..."]
        raise KeyError(f"layer {layer!r} is not a module of this model; module paths: {short}") from None


def path_of(model: nn.Module, layer: str | nn.Module) -> str:
    """The module path of ``layer`` in ``model`` (a string is returned as given)."""
    if isinstance(layer, str):
        return layer
    for name, m in model.named_modules():
        if m is layer:
            return name
    return f"<{type(layer).__name__} at {id(layer):#x}>"


@contextlib.contextmanager
def attached(forward: Iterable[tuple[nn.Module, Callable]] = (), pre: Iterable[tuple[nn.Module, Callable]] = ()):
    """Forward hooks ``(module, hook)`` (and forward-pre hooks, ``pre``) registered, in order, for the block;
    all removed on leaving it, also on an exception (a :class:`Stop` raised by a hook included)."""
    handles = []
    try:
        for m, fn in pre:
            handles.append(m.register_forward_pre_hook(fn))
        for m, fn in forward:
            handles.append(m.register_forward_hook(fn))
        yield handles
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Eval mode (dropout off, batch norm on running statistics); each module's own flag restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """dtype and device of the model's first floating-point parameter (default dtype, CPU without one)."""
    p = next((p for p in model.parameters() if p.is_floating_point()), None)
    if p is None:
        return torch.get_default_dtype(), torch.device("cpu")
    return p.dtype, p.device


_CALLS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def calls(model: nn.Module, x: torch.Tensor, layers: Iterable[str | nn.Module],
          call: int | Mapping[str, int] | None = None) -> dict[str, int]:
    """Which call of each layer to use (0-based): checks the layers run, and refuses reused ones by name.

    ``call``: None (every layer must run exactly once per forward), an int (that call of every layer) or
    ``{path: call}``. Call counts come from a one-image probe forward, cached per model and input shape.
    """
    layers = list(layers)
    paths = [path_of(model, l) for l in layers]
    key = (tuple(paths), tuple(x.shape[1:]))
    cache = _CALLS.setdefault(model, {})
    if key not in cache:
        cache[key] = _count_calls(model, x, {p: find_layer(model, l) for p, l in zip(paths, layers)})
    counts = cache[key]
    out = {}
    for p in paths:
        n = counts[p]
        want = call.get(p) if isinstance(call, Mapping) else call
        if n == 0:
            raise RuntimeError(f"layer {p!r} was not called by the model's forward pass")
        if want is None:
            if n > 1:
                mod = find_layer(model, p) if not p.startswith("<") else None
                kind = type(mod).__name__ if mod is not None else "module"
                raise ReusedLayerError(
                    f"layer {p!r} ({kind}) runs {n} times per forward (one module used at {n} places), so it has "
                    f"no single output; pass call=0..{n - 1} to pick one, or address a module that runs once "
                    "(e.g. its parent block)")
            want = 0
        if isinstance(want, bool) or not 0 <= int(want) < n:
            raise ValueError(f"call: layer {p!r} runs {n} time(s) per forward; expected 0..{n - 1}, got {want!r}")
        out[p] = int(want)
    return out


@torch.no_grad()
def _count_calls(model: nn.Module, x: torch.Tensor, mods: Mapping[str, nn.Module]) -> dict[str, int]:
    counts = {p: 0 for p in mods}
    counters = [(m, lambda _m, _i, _o, p=p: counts.__setitem__(p, counts[p] + 1)) for p, m in mods.items()]
    with attached(counters), eval_mode(model):
        model(x[:1])
    return counts


def run(model: nn.Module, x: torch.Tensor, layers: Iterable[str | nn.Module], *,
        reduce: Callable[[str, torch.Tensor], object] | None = None, call: Mapping[str, int] | None = None,
        stop: bool = True) -> tuple[dict[str, object], object]:
    """One forward of ``x``: ``({path: reduce(path, output)}, model output or None)``.

    Each layer's output is taken at its ``call[path]``-th call (default 0; see :func:`calls`) and passed to
    ``reduce`` inside the hook (default: the output itself), so a later in-place op cannot change what is
    kept. ``stop=True`` ends the forward after the last layer needed (the model output is then None).
    """
    mods = {path_of(model, l): find_layer(model, l) for l in layers}
    call = dict(call or {})
    seen = {p: 0 for p in mods}
    outs: dict[str, object] = {}
    remaining = set(mods)

    def make(p):
        def hook(_m, _i, out):
            k = seen[p]
            seen[p] += 1
            if k != call.get(p, 0) or p in outs:
                return
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"layer {p!r} returns {type(out).__name__}, expected a tensor")
            outs[p] = reduce(p, out) if reduce is not None else out
            remaining.discard(p)
            if stop and not remaining:
                raise Stop
        return hook

    result = None
    with attached((m, make(p)) for p, m in mods.items()):
        try:
            result = model(x)
        except Stop:
            pass
    if remaining:
        raise RuntimeError(f"layers {sorted(remaining)} were not called by the model's forward pass")
    return outs, result
