"""Deconvnet projections (Zeiler & Fergus 2014, §2.1, Fig. 1): one activation mapped back to pixel space.

To project the unit ``(channel c, row y, column x)`` of a layer's output for one image: seed the layer's
output with a one-hot map holding the unit's own activation value and pass it down to the pixels with
*unpool* (each max pool's backward places a value at the input position the forward pass picked, the
switches; overlapping 3x3/2 pools *sum* at shared switches: the linear adjoint of max pooling, exactly
autograd's ``max_pool2d`` backward), *rectify* (a ReLU's backward is ``relu(incoming signal)``) and
*filter* (the transposed convolution with the same filters, no biases). So the deconvnet is autograd with
every ReLU's backward replaced.

The package (the gradient family: deconvnet, guided backprop, saliency, and the fast engine):

* ``gradients``: :func:`project` (any model, autograd, one backward per batch) and its siblings
  :func:`guided_backprop` and :func:`saliency`;
* ``rectifiers``: the ReLU rules, LRN choice (``lrn="identity"`` paper / ``"gradient"`` Captum) and refusals
  of other nonlinearities (named by module path);
* ``engine``: the fast engine for many units on plain conv/ReLU/pool/LRN chains (:class:`Deconvnet`,
  receptive-field windows, cached switches), with ``recorder`` (the chain recorded from a forward),
  ``backward`` (its steps down one op on windows; on a CPU, ``sparse``: transposed convolutions and unpooling
  that touch only non-zero elements) and ``projections`` (its output :class:`Projections`,
  receptive-field frames); the chain model and window arithmetic: :mod:`zfnet.analysis.chain`;
* ``batched``: :func:`project_top_units`, the top-k units of every map of whole layers (deconvnet and guided
  backprop, batched across units and maps, one forward per image), in :class:`UnitProjections` chunks;
* ``units``: :func:`project_units`, the one entry point for projecting given units ``(image, channel, y,
  x)``: the fast engine when the model is a plain chain up to the layer, else batched :func:`project`.
"""

from zfnet.analysis.deconvnet.batched import UnitProjections, project_top_units
from zfnet.analysis.deconvnet.engine import Deconvnet
from zfnet.analysis.deconvnet.gradients import guided_backprop, project, saliency, select_units
from zfnet.analysis.deconvnet.projections import Projections
from zfnet.analysis.deconvnet.recorder import NotAChainError
from zfnet.analysis.deconvnet.rectifiers import LRN_MODES, UnsupportedOpError
from zfnet.analysis.deconvnet.units import project_units
from zfnet.analysis.hooks import find_layer as resolve_layer

__all__ = [
    "Deconvnet",
    "LRN_MODES",
    "NotAChainError",
    "Projections",
    "UnitProjections",
    "UnsupportedOpError",
    "guided_backprop",
    "project",
    "project_top_units",
    "project_units",
    "resolve_layer",
    "saliency",
    "select_units",
]
