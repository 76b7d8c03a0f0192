"""Progress a person can follow, with or without a terminal.

``bar(iterable, total=..., desc=..., unit=...)`` is tqdm's bar when stderr is a terminal. Without one (DVC,
SLURM, ``nohup``, CI logs), a carriage-return bar would print nothing readable until it ends, so the same
call writes one plain line at most every ``ZFNET_PROGRESS_INTERVAL`` seconds (60 by default) and at the end:

    prepare: 12,000/1,281,167 img (0.9%) | 143.2 img/s | elapsed 0:01:24 | ETA 2:27:41

Every line names the work, the count done and the total, the rate and the time left; the first line comes at
the first update (so a log shows at once that the work started). ``ZFNET_PROGRESS=tty`` / ``lines`` / ``off``
forces a mode (the tests use ``lines``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable

from tqdm import tqdm

__all__ = ["bar", "format_line", "interval", "mode"]

DEFAULT_INTERVAL = 60.0


def interval() -> float:
    """Seconds between two progress lines without a terminal (``ZFNET_PROGRESS_INTERVAL``, default 60)."""
    value = os.environ.get("ZFNET_PROGRESS_INTERVAL", "")
    try:
        return max(0.0, float(value)) if value else DEFAULT_INTERVAL
    except ValueError:
        raise ValueError(f"ZFNET_PROGRESS_INTERVAL={value!r}: expected a number of seconds") from None


def mode(stream=None) -> str:
    """``tty`` (a tqdm bar), ``lines`` (a log line every interval) or ``off``."""
    forced = os.environ.get("ZFNET_PROGRESS", "").strip().lower()
    if forced in ("tty", "lines", "off"):
        return forced
    stream = sys.stderr if stream is None else stream
    try:
        return "tty" if stream.isatty() else "lines"
    except (AttributeError, ValueError):
        return "lines"


def _clock(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_line(desc: str, n: float, total: float | None, elapsed: float, unit: str = "it") -> str:
    """One progress line: ``desc: n/total unit (pct) | rate unit/s | elapsed h:mm:ss | ETA h:mm:ss``."""
    rate = n / elapsed if elapsed > 0.01 else None  # no rate from a hundredth of a second
    count = f"{n:,.0f}/{total:,.0f} {unit}" if total else f"{n:,.0f} {unit}"
    pct = f" ({100.0 * n / total:.1f}%)" if total else ""
    eta = _clock((total - n) / rate) if total and rate else "?"
    speed = f"{rate:,.1f} {unit}/s" if rate is not None else f"? {unit}/s"
    return f"{desc or 'progress'}: {count}{pct} | {speed} | elapsed {_clock(elapsed)} | ETA {eta}"


class LineBar(tqdm):
    """tqdm's counting, printed as a plain line at most every ``interval()`` seconds (and when it closes)."""

    def __init__(self, *args, **kwargs):
        self._every = interval()
        self._last_line = None
        self._last_n = None
        kwargs.setdefault("file", sys.stderr)
        kwargs["mininterval"] = 0
        kwargs["miniters"] = 1
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):  # tqdm's hook for every refresh
        if self.disable:
            return True
        now = time.monotonic()
        if self._last_line is not None and now - self._last_line < self._every and not getattr(self, "_closing", False):
            return True
        if self._last_line is None and self.n == 0 and not getattr(self, "_closing", False):
            return True  # the first line waits for the first update: it then has a rate
        if getattr(self, "_closing", False) and self._last_n == self.n:
            return True  # the closing line would repeat the last one
        self._last_line, self._last_n = now, self.n
        line = format_line(self.desc.rstrip(": "), self.n, self.total, self.format_dict["elapsed"], self.unit)
        self.fp.write(line + "\n")
        self.fp.flush()
        return True

    def close(self):
        if self.disable or getattr(self, "_closing", False):
            return super().close()
        self._closing = True
        if self.n:
            self.display()
        self.disable = True  # tqdm's own close must not print its bar
        return super().close()


def bar(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "", unit: str = "it",
        disable: bool = False, **kwargs) -> tqdm:
    """A progress bar (tqdm's interface): a live bar on a terminal, a line every minute without one."""
    how = mode(kwargs.get("file"))
    if disable or how == "off":
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=True, **kwargs)
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    cls = tqdm if how == "tty" else LineBar
    return cls(iterable, total=total, desc=desc, unit=unit, **kwargs)
