"""The model family of Zeiler & Fergus (2014): ``zfnet`` (Fig. 3) and ``alexnet`` (dense Krizhevsky).

Layer specs, a registry and the builder (timm style); the module is :class:`zfnet.models.paper_cnn.PaperCNN`,
the shape arithmetic :mod:`zfnet.models.shapes`. The override values are checked by the config schema
(``zfnet.schema.model.Model``, the rules of the ``model`` group): the same rules and messages as a stage's.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from zfnet.models.paper_cnn import PaperCNN
from zfnet.models.shapes import _parse_input_size, _spatial_after, feature_shapes
from zfnet.paper import CONV_LAYERS, LAYERS, REMOVABLE
from zfnet.schema import check_group
from zfnet.schema.model import Model

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



# ---------------------------------------------------------------------------- override handling
def _plain(value: Any) -> Any:
    """Plain dicts and lists (OmegaConf containers and tuples too), as the schema takes them."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    return value


def _layer_name(v: Any) -> Any:
    """``3`` or ``"3"`` -> ``"conv3"``, ``6`` -> ``"fc6"``; anything else as given (the schema checks it)."""
    if isinstance(v, str) and v.isdigit():
        v = int(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{'conv' if v < 6 else 'fc'}{v}"
    return v


def _scale(n: int, width: float) -> int:
    return max(1, int(math.floor(n * width + 0.5)))


def _resolve(name: str, num_classes: Any, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides with their conveniences expanded (layer numbers, a partial or boolean ``lrn``), checked
    by the ``model`` group's schema (``ConfigError`` naming ``model.<key>``), normalised."""
    unknown = [k for k in overrides if k not in DEFAULTS]
    if unknown:
        raise TypeError(
            f"unknown model override(s) {', '.join(repr(k) for k in unknown)} for {name!r}; "
            f"known: {sorted(DEFAULTS)}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    cfg = {**DEFAULTS, **_plain(dict(overrides))}
    remove, lrn = cfg["remove"], cfg["lrn"]
    remove = [] if remove is None else [remove] if isinstance(remove, (str, int)) else remove
    if lrn is True or lrn is False:
        lrn = dict(DEFAULT_LRN) if lrn else None
    elif isinstance(lrn, dict):
        lrn = {**DEFAULT_LRN, **lrn}  # partial constants: the others are Krizhevsky's
    arch = {k: cfg[k] for k in ("width", "conv_maps", "fc_units", "dropout", "init")}
    arch.update(name=name, lrn=lrn, remove=[_layer_name(v) for v in remove] if isinstance(remove, list) else remove)
    checked = check_group(Model, arch, prefix="model.")
    return {
        "name": name,
        "num_classes": int(num_classes),
        "width": float(checked.width),
        "conv_maps": tuple(checked.conv_maps) if checked.conv_maps else None,
        "fc_units": tuple(checked.fc_units) if checked.fc_units else None,
        "remove": tuple(n for n in LAYERS if n in checked.remove),
        "dropout": float(checked.dropout),
        "lrn": checked.lrn.model_dump() if checked.lrn is not None else None,
        "input_size": _parse_input_size(cfg["input_size"]),
        "init": checked.init,
    }


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

