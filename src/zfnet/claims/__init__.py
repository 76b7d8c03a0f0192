"""The paper's findings as statistics of the pipeline's own outputs, each with a verdict.

``statistics``: the math (pure functions of tensors / arrays / DataFrames); ``verdicts``: one function per
finding, returning :class:`Claim` s (the statistic, our value, the paper's, ``holds`` / ``does not hold`` /
``not measurable`` with the reason); ``collect.evaluate``: reads what the pipeline wrote (any of it may be
missing) and returns every claim. The ``claims`` stage (``zfnet.stages.claims``) writes them.
"""

from zfnet.claims.verdicts import FAILS, HOLDS, NA, VERDICTS, Claim

__all__ = ["Claim", "FAILS", "HOLDS", "NA", "VERDICTS"]
