"""The conv / ReLU / max-pool / LRN chain in front of a layer, recorded from a real forward pass.

The fast deconvnet (:mod:`zfnet.analysis.deconvnet.engine`) and the receptive-field arithmetic need the plain
chain of ops (:class:`zfnet.analysis.chain.Op`) from the input to a layer; :class:`ChainRecorder` (a
``TorchFunctionMode``) records it,
functional ReLUs included, with the switches of every max pool (as uint8 offsets inside their window) and,
when asked, the LRN factors. Anything else on the chain (a branch, a skip connection, an unknown op)
raises :class:`NotAChainError`.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from zfnet.analysis.chain import Op, effective_kernel, pair
from zfnet.analysis.deconvnet.rectifiers import arg, classify, lrn_params, op_name, refusal, sanctioned

__all__ = ["ChainRecorder", "NotAChainError", "lrn_factors", "switch_offsets"]


class NotAChainError(RuntimeError):
    """The fast :class:`Deconvnet` needs a plain conv/relu/pool/LRN chain up to the layer; use ``project``."""


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


def switch_offsets(idx: torch.Tensor, w_in: int, s: tuple[int, int], p: tuple[int, int],
                    keff: tuple[int, int]) -> torch.Tensor:
    """Pool switches as offsets inside their pool window: (N, Ho, Wo, C, 2) uint8 (dy, dx)."""
    if max(keff) > 255:
        raise NotAChainError(f"max pool window {keff} too large")
    n, c, ho, wo = idx.shape
    dev = idx.device
    oy = torch.arange(ho, device=dev, dtype=torch.int64) * s[0] - p[0]  # window tops / lefts (may be < 0)
    ox = torch.arange(wo, device=dev, dtype=torch.int64) * s[1] - p[1]
    oyc = torch.where(oy > 0, oy, torch.zeros_like(oy))  # (no clamp: the rectifier guard watches clamps)
    big = (ho * s[0] + keff[0]) * w_in >= 2**31 - 1  # bounds every flat input index
    dt = torch.int64 if big else torch.int32  # int32 halves the memory traffic of the passes below
    # (N, Ho, Wo, C) flat input index iy * w_in + ix: contiguous when the pool ran channels-last (on the CPU)
    local = idx.permute(0, 2, 3, 1).to(dt, memory_format=torch.contiguous_format)
    local -= (oyc * w_in).to(dt)[:, None, None]  # (iy - oyc) * w_in + ix, 0 <= iy - oyc < keff[0]
    if keff[0] <= 4:  # iy - oyc by comparisons: cheaper than an integer division
        dy = (local >= w_in).to(dt)
        for j in range(2, keff[0]):
            dy += local >= j * w_in
    else:
        dy = torch.div(local, w_in, rounding_mode="floor")
    local -= dy * w_in  # ix
    out = torch.empty((n, ho, wo, c, 2), dtype=torch.uint8, device=dev)
    out[..., 0] = dy + (oyc - oy).to(dt)[:, None, None]
    out[..., 1] = local - ox.to(dt)[:, None]
    return out


def lrn_factors(a: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """(3, N, H, W, C): the LRN input a, D^-beta and a * D^(-beta-1) (D as in F.local_response_norm)."""
    sq = (a * a).unsqueeze(1)
    sq = F.pad(sq, (0, 0, 0, 0, size // 2, (size - 1) // 2))
    div = F.avg_pool3d(sq, (size, 1, 1), stride=1).squeeze(1)
    div = div.mul(alpha).add(k)
    dbeta = div.pow(beta)
    fac = torch.stack([a, 1.0 / dbeta, a / (dbeta * div)])  # (3, N, C, H, W)
    return fac.permute(0, 1, 3, 4, 2).contiguous()


class ChainRecorder(TorchFunctionMode):
    """Records the conv/relu/pool/LRN chain from the input to the target layers during a real forward."""

    def __init__(self, x: torch.Tensor, keep_lrn_inputs: bool, keep_relu_masks: bool = False):
        super().__init__()
        self.head = x
        self.chain_ids = {id(x)}
        self._alive = [x]  # keep chain tensors alive so ids stay unique
        self.ops: list[Op] = []
        self.pool_idx: dict[int, torch.Tensor] = {}
        self.lrn_in: dict[int, torch.Tensor] = {}
        self.keep_lrn_inputs = keep_lrn_inputs
        self.relu_mask: dict[int, torch.Tensor] = {}  # keep_relu_masks: (N, H, W, C) bool, output > 0 (guided)
        self.keep_relu_masks = keep_relu_masks
        self.paused = False  # set while the recorder's own hooks run tensor ops

    def _advance(self, out: torch.Tensor) -> None:
        self.head = out
        self.chain_ids.add(id(out))
        self._alive.append(out)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.paused:
            with sanctioned():
                return func(*args, **kwargs)
        consumed = [t for t in _flat_tensors(args, kwargs) if id(t) in self.chain_ids]
        kind, info = classify(func, args, kwargs)
        if not consumed:
            if kind in ("relu", "refuse", "lrn"):
                with sanctioned():
                    return func(*args, **kwargs)
            return func(*args, **kwargs)
        name = op_name(func)
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
            with sanctioned():
                out = func(*args, **kwargs)
            if self.keep_relu_masks and out.ndim == 4:
                self.relu_mask[len(self.ops)] = (out.detach() > 0).permute(0, 2, 3, 1).contiguous()
            self.ops.append(Op("relu", (c_in, h_in, w_in), tuple(out.shape[1:]), desc=name))
            self._advance(out)
            return out
        if kind == "refuse":
            raise refusal(str(info), "Deconvnet")
        if kind == "lrn":
            xx, size, alpha, beta, k = lrn_params(args, kwargs)
            out = func(*args, **kwargs)
            i = len(self.ops)
            if self.keep_lrn_inputs:
                self.lrn_in[i] = lrn_factors(x.detach(), size, alpha, beta, k)
            self.ops.append(Op("lrn", (c_in, h_in, w_in), tuple(out.shape[1:]), lrn=(size, alpha, beta, k),
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
            d = pair(a["dilation"])
            keff = effective_kernel((kh, kw), d)
            pad = a["padding"]
            if pad == "valid":
                pad = (0, 0)
            elif pad == "same":
                pad = ((keff[0] - 1) // 2, (keff[1] - 1) // 2)
            out = func(*args, **kwargs)
            self.ops.append(Op("conv", (c_in, h_in, w_in), tuple(out.shape[1:]), k=keff, s=pair(a["stride"]),
                                p=pair(pad), weight=w.detach(),
                                bias=None if a["bias"] is None else a["bias"].detach(), dilation=d,
                                groups=int(a["groups"]),
                                desc=f"conv2d {tuple(w.shape)}"))
            self._advance(out)
            return out
        if func is F.max_pool2d or func is F.max_pool2d_with_indices:
            b = _POOL_SIG.bind(*args, **kwargs)
            b.apply_defaults()
            a = b.arguments
            ks = pair(a["kernel_size"])
            st = pair(a["stride"]) if a["stride"] not in (None, [], ()) else ks
            d = pair(a["dilation"])
            keff = effective_kernel(ks, d)
            cpu = x.device.type == "cpu" and x.ndim == 4
            # on the CPU the channels-last kernel is several times faster; the same maxima and the same
            # switches (ties included), and the output goes on in the input's own layout
            xp = x.contiguous(memory_format=torch.channels_last) if cpu else x
            out, idx = F.max_pool2d_with_indices(xp, ks, st, a["padding"], d, a["ceil_mode"])
            if cpu and not x.is_contiguous(memory_format=torch.channels_last):
                out = out.contiguous()
            i = len(self.ops)
            pad = pair(a["padding"])
            self.pool_idx[i] = switch_offsets(idx, w_in, st, pad, keff)
            self.ops.append(Op("pool", (c_in, h_in, w_in), tuple(out.shape[1:]), k=keff, s=st,
                                p=pad, dilation=d, desc=f"max_pool2d {ks}/{st}"))
            self._advance(out)
            return (out, idx) if a["return_indices"] else out
        if name in _DROPOUT_NAMES:
            training = arg(args, kwargs, 2, "training", True)
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


