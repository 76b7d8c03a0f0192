"""Deconvnet projections (Zeiler & Fergus 2014, §2.1, Fig. 1): one activation mapped back to pixel space.

Definition (design.md, "Analyses")
----------------------------------
To project the unit ``(channel c, row y, column x)`` of a layer's output for one image: seed the layer's
output with a one-hot map holding the unit's own activation value (every other activation of the layer is
zero) and pass it down to the pixels with

* **unpool**: each max pool's backward places a value at the input position the forward pass picked (the
  *switches*). Overlapping 3x3/2 pools *sum* the values of outputs that share a switch: that is the
  linear adjoint of max pooling, exactly autograd's ``max_pool2d`` backward, and the definition used here;
* **rectify**: a ReLU's backward is ``relu(incoming signal)`` (it ignores the forward activation's sign);
* **filter**: a convolution's backward is the transposed convolution with the same filters (no biases:
  biases never enter a backward pass).

So the deconvnet is autograd with every ReLU's backward replaced, and ``project`` is implemented that way.

Choices
-------
* **LRN** (``lrn=``). ``"identity"`` (default): contrast normalisation passes the signal through unchanged
  on the way down. The paper's deconvnet has no normalisation inverse (its three steps are unpool, rectify,
  filter), so this is the paper's deconvnet; it also keeps the projection a function of the switches alone.
  ``"gradient"``: the true gradient of ``F.local_response_norm`` (data dependent, mixes neighbouring
  channels); this is what Captum's ``Deconvolution`` does, since it only overrides ReLUs. Both modes are
  tested: identity against an explicit deconvnet, gradient against Captum.
* **Functional ReLUs are covered** (not refused). A ``TorchFunctionMode`` is active during the forward pass
  and sees every ReLU however it is written: ``nn.ReLU`` (in-place or not, one instance reused at several
  places: each *call* is replaced), ``F.relu``, ``torch.relu``, ``Tensor.relu``, the in-place ``relu_``
  forms, ``torch.ops.aten.relu``, ``F.threshold(x, 0, 0)`` and ``clamp(min=0)``. Each is swapped for a
  custom autograd Function with the same forward and the deconvnet backward. Rectifier-like ops that are
  *not* a ReLU on the data path (ReLU6, leaky/parametric ReLU, ELU/GELU/SiLU..., sigmoid, tanh, clamps
  with other bounds, ``torch.maximum``) raise ``UnsupportedOpError`` (``strict=False`` lets the non-ReLU
  ones through with their true gradient). As a backstop a ``TorchDispatchMode`` watches the aten ops
  actually executed: a rectifier that bypassed the Python layer (TorchScript, C++ extensions) raises
  ``UnsupportedOpError`` instead of being silently left with its ordinary gradient.
* Layers are addressed by module path: ``"conv1".."conv5"`` (block outputs of the paper models, i.e. after
  ReLU / pool / norm), ``"conv3.conv"``, or ``"features.10"`` for torchvision models. The forward stops at
  that module (a forward hook); the model runs in eval mode and every module's mode is restored afterwards.

Two implementations
-------------------
* :func:`project` (autograd, any model): one forward + one backward projects a whole batch, each example
  seeded at its own unit. Output: full-size ``(B, 3, H, W)``.
* :class:`Deconvnet` (fast, for many units): for models whose path to the layer is a plain chain of
  ``conv2d / relu / max_pool2d / local_response_norm / dropout`` (every model in ``zfnet.models`` and
  torchvision's ``alexnet``/``vgg`` ``features``; the chain is recorded from the real forward, functional
  ReLUs included). One forward per image caches the switches of every pool; a unit's projection is then
  computed only over its receptive field: at every level the signal is kept in the window that can reach
  the unit (clipped to the feature map), the cached switch window is gathered, and the transposed
  convolution runs on that window. Units with the same window geometry (every interior unit of a layer)
  are batched across images into one backward. The arithmetic is the same sums as autograd's (tests check
  equality with ``project``, an explicit deconvnet and Captum); it returns each projection in the unit's
  receptive-field frame (:class:`Projections`).

  Details that make it fast on a CPU (``benchmarks/bench_deconvnet.py``): switches are stored as uint8
  offsets inside their pool window, so a window's scatter indices are one multiply-add; tensors stay
  channels-last so oneDNN runs the transposed convolutions; a stride-s transposed convolution with few
  output channels (conv1 -> RGB) runs in its polyphase form, an ordinary convolution with s*s*3 output
  channels followed by a pixel shuffle (same products and sums, much better GEMM shapes); LRN gradients
  (``lrn="gradient"``) use the cached per-image factors ``D^-beta`` and ``a * D^(-beta-1)``.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = [
    "Deconvnet",
    "LRN_MODES",
    "NotAChainError",
    "Projections",
    "UnsupportedOpError",
    "project",
    "project_units",
    "resolve_layer",
    "select_units",
]

LRN_MODES = ("identity", "gradient")


class UnsupportedOpError(RuntimeError):
    """The forward pass contains a nonlinearity the deconvnet cannot treat as a ReLU."""


class NotAChainError(RuntimeError):
    """The fast :class:`Deconvnet` needs a plain conv/relu/pool/LRN chain up to the layer; use ``project``."""


# ------------------------------------------------------------------------------------------- helpers
def resolve_layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """The module named ``layer`` (a dotted module path, e.g. ``"conv3"`` or ``"features.10"``)."""
    if isinstance(layer, nn.Module):
        return layer
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        short = names if len(names) <= 40 else names[:40] + ["..."]
        raise KeyError(f"layer {layer!r} is not a module of this model; module paths: {short}") from None


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


class _Stop(Exception):
    pass


def _check_lrn(lrn: str) -> str:
    if lrn not in LRN_MODES:
        raise ValueError(f"lrn: expected one of {list(LRN_MODES)}, got {lrn!r}")
    return lrn


def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    p = next((p for p in model.parameters() if p.is_floating_point()), None)
    if p is None:
        return torch.get_default_dtype(), torch.device("cpu")
    return p.dtype, p.device


# -------------------------------------------------------------------------- rectifier classification
_state = threading.local()


@contextlib.contextmanager
def _sanctioned():
    """Aten rectifier ops run inside this block were routed through the deconvnet's own handling."""
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1


