"""Network dissection (Bau et al. 2017): :func:`dissect` and :func:`probe_loader` (``passes``), and its
arithmetic, the exact streaming quantile, the resize of a map and the IoU tallies (``tally``)."""

from zfnet.analysis.dissection.passes import Dissection, dissect, probe_loader
from zfnet.analysis.dissection.tally import iou_from_tallies, percentile_from_top, quantile_k, resize_maps

__all__ = ["Dissection", "dissect", "probe_loader", "quantile_k", "percentile_from_top", "iou_from_tallies",
           "resize_maps"]
