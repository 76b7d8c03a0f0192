"""The ReLU backward rules of the gradient family (deconvnet, guided backprop) and what they refuse.

A ``TorchFunctionMode`` (:class:`BackpropMode`) is active during the forward pass and sees every ReLU however
it is written: ``nn.ReLU`` (in-place or not, one instance reused at several places: each *call* is
replaced), ``F.relu``, ``torch.relu``, ``Tensor.relu``, the in-place ``relu_`` forms, ``torch.ops.aten.relu``,
``F.threshold(x, 0, 0)`` and ``clamp(min=0)``. Each is swapped for a custom autograd Function with the same
forward and the rule's backward:

* ``"deconvnet"`` (Zeiler & Fergus §2.1, "rectify"): ``relu(incoming signal)``, ignoring the forward sign;
* ``"guided"`` (Springenberg et al. 2015): ``relu(incoming signal) * (forward output > 0)``.

Rectifier-like ops that are *not* a ReLU on the data path (ReLU6, leaky/parametric ReLU, ELU / GELU / SiLU /
Hardswish..., sigmoid, tanh, clamps with other bounds, ``torch.maximum``) raise :class:`UnsupportedOpError`
naming the module that runs them, as the model names it (``features.1.conv.0.2 (ReLU6)``). As a backstop a
``TorchDispatchMode`` (:class:`RectifierGuard`) watches the aten ops actually executed: a rectifier that
bypassed the Python layer (TorchScript, C++ extensions) raises instead of keeping its ordinary gradient.

LRN: ``lrn="identity"`` passes the signal through unchanged on the way down (the paper's deconvnet has no
normalisation inverse); ``lrn="gradient"`` keeps its true gradient (Captum's convention).
"""

from __future__ import annotations

import contextlib
import inspect
import threading

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from zfnet.analysis import hooks

LRN_MODES = ("identity", "gradient")


class UnsupportedOpError(RuntimeError):
    """The forward pass contains a nonlinearity the deconvnet cannot treat as a ReLU."""


def check_lrn(lrn: str) -> str:
    if lrn not in LRN_MODES:
        raise ValueError(f"lrn: expected one of {list(LRN_MODES)}, got {lrn!r}")
    return lrn


# -------------------------------------------------------------------------- rectifier classification
_state = threading.local()


@contextlib.contextmanager
def sanctioned():
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


def op_name(func) -> str:
    name = getattr(func, "__name__", "") or ""
    return name.split(".")[0].lstrip("_") if name.startswith("_") else name.split(".")[0]


def arg(args, kwargs, pos: int, key: str, default=None):
    if len(args) > pos:
        return args[pos]
    return kwargs.get(key, default)


def classify(func, args, kwargs) -> tuple[str, object]:
    """("relu", inplace) | ("lrn", None) | ("refuse", why) | ("", None)."""
    name = op_name(func)
    if name in ("relu", "relu_"):
        inplace = name.endswith("_") or bool(arg(args, kwargs, 1, "inplace", False))
        return "relu", inplace
    if name in ("threshold", "threshold_"):
        thr, val = arg(args, kwargs, 1, "threshold"), arg(args, kwargs, 2, "value")
        if _is_zero(thr) and _is_zero(val):
            return "relu", name.endswith("_") or bool(arg(args, kwargs, 3, "inplace", False))
        return "refuse", f"threshold(x, {thr}, {val}) (only threshold(x, 0, 0), a ReLU, is supported)"
    if name in ("clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_"):
        lo = arg(args, kwargs, 1, "min")
        hi = None if name.startswith("clamp_min") else arg(args, kwargs, 2, "max")
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


class RectifierGuard(TorchDispatchMode):
    """Backstop: an aten rectifier executed outside the deconvnet's own handling is an error.

    Use as ``with RectifierGuard() as guard: ...`` and pass exceptions through ``guard.reraise``: an error
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


_RULE_NAMES = {"deconvnet": "the deconvnet (Zeiler & Fergus §2.1)", "guided": "guided backpropagation"}


def refusal(name: str, where: str, rule: str = "deconvnet") -> UnsupportedOpError:
    return UnsupportedOpError(
        f"{where}: {name} on the data path is not a ReLU; {_RULE_NAMES.get(rule, rule)} defines the "
        "backward of ReLUs only (covered: nn.ReLU, F.relu, torch.relu, Tensor.relu, relu_, "
        "F.threshold(x, 0, 0), clamp(min=0)); gradient saliency (zfnet.analysis.deconvnet.saliency) takes "
        "any nonlinearity"
    )


class ModuleTracker:
    """Which module of ``model`` is running (forward pre/post hooks on every module): names refusals.

    ``where()`` gives the innermost running module as the model names it, e.g. ``"module
    'features.1.conv.0.2' (ReLU6)"``.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.stack: list[tuple[str, nn.Module]] = []
        self._attached = None

    def __enter__(self) -> "ModuleTracker":
        def push(name):
            def pre(mod, _inp):
                self.stack.append((name, mod))
            return pre

        def pop(_mod, _inp, _out):
            if self.stack:
                self.stack.pop()

        named = list(self.model.named_modules())
        self._attached = hooks.attached([(m, pop) for _n, m in named], pre=[(m, push(n)) for n, m in named])
        self._attached.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._attached.__exit__(*exc)
        self._attached = None

    def where(self) -> str:
        if not self.stack:
            return "the model's own forward code"
        name, mod = self.stack[-1]
        return f"module {name or '<model>'!r} ({type(mod).__name__})"


