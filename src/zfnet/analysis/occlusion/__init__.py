"""Occlusion sensitivity (Zeiler & Fergus 2014, Fig. 7) on any CNN: :func:`occlusion_maps` (``maps``), the
plain batched sweep and the memory budget (``full``), the incremental sweep that recomputes only what each
square changes (``incremental``, on the layer chain of :mod:`zfnet.analysis.chain`)."""

from zfnet.analysis.occlusion.full import memory_budget
from zfnet.analysis.occlusion.maps import occlusion_maps, occlusion_positions, pixel_attribution, projection

__all__ = ["memory_budget", "occlusion_maps", "occlusion_positions", "pixel_attribution", "projection"]