# aten ops that are (or contain) a rectifier / other elementwise nonlinearity
_GUARDED_ATEN = frozenset(
    """relu relu_ threshold threshold_ clamp clamp_ clamp_min clamp_min_ clamp_max clamp_max_ clip clip_
    hardtanh hardtanh_ relu6 leaky_relu leaky_relu_ elu elu_ gelu gelu_ silu silu_ _prelu_kernel prelu
    rrelu_with_noise rrelu_with_noise_ celu celu_ selu selu_ mish mish_ hardswish hardswish_ hardsigmoid
    hardsigmoid_ softplus maximum fmax sigmoid sigmoid_ tanh tanh_ log_sigmoid_forward glu
    _softmax softmax log_softmax _log_softmax""".split()
)
# python-level functions refused on the data path (name without leading underscores / overload)
_REFUSED = frozenset(
    """relu6 hardtanh hardtanh_ leaky_relu leaky_relu_ prelu rrelu rrelu_ elu elu_ selu selu_ celu celu_
    gelu silu mish hardswish hardsigmoid softplus sigmoid sigmoid_ tanh tanh_ logsigmoid softsign
    tanhshrink softshrink hardshrink glu maximum fmax clamp_max clamp_max_ softmax log_softmax""".split()
)
_NONRELU_OK_WHEN_LENIENT = _REFUSED - {"relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_",
                                       "prelu", "rrelu", "rrelu_", "maximum", "fmax", "clamp_max",
                                       "clamp_max_"}


def _op_name(func) -> str:
    name = getattr(func, "__name__", "") or ""
    return name.split(".")[0].lstrip("_") if name.startswith("_") else name.split(".")[0]


def _arg(args, kwargs, pos: int, key: str, default=None):
    if len(args) > pos:
        return args[pos]
    return kwargs.get(key, default)


def _classify(func, args, kwargs) -> tuple[str, object]:
    """("relu", inplace) | ("lrn", None) | ("refuse", why) | ("", None)."""
    name = _op_name(func)
    if name in ("relu", "relu_"):
        inplace = name.endswith("_") or bool(_arg(args, kwargs, 1, "inplace", False))
        return "relu", inplace
    if name in ("threshold", "threshold_"):
        thr, val = _arg(args, kwargs, 1, "threshold"), _arg(args, kwargs, 2, "value")
        if _is_zero(thr) and _is_zero(val):
            return "relu", name.endswith("_") or bool(_arg(args, kwargs, 3, "inplace", False))
        return "refuse", f"threshold(x, {thr}, {val}) (only threshold(x, 0, 0), a ReLU, is supported)"
    if name in ("clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_"):
        lo = _arg(args, kwargs, 1, "min")
        hi = None if name.startswith("clamp_min") else _arg(args, kwargs, 2, "max")
        if _is_zero(lo) and hi is None:
            return "relu", name.endswith("_")
        return "refuse", f"{name}(min={lo!r}, max={hi!r}) (only clamp(min=0), a ReLU, is supported)"
    if name in _REFUSED:
        return "refuse", name
    if name == "local_response_norm":
        return "lrn", None
    return "", None


def _is_zero(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == 0


def _first_tensor(args) -> torch.Tensor | None:
    return args[0] if args and isinstance(args[0], torch.Tensor) else None


class _RectifierGuard(TorchDispatchMode):
    """Backstop: an aten rectifier executed outside the deconvnet's own handling is an error.

    Use as ``with _RectifierGuard() as guard: ...`` and pass exceptions through ``guard.reraise``: an error
    raised inside TorchScript comes back as a bare RuntimeError, the guard remembers what it was.
    """

    def __init__(self):
        super().__init__()
        self.violation: str | None = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in _GUARDED_ATEN and not getattr(_state, "depth", 0):
            self.violation = (
                f"the forward pass runs aten.{name} outside the Python-level ops the deconvnet replaces "
                "(TorchScript / a C++ op?); its backward would be the ordinary gradient, not the "
                "deconvnet's. Write ReLUs as nn.ReLU / F.relu / torch.relu in Python code."
            )
            raise UnsupportedOpError(self.violation)
        return func(*args, **(kwargs or {}))

    def reraise(self, exc: BaseException) -> None:
        if self.violation is not None and not isinstance(exc, UnsupportedOpError):
            raise UnsupportedOpError(self.violation) from exc


def _refusal(name: str, where: str) -> UnsupportedOpError:
    return UnsupportedOpError(
        f"{where}: {name} on the data path is not a ReLU; the deconvnet (Zeiler & Fergus §2.1) defines the "
        "backward of ReLUs only (covered: nn.ReLU, F.relu, torch.relu, Tensor.relu, relu_, "
        "F.threshold(x, 0, 0), clamp(min=0))"
    )


# ------------------------------------------------------------------------------ autograd functions
class _DeconvReLU(torch.autograd.Function):
    """Forward: ReLU. Backward: ReLU of the incoming signal (the deconvnet's "rectify")."""

    @staticmethod
    def forward(ctx, x):
        with _sanctioned():
            return torch.relu(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0)


class _DeconvReLUInplace(_DeconvReLU):
    """The in-place ReLU of the same deconvnet (backward inherited)."""

    @staticmethod
    def forward(ctx, x):
        ctx.mark_dirty(x)
        with _sanctioned():
            return torch.relu_(x)


class _LRNPassThrough(torch.autograd.Function):
    """Forward: local response normalisation. Backward: identity (the paper's deconvnet has no LRN step)."""

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):
        return F.local_response_norm(x, size, alpha=alpha, beta=beta, k=k)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None, None, None


