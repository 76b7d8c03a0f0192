"""The :class:`Claim` record, its verdicts and kinds, and the rule every finding is decided by
(``_decide``: passes *and* beats the untrained control by a margin)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


HOLDS, FAILS, NA = "holds", "does not hold", "not measurable"
VERDICTS = (HOLDS, FAILS, NA)
FINDING, CHECK = "finding", "check"  # a finding of the paper; a check that the code does what it says
KINDS = (FINDING, CHECK)


@dataclass
class Claim:
    id: str
    claim: str        # the paper's finding, one line
    statistic: str    # what we compute
    ours: str         # our value(s), as text
    paper: str        # the paper's value or direction
    verdict: str      # one of VERDICTS
    reason: str       # always for NA; short otherwise
    figure: str       # a figure group (reports/figures/<group>) or a table stem
    value: float | None = None  # the headline number (metrics/claims.json)
    control: str = "–"          # the same statistic on the untrained network, or what stands in for it
    control_value: float | None = None  # the control's headline number, comparable with ``value``
    kind: str = FINDING         # FINDING or CHECK

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"claim {self.id}: verdict {self.verdict!r} not one of {VERDICTS}")
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.id}: kind {self.kind!r} not one of {KINDS}")
        if self.control_value is not None and not math.isfinite(self.control_value):
            self.control_value = None
        if self.verdict == NA and not self.reason:
            raise ValueError(f"claim {self.id}: 'not measurable' needs a reason")
        if self.value is not None and not math.isfinite(self.value):
            self.value = None

    def row(self) -> dict:
        return asdict(self)


def _f(x: float, nd: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _na(base: dict, reason: str) -> Claim:
    return Claim(**{"ours": "–", **base, "verdict": NA, "reason": reason})


def _decide(value: float, passes: bool, control: float | None, margin: float, what: str, larger: bool = True
            ) -> tuple[str, str]:
    """(verdict, reason) of a finding whose value must pass and beat ``control`` by ``margin`` (``larger``:
    value − control >= margin; else control − value >= margin; in both cases > 0). ``what``: the failed
    test's words."""
    if not passes:
        return FAILS, what
    if control is None or math.isnan(control):
        return NA, "passes, but no untrained control to compare with"
    beat = (value - control) if larger else (control - value)
    if beat > 0 and beat >= margin:  # a measured noise of 0 still asks the value to beat the control
        return HOLDS, ""
    return FAILS, f"passes, but beats the untrained control by {_f(beat, 3)} < {margin:.3g}"