# ------------------------------------------------------------------------------ autograd functions
class _DeconvReLU(torch.autograd.Function):
    """Forward: ReLU. Backward: ReLU of the incoming signal (the deconvnet's "rectify")."""

    @staticmethod
    def forward(ctx, x):
        with sanctioned():
            return torch.relu(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0)


class _DeconvReLUInplace(_DeconvReLU):
    """The in-place ReLU of the same deconvnet (backward inherited)."""

    @staticmethod
    def forward(ctx, x):
        ctx.mark_dirty(x)
        with sanctioned():
            return torch.relu_(x)


class _GuidedReLU(torch.autograd.Function):
    """Forward: ReLU. Backward: ReLU of the incoming signal where the forward output is positive."""

    @staticmethod
    def forward(ctx, x):
        with sanctioned():
            out = torch.relu(x)
        ctx.mask = out > 0
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0) * ctx.mask


class _GuidedReLUInplace(_GuidedReLU):
    @staticmethod
    def forward(ctx, x):
        ctx.mark_dirty(x)
        with sanctioned():
            out = torch.relu_(x)
        ctx.mask = out > 0
        return out


_RELU_FN = {"deconvnet": (_DeconvReLU, _DeconvReLUInplace), "guided": (_GuidedReLU, _GuidedReLUInplace)}


class _LRNPassThrough(torch.autograd.Function):
    """Forward: local response normalisation. Backward: identity (the paper's deconvnet has no LRN step)."""

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):
        return F.local_response_norm(x, size, alpha=alpha, beta=beta, k=k)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None, None, None


_LRN_SIG = inspect.signature(F.local_response_norm)


def lrn_params(args, kwargs) -> tuple[torch.Tensor, int, float, float, float]:
    b = _LRN_SIG.bind(*args, **kwargs)
    b.apply_defaults()
    a = b.arguments
    return a["input"], int(a["size"]), float(a["alpha"]), float(a["beta"]), float(a["k"])


class BackpropMode(TorchFunctionMode):
    """Active during a forward pass: swaps ReLU calls (and LRN, by policy) for the rule's versions.

    ``rule``: "deconvnet" or "guided"; ``x``: the input (ops on tensors that do not depend on it are left
    alone); ``tracker``: a :class:`ModuleTracker` naming the module in refusals.
    """

    def __init__(self, rule: str, lrn: str, strict: bool, x: torch.Tensor, tracker: ModuleTracker | None = None,
                 where: str = "deconvnet.project"):
        super().__init__()
        if rule not in _RELU_FN:
            raise ValueError(f"rule: expected one of {list(_RELU_FN)}, got {rule!r}")
        self.rule, self.lrn, self.strict, self.x = rule, check_lrn(lrn), strict, x
        self.tracker, self.where = tracker, where

    def _on_data_path(self, t: torch.Tensor | None) -> bool:
        return t is not None and (t is self.x or t.grad_fn is not None)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind, info = classify(func, args, kwargs)
        if not kind:
            return func(*args, **kwargs)
        t = _first_tensor(args)
        if not self._on_data_path(t):
            with sanctioned():
                return func(*args, **kwargs)
        if kind == "relu":
            return _RELU_FN[self.rule][1 if info else 0].apply(t)
        if kind == "lrn":
            if self.lrn == "gradient":
                return func(*args, **kwargs)
            x, size, alpha, beta, k = lrn_params(args, kwargs)
            return _LRNPassThrough.apply(x, size, alpha, beta, k)
        # refuse
        if not self.strict and info in _NONRELU_OK_WHEN_LENIENT:
            with sanctioned():
                return func(*args, **kwargs)
        where = f"{self.where}: {self.tracker.where()}" if self.tracker is not None else self.where
        raise refusal(str(info), where, self.rule)