_LRN_SIG = inspect.signature(F.local_response_norm)


def _lrn_params(args, kwargs) -> tuple[torch.Tensor, int, float, float, float]:
    b = _LRN_SIG.bind(*args, **kwargs)
    b.apply_defaults()
    a = b.arguments
    return a["input"], int(a["size"]), float(a["alpha"]), float(a["beta"]), float(a["k"])


class _DeconvMode(TorchFunctionMode):
    """Active during ``project``'s forward: swaps ReLU calls (and LRN, by policy) for deconvnet versions."""

    def __init__(self, lrn: str, strict: bool, x: torch.Tensor):
        super().__init__()
        self.lrn, self.strict, self.x = lrn, strict, x

    def _on_data_path(self, t: torch.Tensor | None) -> bool:
        return t is not None and (t is self.x or t.grad_fn is not None)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind, info = _classify(func, args, kwargs)
        if not kind:
            return func(*args, **kwargs)
        t = _first_tensor(args)
        if not self._on_data_path(t):
            with _sanctioned():
                return func(*args, **kwargs)
        if kind == "relu":
            return (_DeconvReLUInplace if info else _DeconvReLU).apply(t)
        if kind == "lrn":
            if self.lrn == "gradient":
                return func(*args, **kwargs)
            x, size, alpha, beta, k = _lrn_params(args, kwargs)
            return _LRNPassThrough.apply(x, size, alpha, beta, k)
        # refuse
        if not self.strict and info in _NONRELU_OK_WHEN_LENIENT:
            with _sanctioned():
                return func(*args, **kwargs)
        raise _refusal(str(info), "deconvnet.project")


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


# ------------------------------------------------------------------------------------ project (API)
def project(
    model: nn.Module,
    images: torch.Tensor,
    layer: str | nn.Module,
    channels: Sequence[int] | torch.Tensor | None = None,
    positions: Sequence[Sequence[int]] | torch.Tensor | None = None,
    *,
    lrn: str = "identity",
    strict: bool = True,
    return_units: bool = False,
):
    """Deconvnet projection of one unit per example to pixel space: ``(B, 3, H, W)`` (dtype of ``images``).

    ``images`` (B, 3, H, W): mean-subtracted input. ``layer``: module path (``"conv5"``, ``"features.10"``).
    Unit per example: see :func:`select_units` (``channels=None``: the strongest activation). The seed is
    the unit's activation value; one backward projects the batch. ``lrn``: ``"identity"`` (the paper's
    deconvnet, default) or ``"gradient"`` (Captum's convention). With ``return_units=True`` also returns
    ``(channel, y, x, value)`` tensors (B,).
    """
    _check_lrn(lrn)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images: expected a (B, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    target = resolve_layer(model, layer)
    captured: dict[str, torch.Tensor] = {}

    def hook(_m, _inp, out):
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"layer {layer!r} returns {type(out).__name__}, expected a tensor")
        captured["out"] = out
        raise _Stop

    x = images.detach().clone().requires_grad_(True)
    handle = target.register_forward_hook(hook)
    try:
        with _eval_mode(model), torch.enable_grad():
            guard = _RectifierGuard()
            try:
                with _DeconvMode(lrn, strict, x), guard:
                    model(x)
            except _Stop:
                pass
            except RuntimeError as exc:
                guard.reraise(exc)
                raise
            if "out" not in captured:
                raise RuntimeError(f"layer {layer!r} was not called by the model's forward pass")
            acts = captured["out"]
            ch, ys, xs, vals = select_units(acts, channels, positions)
            seed = torch.zeros_like(acts)
            bidx = torch.arange(acts.shape[0], device=acts.device)
            if acts.ndim == 2:
                seed[bidx, ch] = vals
            else:
                seed[bidx, ch, ys, xs] = vals
            if acts.grad_fn is None:
                raise RuntimeError(f"layer {layer!r} output does not depend on the input")
            (proj,) = torch.autograd.grad(acts, x, seed)
    finally:
        handle.remove()
    proj = proj.detach()
    if return_units:
        return proj, (ch, ys, xs, vals.detach())
    return proj


# ===================================================================================== fast engine
@dataclass
class _Op:
    kind: str  # conv | pool | relu | lrn
    in_shape: tuple[int, int, int]  # (C, H, W) of this op's input
    out_shape: tuple[int, int, int]
    k: tuple[int, int] = (1, 1)  # effective (dilated) kernel extent per axis
    s: tuple[int, int] = (1, 1)
    p: tuple[int, int] = (0, 0)  # padding before the first row / column
    weight: torch.Tensor | None = None
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    lrn: tuple[int, float, float, float] | None = None
    desc: str = ""


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) == 2 else (int(v[0]), int(v[0]))
    return int(v), int(v)


_CONV_SIG = inspect.signature(lambda input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1: None)
_POOL_SIG = inspect.signature(F.max_pool2d_with_indices)
_DROPOUT_NAMES = frozenset({"dropout", "dropout2d", "dropout1d", "dropout3d", "alpha_dropout",
                            "feature_alpha_dropout"})
_IDENTITY_NAMES = frozenset({"contiguous", "clone"})


def _flat_tensors(args, kwargs) -> Iterator[torch.Tensor]:
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from (t for t in a if isinstance(t, torch.Tensor))


