"""Each of the paper's findings as a :class:`Claim`: the statistic, our value, the paper's, a verdict.

One function per finding, on inputs already read (tensors, DataFrames, dicts; ``None`` when the pipeline
did not produce them) and the tolerances of ``conf/claims/default.yaml`` (``p``, a plain mapping). A
missing or too small input gives ``not measurable`` with the reason; nothing here raises on absent data.
The tolerances are stated in config and never chosen to make a claim pass.

Each finding carries a ``control``: the same statistic on the untrained network (the trained model's own
initial weights, ``zfnet.untrained``) where one can be computed, else what stands in for it (the
table's own baseline, a permutation null, a noise level) in words. A finding holds only when our value
passes *and* beats the control by the margin the config states; a finding whose untrained control is
missing is ``not measurable``. Statements that test the code, not the paper, have ``kind="check"``.
"""

from zfnet.claims.verdicts.base import CHECK, FAILS, FINDING, HOLDS, KINDS, NA, VERDICTS, Claim, _decide, _f, _na
from zfnet.claims.verdicts.features import (EVOLUTION, IDENTITY, evolution, grouping, invariance, invariance_stats,
                                            rotation)
from zfnet.claims.verdicts.filters import clipping, zf_vs_alex
from zfnet.claims.verdicts.sensitivity import OCCLUSION, correspondence, counted_images, occlusion, table1_gaps
from zfnet.claims.verdicts.tables import depth, table3, transfer

__all__ = ["CHECK", "EVOLUTION", "FAILS", "FINDING", "HOLDS", "IDENTITY", "KINDS", "NA", "OCCLUSION", "VERDICTS", "Claim",
           "clipping", "correspondence", "counted_images", "depth", "evolution", "grouping", "invariance", "invariance_stats", "occlusion", "rotation", "table1_gaps", "table3",
           "transfer", "zf_vs_alex", "_decide", "_f", "_na"]
