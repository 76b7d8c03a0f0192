"""Progress a person can follow, with or without a terminal.

``bar(iterable, total=..., desc=..., unit=...)`` is tqdm's bar when stderr is a terminal. Without one (DVC,
SLURM, ``nohup``, CI logs), a carriage-return bar would print nothing readable until it ends, so the same
call writes one plain line when the work starts, then at most every ``ZFNET_PROGRESS_INTERVAL`` seconds
(60 by default) as the count moves, and one when it ends:

    prepare: 12,000/1,281,167 img (0.9%) | 143.2 img/s | elapsed 0:01:24 | ETA 2:27:43

Every line names the work, the count done and the total (the count alone when the total is unknown), the
rate and the time left. ``ZFNET_PROGRESS=tty`` / ``lines`` / ``off`` forces a mode (the tests use
``lines``). Lightning's training loop has its own callback with the same lines and settings:
``zfnet.training.progress``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable

from tqdm import tqdm

__all__ = ["bar", "format_line", "clock", "interval", "mode"]

DEFAULT_INTERVAL = 60.0


def interval() -> float:
    """Seconds between two progress lines without a terminal (``ZFNET_PROGRESS_INTERVAL``, default 60)."""
    value = os.environ.get("ZFNET_PROGRESS_INTERVAL", "")
    try:
        seconds = float(value) if value.strip() else DEFAULT_INTERVAL
    except ValueError:
        seconds = float("nan")
    if not seconds >= 0 or seconds == float("inf"):  # NaN, negative, inf
        raise ValueError(f"ZFNET_PROGRESS_INTERVAL={value!r}: expected a number of seconds >= 0")
    return seconds


def mode(stream=None) -> str:
    """``tty`` (a live bar), ``lines`` (a log line every interval) or ``off`` (``ZFNET_PROGRESS`` forces one)."""
    forced = os.environ.get("ZFNET_PROGRESS", "").strip().lower()
    if forced in ("tty", "lines", "off"):
        return forced
    if forced:
        raise ValueError(f"ZFNET_PROGRESS={forced!r}: expected tty, lines or off (or unset: tty on a terminal)")
    stream = sys.stderr if stream is None else stream
    try:
        return "tty" if stream.isatty() else "lines"
    except (AttributeError, ValueError):
        return "lines"


def clock(seconds: float | None) -> str:
    """``h:mm:ss`` (hours unbounded: a run of days reads ``54:00:00``), ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "?"
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_line(desc: str, n: float, total: float | None, elapsed: float, unit: str = "it", extra: str = "") -> str:
    """One progress line: ``desc: n/total unit (pct) | rate unit/s | elapsed h:mm:ss | ETA h:mm:ss``
    (``| extra`` after the rate when given: a loss, say)."""
    rate = n / elapsed if elapsed > 0.01 else None  # no rate from a hundredth of a second
    known = total is not None and total == total and total not in (float("inf"), 0)
    count = f"{n:,.0f}/{total:,.0f} {unit}" if known else f"{n:,.0f} {unit}"
    pct = f" ({100.0 * n / total:.1f}%)" if known else ""
    eta = clock(max(0.0, total - n) / rate) if known and rate else "?"
    speed = f"{rate:,.1f} {unit}/s" if rate is not None else f"? {unit}/s"
    more = f" | {extra}" if extra else ""
    return f"{desc or 'progress'}: {count}{pct} | {speed}{more} | elapsed {clock(elapsed)} | ETA {eta}"


class LineBar(tqdm):
    """tqdm's counting, printed as a plain line when it starts, at most every ``interval()`` seconds while
    the count moves, and when it closes. Time is ``time.monotonic`` (a clock step during a run of days
    must not bend the rate or the ETA); ``LineBar.clock`` is the one clock (tests replace it)."""

    clock = staticmethod(time.monotonic)
    monitor_interval = 0  # no tqdm monitor thread: nothing here is printed but by the lines' own rule

    def __init__(self, *args, **kwargs):
        self._every = interval()
        self._last_line = None  # clock() of the last line
        self._last_n = 0  # the count it showed
        kwargs.setdefault("file", sys.stderr)
        kwargs["mininterval"] = min(self._every, 0.5)  # tqdm's cheap check first: a clock read per item
        kwargs["miniters"] = 1
        kwargs["delay"] = 0
        self._quiet = True  # tqdm's __init__ refreshes once: our start line comes after the clock is set
        super().__init__(*args, **kwargs)
        self._time = type(self).clock
        self.start_t = self.last_print_t = self._time()
        self._quiet = False
        if not self.disable and self.total != 0:
            self._line()  # a log shows at once that the work started, and how much there is

    def _line(self) -> None:
        self._last_line, self._last_n = self._time(), self.n
        postfix = (self.postfix or "").strip(", ")
        line = format_line(self.desc.rstrip(": "), self.n, self.total, self._time() - self.start_t, self.unit,
                           postfix)
        self.fp.write(line + "\n")
        self.fp.flush()

    def display(self, msg=None, pos=None):  # tqdm's hook for every refresh
        if self.disable or self._quiet:
            return False
        if self.n != self._last_n and (self._last_line is None or self._time() - self._last_line >= self._every):
            self._line()
        return True

    def close(self):
        if self.disable:
            return super().close()
        if self.n != self._last_n:
            self._line()  # the closing line, unless it would repeat the last one
        self._quiet, self.leave = True, False  # tqdm's own close: no bar, no carriage return
        return super().close()


def bar(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "", unit: str = "it",
        disable: bool = False, **kwargs) -> tqdm:
    """A progress bar (tqdm's interface): a live bar on a terminal, a line every interval without one."""
    how = mode(kwargs.get("file"))
    if disable or how == "off":
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=True, **kwargs)
    cls = tqdm if how == "tty" else LineBar
    return cls(iterable, total=total, desc=desc, unit=unit, **kwargs)