def _switch_offsets(idx: torch.Tensor, w_in: int, s: tuple[int, int], p: tuple[int, int],
                    keff: tuple[int, int]) -> torch.Tensor:
    """Pool switches as offsets inside their pool window: (N, Ho, Wo, C, 2) uint8 (dy, dx)."""
    if max(keff) > 255:
        raise NotAChainError(f"max pool window {keff} too large")
    n, c, ho, wo = idx.shape
    iy = torch.div(idx, w_in, rounding_mode="floor")
    ix = idx - iy * w_in
    oy = torch.arange(ho, device=idx.device).view(1, 1, ho, 1) * s[0] - p[0]
    ox = torch.arange(wo, device=idx.device).view(1, 1, 1, wo) * s[1] - p[1]
    off = torch.stack([iy - oy, ix - ox], dim=-1)  # (N, C, Ho, Wo, 2)
    return off.permute(0, 2, 3, 1, 4).to(torch.uint8).contiguous()


def _lrn_factors(a: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """(3, N, H, W, C): the LRN input a, D^-beta and a * D^(-beta-1) (D as in F.local_response_norm)."""
    sq = (a * a).unsqueeze(1)
    sq = F.pad(sq, (0, 0, 0, 0, size // 2, (size - 1) // 2))
    div = F.avg_pool3d(sq, (size, 1, 1), stride=1).squeeze(1)
    div = div.mul(alpha).add(k)
    dbeta = div.pow(beta)
    fac = torch.stack([a, 1.0 / dbeta, a / (dbeta * div)])  # (3, N, C, H, W)
    return fac.permute(0, 1, 3, 4, 2).contiguous()


class _ChainRecorder(TorchFunctionMode):
    """Records the conv/relu/pool/LRN chain from the input to the target layers during a real forward."""

    def __init__(self, x: torch.Tensor, keep_lrn_inputs: bool):
        super().__init__()
        self.head = x
        self.chain_ids = {id(x)}
        self._alive = [x]  # keep chain tensors alive so ids stay unique
        self.ops: list[_Op] = []
        self.pool_idx: dict[int, torch.Tensor] = {}
        self.lrn_in: dict[int, torch.Tensor] = {}
        self.keep_lrn_inputs = keep_lrn_inputs
        self.paused = False  # set while the recorder's own hooks run tensor ops

    def _advance(self, out: torch.Tensor) -> None:
        self.head = out
        self.chain_ids.add(id(out))
        self._alive.append(out)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.paused:
            with _sanctioned():
                return func(*args, **kwargs)
        consumed = [t for t in _flat_tensors(args, kwargs) if id(t) in self.chain_ids]
        kind, info = _classify(func, args, kwargs)
        if not consumed:
            if kind in ("relu", "refuse", "lrn"):
                with _sanctioned():
                    return func(*args, **kwargs)
            return func(*args, **kwargs)
        name = _op_name(func)
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if x is not self.head or any(t is not self.head for t in consumed):
            out = func(*args, **kwargs)
            if not isinstance(out, torch.Tensor):
                return out  # metadata (size, dim, ...)
            raise NotAChainError(
                f"{name} consumes an earlier tensor of the chain (a branch / skip connection): the fast "
                "Deconvnet needs a plain chain; use deconvnet.project"
            )
        c_in, h_in, w_in = (tuple(x.shape[1:]) + (1, 1, 1))[:3]
        if kind == "relu":
            with _sanctioned():
                out = func(*args, **kwargs)
            self.ops.append(_Op("relu", (c_in, h_in, w_in), tuple(out.shape[1:]), desc=name))
            self._advance(out)
            return out
        if kind == "refuse":
            raise _refusal(str(info), "Deconvnet")
        if kind == "lrn":
            xx, size, alpha, beta, k = _lrn_params(args, kwargs)
            out = func(*args, **kwargs)
            i = len(self.ops)
            if self.keep_lrn_inputs:
                self.lrn_in[i] = _lrn_factors(x.detach(), size, alpha, beta, k)
            self.ops.append(_Op("lrn", (c_in, h_in, w_in), tuple(out.shape[1:]), lrn=(size, alpha, beta, k),
                                desc="local_response_norm"))
            self._advance(out)
            return out
        if func is F.conv2d:
            if x.ndim != 4:
                raise NotAChainError(f"conv2d on a {x.ndim}-D tensor")
            b = _CONV_SIG.bind(*args, **kwargs)
            b.apply_defaults()
            a = b.arguments
            w = a["weight"]
            kh, kw = w.shape[-2:]
            d = _pair(a["dilation"])
            keff = ((kh - 1) * d[0] + 1, (kw - 1) * d[1] + 1)
            pad = a["padding"]
            if pad == "valid":
                pad = (0, 0)
            elif pad == "same":
                pad = ((keff[0] - 1) // 2, (keff[1] - 1) // 2)
            out = func(*args, **kwargs)
            self.ops.append(_Op("conv", (c_in, h_in, w_in), tuple(out.shape[1:]), k=keff, s=_pair(a["stride"]),
                                p=_pair(pad), weight=w.detach(), dilation=d, groups=int(a["groups"]),
                                desc=f"conv2d {tuple(w.shape)}"))
            self._advance(out)
            return out
        if func is F.max_pool2d or func is F.max_pool2d_with_indices:
            b = _POOL_SIG.bind(*args, **kwargs)
            b.apply_defaults()
            a = b.arguments
            ks = _pair(a["kernel_size"])
            st = _pair(a["stride"]) if a["stride"] not in (None, [], ()) else ks
            d = _pair(a["dilation"])
            keff = ((ks[0] - 1) * d[0] + 1, (ks[1] - 1) * d[1] + 1)
            out, idx = F.max_pool2d_with_indices(x, ks, st, a["padding"], d, a["ceil_mode"])
            i = len(self.ops)
            pad = _pair(a["padding"])
            self.pool_idx[i] = _switch_offsets(idx, w_in, st, pad, keff)
            self.ops.append(_Op("pool", (c_in, h_in, w_in), tuple(out.shape[1:]), k=keff, s=st,
                                p=pad, desc=f"max_pool2d {ks}/{st}"))
            self._advance(out)
            return (out, idx) if a["return_indices"] else out
        if name in _DROPOUT_NAMES:
            training = _arg(args, kwargs, 2, "training", True)
            if training:
                raise NotAChainError("dropout in training mode on the chain")
            out = func(*args, **kwargs)
            if isinstance(out, torch.Tensor):
                self._advance(out)
            return out
        out = func(*args, **kwargs)
        if not isinstance(out, torch.Tensor):
            return out
        if name in _IDENTITY_NAMES:
            self._advance(out)
            return out
        raise NotAChainError(
            f"{name} on the chain: the fast Deconvnet supports conv2d, ReLU, max_pool2d, local_response_norm "
            "and dropout (eval) only; use deconvnet.project for other models"
        )


@dataclass
class Projections:
    """Projections in their units' receptive-field frames.

    ``values[u]`` (3, h, w) covers image rows ``top[u] .. top[u] + h`` and columns ``left[u] .. left[u] + w``
    (the unclipped receptive field; rows/columns outside the image are zero). ``full()`` pastes them into
    full-size images; ``crop(images, image_index)`` cuts the same windows out of images.
    """

    values: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    image_size: tuple[int, int]
    units: dict[str, torch.Tensor] = field(default_factory=dict)  # image_index, channel, y, x, value

    def __len__(self) -> int:
        return self.values.shape[0]

    def full(self) -> torch.Tensor:
        """(U, 3, H, W): each projection pasted into a full-size image."""
        return _paste(self.values, self.top, self.left, self.image_size)

    def crop(self, images: torch.Tensor, image_index: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """The windows of ``images[image_index]`` matching ``values`` (zero outside the image)."""
        if image_index is None:
            image_index = self.units["image_index"]
        image_index = torch.as_tensor(image_index, dtype=torch.long)
        _, _, h, w = self.values.shape
        H, W = images.shape[-2:]
        out = images.new_zeros((len(image_index), images.shape[1], h, w))
        for i, (n, t, l) in enumerate(zip(image_index.tolist(), self.top.tolist(), self.left.tolist())):
            y0, y1, x0, x1 = max(t, 0), min(t + h, H), max(l, 0), min(l + w, W)
            if y0 < y1 and x0 < x1:
                out[i, :, y0 - t:y1 - t, x0 - l:x1 - l] = images[n, :, y0:y1, x0:x1]
        return out


def _paste(values: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    u, c, h, w = values.shape
    H, W = size
    out = values.new_zeros((u, c, H, W))
    for i, (t, l) in enumerate(zip(top.tolist(), left.tolist())):
        y0, y1, x0, x1 = max(t, 0), min(t + h, H), max(l, 0), min(l + w, W)
        if y0 < y1 and x0 < x1:
            out[i, :, y0:y1, x0:x1] = values[i, :, y0 - t:y1 - t, x0 - l:x1 - l]
    return out


@dataclass(frozen=True)
class _AxisProfile:
    starts: tuple[int, ...]  # clipped window start at every level 0..end
    lengths: tuple[int, ...]
    conv_off: tuple[int, ...]  # per op i: clipped start at level i minus the unclipped start from level i+1
    vstart: int  # unclipped receptive-field start at the input
    vlen: int

    def key(self):
        return self.lengths, self.conv_off, self.starts[0] - self.vstart


def _axis_profile(ops: Sequence[_Op], end: int, pos: int, axis: int) -> _AxisProfile:
    starts = [0] * (end + 1)
    lengths = [0] * (end + 1)
    off = [0] * end
    cs, ce, vs, ve = pos, pos + 1, pos, pos + 1
    starts[end], lengths[end] = cs, 1
    for i in reversed(range(end)):
        op = ops[i]
        if op.kind in ("conv", "pool"):
            k, s, p = op.k[axis], op.s[axis], op.p[axis]
            n = op.in_shape[1 + axis]
            a, b = cs * s - p, (ce - 1) * s - p + k
            cs, ce = max(0, a), min(n, b)
            off[i] = cs - a
            vs, ve = vs * s - p, (ve - 1) * s - p + k
        starts[i], lengths[i] = cs, max(0, ce - cs)
    return _AxisProfile(tuple(starts), tuple(lengths), tuple(off), vs, ve - vs)


def _polyphase_weight(w: torch.Tensor, s: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
    """conv_transpose2d(g, w, stride=s) == pixel_shuffle-style interleave of conv2d(pad(g), wp)."""
    cin_t, cout_t, kh, kw = w.shape  # conv_transpose weight layout: (in of transpose, out of transpose, kh, kw)
    jy, jx = -(-kh // s[0]), -(-kw // s[1])
    wp = w.new_zeros((cout_t, s[0], s[1], cin_t, jy, jx))
    for ry in range(s[0]):
        for rx in range(s[1]):
            for ty in range(jy):
                ky = s[0] * (jy - 1 - ty) + ry
                if ky >= kh:
                    continue
                for tx in range(jx):
                    kx = s[1] * (jx - 1 - tx) + rx
                    if kx >= kw:
                        continue
                    wp[:, ry, rx, :, ty, tx] = w[:, :, ky, kx].t()
    return wp.reshape(cout_t * s[0] * s[1], cin_t, jy, jx), (jy, jx)


class Deconvnet:
    """Fast deconvnet for many units: cached switches, receptive-field windows, units batched.

    >>> dn = Deconvnet(model, ["conv1", "conv5"])          # layers: module paths
    >>> dn.cache(images)                                    # one forward per image (switches, activations)
    >>> p = dn.project_units("conv5", image_index, channels, ys, xs)   # Projections, RF frames
    >>> p.full()                                            # (U, 3, H, W), equal to project(...)

    ``lrn``: as in :func:`project`. ``memory_mb``: working-set budget per batch of units.
    Raises :class:`NotAChainError` if the path to a layer is not a plain conv/relu/pool/LRN chain.
    """

    def __init__(self, model: nn.Module, layers: Iterable[str | nn.Module], *, lrn: str = "identity",
                 memory_mb: float = 192.0):
        self.model = model
        self.lrn = _check_lrn(lrn)
        self.layers = list(layers)
        if not self.layers:
            raise ValueError("layers: give at least one layer")
        self.targets = {(l if isinstance(l, str) else str(id(l))): resolve_layer(model, l) for l in self.layers}
        self.memory_bytes = memory_mb * 2**20
        self.ops: list[_Op] | None = None
        self.ends: dict[str, int] = {}
        self.acts: dict[str, torch.Tensor] = {}
        self.pool_idx: dict[int, torch.Tensor] = {}
        self.lrn_in: dict[int, torch.Tensor] = {}
        self.image_size: tuple[int, int] | None = None
        self._poly: dict[int, tuple[torch.Tensor, tuple[int, int]]] = {}
        self._profiles: dict[tuple, _AxisProfile] = {}

    # -- forward ---------------------------------------------------------------------------------
    def _record(self, x: torch.Tensor) -> tuple[_ChainRecorder, dict[str, torch.Tensor], dict[str, int]]:
        rec = _ChainRecorder(x, keep_lrn_inputs=self.lrn == "gradient")
        outs: dict[str, torch.Tensor] = {}
        ends: dict[str, int] = {}
        remaining = set(self.targets)
        handles = []

        def make_hook(name):
            def hook(_m, _inp, out):
                if name in outs:
                    return
                if out is not rec.head:
                    raise NotAChainError(
                        f"the output of layer {name!r} is not the end of the recorded chain (the module "
                        "transforms its input with ops the recorder did not see, or returns a non-tensor)"
                    )
                # a copy: a later in-place op (ReLU(inplace=True) after a conv) must not change it
                rec.paused = True
                try:
                    outs[name], ends[name] = out.detach().clone(), len(rec.ops)
                finally:
                    rec.paused = False
                remaining.discard(name)
                if not remaining:
                    raise _Stop

            return hook

        for name, mod in self.targets.items():
            handles.append(mod.register_forward_hook(make_hook(name)))
        guard = _RectifierGuard()
        try:
            with rec, guard:
                self.model(x)
        except _Stop:
            pass
        except RuntimeError as exc:
            guard.reraise(exc)
            raise
        finally:
            for h in handles:
                h.remove()
        if remaining:
            raise RuntimeError(f"layers {sorted(remaining)} were not called by the model's forward pass")
        return rec, outs, ends

    @torch.no_grad()
    def cache(self, images: torch.Tensor, batch_size: int = 16) -> "Deconvnet":
        """One forward per image: the switches of every pool and the activations of the layers."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError(f"images: expected a (N, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")
        dtype, device = _model_dtype_device(self.model)
        pools: dict[int, list] = {}
        lrns: dict[int, list] = {}
        acts: dict[str, list] = {}
        ops = None
        with _eval_mode(self.model):
            for s in range(0, images.shape[0], batch_size):
                x = images[s:s + batch_size].to(device=device, dtype=dtype)
                rec, outs, ends = self._record(x)
                sig = [(o.kind, o.in_shape, o.out_shape, o.k, o.s, o.p) for o in rec.ops]
                if ops is None:
                    ops, sig0, self.ends = rec.ops, sig, ends
                elif sig != sig0:
                    raise NotAChainError("the recorded chain changed between batches")
                for i, t in rec.pool_idx.items():
                    pools.setdefault(i, []).append(t)
                for i, t in rec.lrn_in.items():
                    lrns.setdefault(i, []).append(t)
                for name, t in outs.items():
                    acts.setdefault(name, []).append(t.detach())
        self.ops = ops
        self.pool_idx = {i: torch.cat(v) for i, v in pools.items()}
        self.lrn_in = {i: torch.cat(v, dim=1) for i, v in lrns.items()}
        self.acts = {k: torch.cat(v) for k, v in acts.items()}
        self.image_size = tuple(images.shape[-2:])
        self._profiles.clear()
        for name, end in self.ends.items():
            if end == 0:
                raise NotAChainError(f"layer {name!r} outputs the input itself (no op before it)")
            if self.acts[name].ndim != 4:
                raise NotAChainError(f"layer {name!r} output is not a (N, C, H, W) map")
        return self

    # -- geometry --------------------------------------------------------------------------------
    def _profile(self, end: int, pos: int, axis: int) -> _AxisProfile:
        key = (end, pos, axis)
        if key not in self._profiles:
            self._profiles[key] = _axis_profile(self.ops, end, pos, axis)
        return self._profiles[key]

    def _name(self, layer) -> str:
        name = layer if isinstance(layer, str) else str(id(layer))
        if self.ops is None:
            raise RuntimeError("call cache(images) first")
        if name not in self.ends:
            raise KeyError(f"layer {layer!r} was not given to this Deconvnet; layers: {list(self.ends)}")
        return name

    def receptive_field(self, layer, y: int, x: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), bottom/right exclusive: the input pixels that can reach unit (y, x)."""
        end = self.ends[self._name(layer)]
        py, px = self._profile(end, int(y), 0), self._profile(end, int(x), 1)
        return py.starts[0], px.starts[0], py.starts[0] + py.lengths[0], px.starts[0] + px.lengths[0]

    # -- backward --------------------------------------------------------------------------------
    def _conv_t(self, g: torch.Tensor, i: int) -> torch.Tensor:
        op = self.ops[i]
        w = op.weight.to(g.dtype)
        if op.groups == 1 and op.dilation == (1, 1) and op.s != (1, 1) and op.in_shape[0] <= 8:
            # few output channels (RGB): the polyphase form runs as an ordinary conv with good GEMM shapes
            if i not in self._poly or self._poly[i][0].dtype != g.dtype:
                self._poly[i] = _polyphase_weight(w, op.s)
            wp, (jy, jx) = self._poly[i]
            h, w_ = g.shape[-2:]
            r = F.conv2d(g, wp, padding=(jy - 1, jx - 1))
            r = F.pixel_shuffle(r, op.s[0]) if op.s[0] == op.s[1] else _interleave(r, op.s)
            return r[..., : (h - 1) * op.s[0] + op.k[0], : (w_ - 1) * op.s[1] + op.k[1]]
        return F.conv_transpose2d(g, w, stride=op.s, dilation=op.dilation, groups=op.groups)

    def _unpool(self, g, i, n, rows, cols, off_y, off_x, h_in, w_in):
        """Scatter-add g (U, C, h, w) at the cached switches: (U, C, h_in, w_in), channels-last."""
        op = self.ops[i]
        u, c, h, w = g.shape
        d = self.pool_idx[i][n[:, None, None], rows[:, :, None], cols[:, None, :]]  # (U, h, w, C, 2)
        # switch of window output (r, q): row r*s - off_y + dy, column q*s - off_x + dx of the input window
        dev = g.device
        base = ((torch.arange(h, device=dev) * op.s[0] - off_y)[:, None] * w_in
                + (torch.arange(w, device=dev) * op.s[1] - off_x)[None, :])
        local = d[..., 0].long() * w_in
        local += d[..., 1]
        local += base[None, :, :, None]
        src = g.permute(0, 2, 3, 1).reshape(u, h * w, c)
        out = g.new_zeros((u, h_in * w_in, c))
        out.scatter_add_(1, local.view(u, h * w, c), src)
        return out.view(u, h_in, w_in, c).permute(0, 3, 1, 2)

    def _lrn_grad(self, g, i, n, rows, cols):
        """Vector-Jacobian product of F.local_response_norm on the window (cross-channel, pointwise in space)."""
        size, alpha, beta, k = self.ops[i].lrn
        fac = self.lrn_in[i]  # (3, N, H, W, C)
        a, p, q = (fac[j][n[:, None, None], rows[:, :, None], cols[:, None, :]].to(g.dtype) for j in range(3))
        gl = g.permute(0, 2, 3, 1)  # (U, h, w, C)
        t = F.pad(gl * q, (size // 2, (size - 1) // 2))
        c = gl.shape[-1]
        box = t[..., 0:c].clone()
        for j in range(1, size):
            box += t[..., j:j + c]
        out = gl * p - (2.0 * alpha * beta / size) * a * box
        return out.permute(0, 3, 1, 2)

    def _backward(self, end, py, px, n, ch, vals, sy, sx):
        """Project a batch of units with the same window geometry. sy/sx: (U, end+1) clipped starts."""
        ops = self.ops
        u = n.shape[0]
        dev = vals.device
        ar = torch.arange(u, device=dev)
        g = vals.new_zeros((u, ops[end - 1].out_shape[0], 1, 1))
        g[ar, ch, 0, 0] = vals
        g = g.contiguous(memory_format=torch.channels_last)
        for i in reversed(range(end)):
            op = ops[i]
            if op.kind == "relu":
                g = g.clamp_(min=0)
            elif op.kind == "lrn":
                if self.lrn == "gradient":
                    rows = sy[:, i, None] + torch.arange(py.lengths[i], device=dev)
                    cols = sx[:, i, None] + torch.arange(px.lengths[i], device=dev)
                    g = self._lrn_grad(g, i, n, rows, cols)
            elif op.kind == "pool":
                rows = sy[:, i + 1, None] + torch.arange(py.lengths[i + 1], device=dev)
                cols = sx[:, i + 1, None] + torch.arange(px.lengths[i + 1], device=dev)
                g = self._unpool(g, i, n, rows, cols, py.conv_off[i], px.conv_off[i], py.lengths[i],
                                 px.lengths[i])
            elif op.kind == "conv":
                g = self._conv_t(g.contiguous(memory_format=torch.channels_last), i)
                oy, ox = py.conv_off[i], px.conv_off[i]
                g = g[:, :, oy:oy + py.lengths[i], ox:ox + px.lengths[i]]
        return g

    def _unit_bytes(self, end, py, px, dtype) -> float:
        esz = torch.empty((), dtype=dtype).element_size()
        worst = 0
        for i in range(end + 1):
            c = self.ops[i].in_shape[0] if i < end else self.ops[end - 1].out_shape[0]
            worst = max(worst, c * py.lengths[i] * px.lengths[i])
            if i < end and self.ops[i].kind == "conv":  # transposed conv output before slicing
                op = self.ops[i]
                hh = (py.lengths[i + 1] - 1) * op.s[0] + op.k[0]
                ww = (px.lengths[i + 1] - 1) * op.s[1] + op.k[1]
                worst = max(worst, op.in_shape[0] * hh * ww * (4 if op.in_shape[0] <= 8 else 1))
        return worst * (3 * esz + 16)

    def iter_project_units(self, layer, image_index, channels, ys, xs, values=None
                           ) -> Iterator[tuple[torch.Tensor, Projections]]:
        """Yield ``(positions in the input lists, Projections)`` batch by batch (same geometry per batch)."""
        name = self._name(layer)
        end = self.ends[name]
        acts = self.acts[name]
        dev = acts.device
        n = torch.as_tensor(image_index, dtype=torch.long).reshape(-1).cpu()
        ch = torch.as_tensor(channels, dtype=torch.long).reshape(-1).cpu()
        yy = torch.as_tensor(ys, dtype=torch.long).reshape(-1).cpu()
        xx = torch.as_tensor(xs, dtype=torch.long).reshape(-1).cpu()
        if not (len(n) == len(ch) == len(yy) == len(xx)):
            raise ValueError("image_index, channels, ys, xs: expected equal lengths")
        _, c_n, h_n, w_n = acts.shape
        for what, t, hi in (("image_index", n, acts.shape[0]), ("channels", ch, c_n), ("ys", yy, h_n),
                            ("xs", xx, w_n)):
            if len(t) and ((t < 0) | (t >= hi)).any():
                raise ValueError(f"{what}: expected values in [0, {hi}) for layer {name!r}")
        if values is None:
            vals_all = acts[n.to(dev), ch.to(dev), yy.to(dev), xx.to(dev)]
        else:
            vals_all = torch.as_tensor(values, dtype=acts.dtype, device=dev).reshape(-1)
        groups: dict[tuple, list[int]] = {}
        for j, (y, x) in enumerate(zip(yy.tolist(), xx.tolist())):
            key = (self._profile(end, y, 0).key(), self._profile(end, x, 1).key())
            groups.setdefault(key, []).append(j)
        for members in groups.values():
            sel = torch.tensor(members, dtype=torch.long)
            y0, x0 = int(yy[sel[0]]), int(xx[sel[0]])
            py, px = self._profile(end, y0, 0), self._profile(end, x0, 1)
            chunk = max(1, int(self.memory_bytes // max(1.0, self._unit_bytes(end, py, px, acts.dtype))))
            sy_all = torch.tensor([self._profile(end, int(v), 0).starts for v in yy[sel].tolist()], device=dev)
            sx_all = torch.tensor([self._profile(end, int(v), 1).starts for v in xx[sel].tolist()], device=dev)
            for s in range(0, len(members), chunk):
                part = sel[s:s + chunk]
                sl = slice(s, s + chunk)
                nd = n[part].to(dev)
                if min(py.lengths) == 0 or min(px.lengths) == 0:
                    g = acts.new_zeros((len(part), self.ops[0].in_shape[0], max(py.lengths[0], 0),
                                        max(px.lengths[0], 0)))
                else:
                    g = self._backward(end, py, px, nd, ch[part].to(dev), vals_all[part.to(dev)],
                                       sy_all[sl], sx_all[sl])
                oy, ox = py.starts[0] - py.vstart, px.starts[0] - px.vstart
                frame = g.new_zeros((len(part), g.shape[1], py.vlen, px.vlen))
                frame[:, :, oy:oy + g.shape[2], ox:ox + g.shape[3]] = g
                top = torch.full((len(part),), 0, dtype=torch.long)
                left = torch.full((len(part),), 0, dtype=torch.long)
                for q, j in enumerate(part.tolist()):
                    top[q] = self._profile(end, int(yy[j]), 0).vstart
                    left[q] = self._profile(end, int(xx[j]), 1).vstart
                units = {"image_index": n[part], "channel": ch[part], "y": yy[part], "x": xx[part],
                         "value": vals_all[part.to(dev)].detach().cpu()}
                yield part, Projections(frame.contiguous(), top, left, self.image_size, units)

    def project_units(self, layer, image_index, channels, ys, xs, values=None) -> Projections:
        """Projections of the units ``(image_index[j], channels[j], ys[j], xs[j])`` of ``layer``, in order.

        ``image_index`` indexes the images given to :meth:`cache`. ``values`` (optional) overrides the seed
        values (default: the cached activations, i.e. the units' own values).
        """
        name = self._name(layer)
        end = self.ends[name]
        u = len(torch.as_tensor(channels).reshape(-1))
        vlen_y = _axis_profile(self.ops, end, 0, 0).vlen
        vlen_x = _axis_profile(self.ops, end, 0, 1).vlen
        acts = self.acts[name]
        out = acts.new_zeros((u, self.ops[0].in_shape[0], vlen_y, vlen_x))
        top = torch.zeros(u, dtype=torch.long)
        left = torch.zeros(u, dtype=torch.long)
        units = {k: torch.zeros(u, dtype=torch.long) for k in ("image_index", "channel", "y", "x")}
        units["value"] = torch.zeros(u, dtype=acts.dtype)
        for part, p in self.iter_project_units(layer, image_index, channels, ys, xs, values):
            out[part.to(out.device)] = p.values
            top[part], left[part] = p.top, p.left
            for k, v in p.units.items():
                units[k][part] = v
        return Projections(out, top, left, self.image_size, units)


def _interleave(r: torch.Tensor, s: tuple[int, int]) -> torch.Tensor:
    u, c, h, w = r.shape
    co = c // (s[0] * s[1])
    return r.view(u, co, s[0], s[1], h, w).permute(0, 1, 4, 2, 5, 3).reshape(u, co, h * s[0], w * s[1])


def project_units(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    image_index: Sequence[int] | torch.Tensor,
    channels: Sequence[int] | torch.Tensor,
    ys: Sequence[int] | torch.Tensor,
    xs: Sequence[int] | torch.Tensor,
    *,
    lrn: str = "identity",
) -> Projections:
    """One-shot :class:`Deconvnet`: caches only the images that hold a unit, returns their Projections."""
    idx = torch.as_tensor(image_index, dtype=torch.long).reshape(-1)
    uniq, inv = torch.unique(idx, return_inverse=True)
    dn = Deconvnet(model, [layer], lrn=lrn).cache(images[uniq])
    p = dn.project_units(layer, inv, channels, ys, xs)
    p.units["image_index"] = idx.clone()
    return p
