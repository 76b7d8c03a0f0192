"""The model family of Zeiler & Fergus (2014): ``zfnet`` (Fig. 3) and ``alexnet`` (dense Krizhevsky).

One self-contained file (timm style): layer specs, the module, a registry and the builder.

Layer naming (the paper's names, so every analysis addresses layers the same way)
---------------------------------------------------------------------------------
The model has one top-level ``nn.Sequential`` per paper layer, in forward order, listed in
``model.feature_layers`` (only those actually present; Table 3 ablations remove some):

===========  ============================================================================
block        children (in forward order)
===========  ============================================================================
``conv1``    zfnet: ``conv, relu, pool, norm``   alexnet: ``conv, relu, norm, pool``
``conv2``    zfnet: ``conv, relu, pool, norm``   alexnet: ``conv, relu, norm, pool``
``conv3``    ``conv, relu``
``conv4``    ``conv, relu``
``conv5``    ``conv, relu, pool``
``fc6``      ``fc, relu, drop``   (drop = nn.Dropout(p); absent when p == 0)
``fc7``      ``fc, relu, drop``
``fc8``      ``fc``                (logits; no softmax)
===========  ============================================================================

* "The output of conv3" (the paper's layer output, after ReLU / pool / norm) is the output of the block
  ``model.conv3`` (a forward hook on it, or ``model.forward_to(x, "conv3")``,
  ``model.extract(x, ["conv3"])``). ``feature_shapes(model, 224)["conv3"]`` gives its shape.
* "The conv of conv3" is ``model.conv3.conv`` (``nn.Conv2d``); the linear of fc6 is ``model.fc6.fc``
  (``nn.Linear``); ``model.weight_layer(name)`` returns either. Dotted names work with
  ``model.get_submodule("conv3.conv")`` and ``dict(model.named_modules())``.
* Every ReLU is its own ``nn.ReLU(inplace=False)`` module (``<block>.relu``), so forward/backward hooks
  and the deconvnet can replace its backward. Dropout is never in-place either.
* The flatten between ``conv5`` (or the last remaining conv block) and the first fc block happens in
  ``forward`` (``torch.flatten(x, 1)``), not in a module: the input seen by a hook on ``fc6`` is 2-D.

Architectures
-------------
``zfnet`` (Fig. 3, docs/paper.md): conv1 7x7/2 pad 1 (96), ReLU, maxpool 3x3/2 ceil, LRN; conv2 5x5/2 pad 0
(256), ReLU, pool, LRN; conv3, conv4 3x3/1 pad 1 (384); conv5 3x3/1 pad 1 (256), ReLU, pool; fc6 4096,
fc7 4096, fc8 C. Sizes at 224: 110 -> 55, 26 -> 13, 13, 13, 13 -> 6; 62,357,608 parameters at C = 1000.
Fig. 3 draws contrast normalisation *after* pooling, so that is where ``norm`` sits.

``alexnet`` (Krizhevsky 2012, single tower, dense conv3-5): conv1 11x11/4 pad 2 (96), ReLU, LRN, pool
3x3/2 (floor rounding); conv2 5x5/1 pad 2 (256), ReLU, LRN, pool; conv3, conv4 3x3 pad 1 (384); conv5 3x3
pad 1 (256), ReLU, pool; fc 4096, 4096, C. Krizhevsky applies response normalisation *before* pooling
(his Sec. 3.5: "Response-normalization layers follow the first and second convolutional layers.
Max-pooling layers ... follow both response-normalization layers"). Sizes at 224 (and 227): 55 -> 27,
27 -> 13, 13, 13, 13 -> 6. Padding 2 on conv1 as in torchvision; with ``conv_maps=[64, 192, 384, 256,
256], lrn=None`` the layer shapes equal ``torchvision.models.alexnet``'s.

Local response normalisation constants
--------------------------------------
The ``lrn`` override takes Krizhevsky's constants, ``{"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}``,
meaning exactly his formula

    b[c] = a[c] / (k + alpha * sum_{c' = max(0, c - size//2)}^{min(N-1, c + size//2)} a[c']**2) ** beta

``torch.nn.LocalResponseNorm`` divides its ``alpha`` by ``size`` (it averages the squares instead of
summing them), so the module is built with ``alpha_torch = alpha * size`` (5e-4 for the defaults); the
window (``c - size//2 .. c + (size-1)//2``) is Krizhevsky's for odd sizes, which is why ``size`` must be
odd. (Caffe's ``alpha`` is also per-average: Caffe alpha 1e-4 would be Krizhevsky alpha 2e-5.)

Overrides (all plain config values; see ``DEFAULTS``)
-----------------------------------------------------
``width`` (1.0)        multiplier on conv maps and fc6/fc7 units, ``max(1, floor(n * width + 0.5))``;
                       applied after ``conv_maps`` / ``fc_units`` (so 8192 units at width 0.25 -> 2048).
``conv_maps`` (None)   5 ints, maps of conv1..conv5 (Table 3 "512,1024,512": [96, 256, 512, 1024, 512]).
``fc_units`` (None)    2 ints, units of fc6, fc7 (Table 3: [2048, 2048], [8192, 8192]).
``remove`` ([])        layers removed, among conv3, conv4, fc6, fc7 (ints 3, 4, 6, 7 also accepted); the
                       next layer takes the previous remaining block's output.
``dropout`` (0.5)      dropout probability of fc6 and fc7 (0 -> no Dropout module).
``lrn`` (dict above)   LRN constants (partial dicts are merged into the defaults), or None/False: no LRN.
``input_size`` (224)   int or (H, W); the classifier's input dim is derived from it by shape arithmetic.
``init`` ("paper")     "paper": every weight N(0, 0.01^2), biases 0 (Sec. 3); "kaiming": kaiming-normal
                       (fan_out, relu) conv weights, N(0, 0.01^2) linear weights, biases 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from zfnet.paper import CONV_LAYERS, LAYERS, REMOVABLE

__all__ = [
    "DEFAULTS",
    "DEFAULT_LRN",
    "PaperCNN",
    "REMOVABLE",
    "build",
    "feature_shapes",
    "names",
]

DEFAULT_LRN = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}
DEFAULTS: dict[str, Any] = {
    "width": 1.0,
    "conv_maps": None,
    "fc_units": None,
    "remove": [],
    "dropout": 0.5,
    "lrn": dict(DEFAULT_LRN),
    "input_size": 224,
    "init": "paper",
}
INITS = ("paper", "kaiming")


# --------------------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class ConvSpec:
    kernel: int
    stride: int
    padding: int
    pool: bool = False  # max pool 3x3 stride 2 after the ReLU
    norm: str | None = None  # None, "before_pool" or "after_pool"


@dataclass(frozen=True)
class ArchSpec:
    name: str
    convs: tuple[ConvSpec, ...]
    conv_maps: tuple[int, ...]
    fc_units: tuple[int, int]
    pool_kernel: int = 3
    pool_stride: int = 2
    pool_ceil: bool = False
    doc: str = ""


_ARCHS: dict[str, ArchSpec] = {}


def _register(spec: ArchSpec) -> ArchSpec:
    _ARCHS[spec.name] = spec
    return spec


_register(
    ArchSpec(
        name="zfnet",
        convs=(
            ConvSpec(7, 2, 1, pool=True, norm="after_pool"),
            ConvSpec(5, 2, 0, pool=True, norm="after_pool"),
            ConvSpec(3, 1, 1),
            ConvSpec(3, 1, 1),
            ConvSpec(3, 1, 1, pool=True),
        ),
        conv_maps=(96, 256, 384, 384, 256),
        fc_units=(4096, 4096),
        pool_ceil=True,
        doc="Zeiler & Fergus 2014, Fig. 3",
    )
)
_register(
    ArchSpec(
        name="alexnet",
        convs=(
            ConvSpec(11, 4, 2, pool=True, norm="before_pool"),
            ConvSpec(5, 1, 2, pool=True, norm="before_pool"),
            ConvSpec(3, 1, 1),
            ConvSpec(3, 1, 1),
            ConvSpec(3, 1, 1, pool=True),
        ),
        conv_maps=(96, 256, 384, 384, 256),
        fc_units=(4096, 4096),
        pool_ceil=False,
        doc="Krizhevsky et al. 2012, single tower, dense",
    )
)


def names() -> list[str]:
    """Registered model names (sorted)."""
    return sorted(_ARCHS)


# ------------------------------------------------------------------------------------ the module
class PaperCNN(nn.Module):
    """Eight-layer convnet whose top-level children are the paper's layers (see module docstring)."""

    def __init__(self, arch: str, blocks: Mapping[str, nn.Sequential], config: dict[str, Any]):
        super().__init__()
        self.arch = arch
        self.feature_layers: list[str] = list(blocks)
        for name, block in blocks.items():
            self.add_module(name, block)
        first_fc = [n for n in self.feature_layers if n.startswith("fc")]
        self._flatten_before = first_fc[0]
        #: everything needed to rebuild this architecture: ``build(**model.config)``
        self.config: dict[str, Any] = config
        # the (H, W) of the map the first fc layer was sized for (checked in forward: a map of another
        # size either fails deep inside the matmul or, when only H and W swap, runs with scrambled features)
        hw = _parse_input_size(config["input_size"])
        for name in self.conv_layers:
            for module in getattr(self, name).children():
                hw = _spatial_after(module, hw)
        self._classifier_hw: tuple[int, int] = hw

    # -- addressing
    def block(self, name: str) -> nn.Sequential:
        """The block of paper layer ``name``; its output is "the output of layer ``name``"."""
        if name not in self.feature_layers:
            raise KeyError(f"layer {name!r} is not in this model; present: {self.feature_layers}")
        return getattr(self, name)

    def weight_layer(self, name: str) -> nn.Conv2d | nn.Linear:
        """The ``nn.Conv2d`` (``<name>.conv``) or ``nn.Linear`` (``<name>.fc``) of paper layer ``name``."""
        block = self.block(name)
        return block.conv if name.startswith("conv") else block.fc

    @property
    def conv_layers(self) -> list[str]:
        return [n for n in self.feature_layers if n.startswith("conv")]

    @property
    def fc_layers(self) -> list[str]:
        return [n for n in self.feature_layers if n.startswith("fc")]

    # -- forward
    def _run(self, x: torch.Tensor, stop_at: str | None, keep: Iterable[str] | None):
        wanted = set(keep) if keep is not None else set()
        out: dict[str, torch.Tensor] = {}
        arrived = x.shape
        for name in self.feature_layers:
            if name == self._flatten_before:
                if x.shape[-2:] != self._classifier_hw:
                    raise self._input_size_error(arrived)
                x = torch.flatten(x, 1)
            x = getattr(self, name)(x)
            if name in wanted:
                out[name] = x
            if name == stop_at:
                break
        return x, out

    def _input_size_error(self, arrived: torch.Size) -> ValueError:
        """The classifier's input dim is fixed by ``input_size`` at build time; convolutions (and so
        ``forward_to`` / ``extract`` below the first fc layer) take any size that fits."""
        built = self.config.get("input_size")
        h, w = (int(arrived[-2]), int(arrived[-1])) if len(arrived) >= 2 else (None, None)
        got = f"{h}×{w} input" if h is not None else f"input of shape {tuple(arrived)}"
        wanted = h if h == w else [h, w]
        return ValueError(
            f"{self.arch} built for input_size={built} got {got}; build it with input_size={wanted} or resize"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, None, None)[0]

    def forward_to(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """Output of block ``layer``; layers above it are not computed."""
        self.block(layer)
        return self._run(x, layer, None)[0]

    def extract(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Outputs of the blocks ``layers``, stopping the forward at the deepest one requested."""
        layers = list(layers)
        if not layers:
            return {}
        for name in layers:
            self.block(name)
        deepest = max(layers, key=self.feature_layers.index)
        return self._run(x, deepest, layers)[1]


# ---------------------------------------------------------------------------- override handling
def _err(key: str, expected: str, got: Any) -> ValueError:
    return ValueError(f"model override {key!r}: expected {expected}, got {got!r}")


def _is_seq(v: Any) -> bool:
    return isinstance(v, Sequence) and not isinstance(v, (str, bytes))


def _positive_ints(key: str, value: Any, n: int) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not _is_seq(value) or len(value) != n:
        raise _err(key, f"a list of {n} positive ints", value)
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or int(v) < 1:
            raise _err(key, f"a list of {n} positive ints", value)
        out.append(int(v))
    return tuple(out)


def _parse_remove(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, (str, int)) else value
    if not _is_seq(items):
        raise _err("remove", f"a list of layer names among {list(REMOVABLE)}", value)
    out = []
    for v in items:
        name = f"{'conv' if v < 6 else 'fc'}{v}" if isinstance(v, int) and not isinstance(v, bool) else v
        if isinstance(name, str) and name.isdigit():
            d = int(name)
            name = f"{'conv' if d < 6 else 'fc'}{d}"
        if name not in REMOVABLE:
            raise _err("remove", f"layer names among {list(REMOVABLE)}", v)
        if name not in out:
            out.append(name)
    return tuple(n for n in LAYERS if n in out)


def _parse_lrn(value: Any) -> dict[str, float] | None:
    if value is None or value is False:
        return None
    if value is True:
        return dict(DEFAULT_LRN)
    if not isinstance(value, Mapping):
        raise _err("lrn", "a mapping with keys size, alpha, beta, k, or None", value)
    unknown = [k for k in value if k not in DEFAULT_LRN]
    if unknown:
        raise ValueError(
            f"model override 'lrn': unknown key(s) {', '.join(f'lrn.{k}' for k in unknown)}; "
            f"known: {sorted(DEFAULT_LRN)}"
        )
    lrn = {**DEFAULT_LRN, **{k: value[k] for k in value}}
    size = lrn["size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise _err("lrn.size", "an odd positive int", size)
    for key in ("alpha", "beta", "k"):
        v = lrn[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _err(f"lrn.{key}", "a finite number", v)
    if lrn["k"] <= 0 and lrn["alpha"] <= 0:
        raise _err("lrn.k", "k > 0 (or alpha > 0)", lrn["k"])
    return {"size": int(size), "alpha": float(lrn["alpha"]), "beta": float(lrn["beta"]), "k": float(lrn["k"])}


def _parse_input_size(value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not _is_seq(value)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
    ):
        raise _err("input_size", "a positive int or a pair (H, W)", value)
    return int(value[0]), int(value[1])


def _scale(n: int, width: float) -> int:
    return max(1, int(math.floor(n * width + 0.5)))


def _resolve(name: str, num_classes: Any, overrides: Mapping[str, Any]) -> dict[str, Any]:
    if name not in _ARCHS:
        raise ValueError(f"unknown model {name!r}; known models: {names()}")
    unknown = [k for k in overrides if k not in DEFAULTS]
    if unknown:
        raise TypeError(
            f"unknown model override(s) {', '.join(repr(k) for k in unknown)} for {name!r}; "
            f"known: {sorted(DEFAULTS)}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    cfg = {**DEFAULTS, **dict(overrides)}
    width = cfg["width"]
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not (width > 0) or not math.isfinite(width):
        raise _err("width", "a positive number", width)
    dropout = cfg["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not (0 <= dropout < 1):
        raise _err("dropout", "a probability in [0, 1)", dropout)
    if cfg["init"] not in INITS:
        raise _err("init", f"one of {list(INITS)}", cfg["init"])
    return {
        "name": name,
        "num_classes": int(num_classes),
        "width": float(width),
        "conv_maps": _positive_ints("conv_maps", cfg["conv_maps"], 5),
        "fc_units": _positive_ints("fc_units", cfg["fc_units"], 2),
        "remove": _parse_remove(cfg["remove"]),
        "dropout": float(dropout),
        "lrn": _parse_lrn(cfg["lrn"]),
        "input_size": _parse_input_size(cfg["input_size"]),
        "init": str(cfg["init"]),
    }


# ---------------------------------------------------------------------------------- shape arithmetic
def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv_out(n: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _pool_out(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    # torch's pooling_output_shape
    num = n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)
    out = num // s + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def _spatial_after(module: nn.Module, hw: tuple[int, int]) -> tuple[int, int]:
    if isinstance(module, nn.Conv2d):
        k, s, p, d = (_pair(module.kernel_size), _pair(module.stride), _pair(module.padding), _pair(module.dilation))
        return tuple(_conv_out(hw[i], k[i], s[i], p[i], d[i]) for i in range(2))  # type: ignore[return-value]
    if isinstance(module, nn.MaxPool2d):
        k, s, p, d = (_pair(module.kernel_size), _pair(module.stride or module.kernel_size),
                      _pair(module.padding), _pair(module.dilation))
        return tuple(_pool_out(hw[i], k[i], s[i], p[i], d[i], module.ceil_mode) for i in range(2))  # type: ignore[return-value]
    return hw


# --------------------------------------------------------------------------------------- builder
def _init_weights(model: nn.Module, scheme: str) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _lrn_module(lrn: Mapping[str, float]) -> nn.LocalResponseNorm:
    # torch averages the squares over the window (alpha / size); Krizhevsky sums them (alpha).
    return nn.LocalResponseNorm(size=lrn["size"], alpha=lrn["alpha"] * lrn["size"], beta=lrn["beta"], k=lrn["k"])


def build(name: str, num_classes: int, **overrides: Any) -> PaperCNN:
    """Build model ``name`` (see ``names()``) with a ``num_classes``-way fc8.

    Overrides and defaults: ``DEFAULTS`` (width, conv_maps, fc_units, remove, dropout, lrn, input_size,
    init); documented in this module's docstring. Unknown names raise ``ValueError``, unknown override
    keys ``TypeError``, bad override values ``ValueError`` naming the key.
    """
    cfg = _resolve(name, num_classes, overrides)
    spec = _ARCHS[name]
    width = cfg["width"]
    maps = [_scale(n, width) for n in (cfg["conv_maps"] or spec.conv_maps)]
    units = [_scale(n, width) for n in (cfg["fc_units"] or spec.fc_units)]
    removed = set(cfg["remove"])
    lrn = cfg["lrn"]

    blocks: dict[str, nn.Sequential] = {}
    channels, hw = 3, cfg["input_size"]
    for i, (lname, cs) in enumerate(zip(CONV_LAYERS, spec.convs)):
        if lname in removed:
            continue
        mods: dict[str, nn.Module] = {
            "conv": nn.Conv2d(channels, maps[i], cs.kernel, stride=cs.stride, padding=cs.padding),
            "relu": nn.ReLU(inplace=False),
        }
        pool = nn.MaxPool2d(spec.pool_kernel, spec.pool_stride, ceil_mode=spec.pool_ceil) if cs.pool else None
        norm = _lrn_module(lrn) if (lrn is not None and cs.norm is not None) else None
        if cs.norm == "before_pool" and norm is not None:
            mods["norm"] = norm
        if pool is not None:
            mods["pool"] = pool
        if cs.norm == "after_pool" and norm is not None:
            mods["norm"] = norm
        block = nn.Sequential()
        for key, mod in mods.items():
            block.add_module(key, mod)
            hw = _spatial_after(mod, hw)
        if min(hw) < 1:
            raise ValueError(
                f"model override 'input_size': {cfg['input_size']} is too small for {name!r} "
                f"(feature map of {lname} would be {hw})"
            )
        blocks[lname] = block
        channels = maps[i]

    features = channels * hw[0] * hw[1]
    for j, lname in enumerate(("fc6", "fc7")):
        if lname in removed:
            continue
        block = nn.Sequential()
        block.add_module("fc", nn.Linear(features, units[j]))
        block.add_module("relu", nn.ReLU(inplace=False))
        if cfg["dropout"] > 0:
            block.add_module("drop", nn.Dropout(cfg["dropout"], inplace=False))
        blocks[lname] = block
        features = units[j]
    fc8 = nn.Sequential()
    fc8.add_module("fc", nn.Linear(features, cfg["num_classes"]))
    blocks["fc8"] = fc8

    config = {
        "name": name,
        "num_classes": cfg["num_classes"],
        "width": cfg["width"],
        "conv_maps": list(cfg["conv_maps"]) if cfg["conv_maps"] else None,
        "fc_units": list(cfg["fc_units"]) if cfg["fc_units"] else None,
        "remove": list(cfg["remove"]),
        "dropout": cfg["dropout"],
        "lrn": dict(lrn) if lrn is not None else None,
        "input_size": cfg["input_size"][0] if cfg["input_size"][0] == cfg["input_size"][1] else list(cfg["input_size"]),
        "init": cfg["init"],
    }
    model = PaperCNN(name, blocks, config)
    _init_weights(model, cfg["init"])
    return model


# ----------------------------------------------------------------------------------------- helpers
@torch.no_grad()
def feature_shapes(
    model: nn.Module, input_size: int | Sequence[int] = 224, submodules: bool = False
) -> dict[str, tuple[int, ...]]:
    """Per-example output shapes (batch dim dropped) of each paper layer, by a dry run with hooks.

    Keys are ``model.feature_layers`` (e.g. ``{"conv1": (96, 55, 55), ..., "fc8": (1000,)}``); with
    ``submodules=True`` also every child of each block, by dotted name (``"conv1.conv": (96, 110, 110)``).
    Works for any model with a ``feature_layers`` list of top-level module names.
    """
    h, w = _parse_input_size(input_size if not _is_seq(input_size) else tuple(input_size))
    layers = list(getattr(model, "feature_layers"))
    targets: dict[str, nn.Module] = {}
    for name in layers:
        block = model.get_submodule(name)
        targets[name] = block
        if submodules:
            for child_name, child in block.named_children():
                targets[f"{name}.{child_name}"] = child
    shapes: dict[str, tuple[int, ...]] = {}

    def hook_for(key: str) -> Callable:
        def hook(_m, _inp, out):
            shapes[key] = tuple(out.shape[1:])

        return hook

    handles = [m.register_forward_hook(hook_for(k)) for k, m in targets.items()]
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(1, 3, h, w, device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    # a module may be called more than once (shared); report in a stable order: blocks then children
    return {k: shapes[k] for k in targets if k in shapes}
