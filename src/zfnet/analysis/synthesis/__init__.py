"""Network-centric visualization, images synthesized from the network alone: :func:`maximize` and
:func:`invert` and their objectives (``optimize``), over an image parameterization with transformation
robustness (``parameterization``) and image priors (``regularizers``)."""

from zfnet.analysis.synthesis.optimize import Objective, Synthesis, channel, invert, logit, maximize, parse, threads, unit

__all__ = ["Objective", "Synthesis", "channel", "invert", "logit", "maximize", "parse", "threads", "unit"]
