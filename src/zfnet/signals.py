"""Dying cleanly: SIGTERM, SIGINT and SIGHUP unwind like Ctrl-C, and worker processes die with their parent.

``terminate_gracefully()`` (a context manager, or call ``install()`` once at an entry point): SIGTERM
(what ``kill``, ``timeout``, SLURM, Docker and systemd send), SIGINT (Ctrl-C) and SIGHUP (a closed
terminal or SSH session) raise ``Terminated`` (a ``SystemExit`` with exit code 128 + signal number: 143
for SIGTERM, 130 for SIGINT, 129 for SIGHUP, the shell's convention) in the main thread, exactly where
Ctrl-C would raise ``KeyboardInterrupt``. A signal the process was started ignoring stays ignored
(``nohup`` ignores SIGHUP, a shell's background job SIGINT). ``finally`` blocks and context managers run: atomic
writes delete their temp files, process pools are terminated, W&B runs are finished. Without it,
Python's default for SIGTERM is to die on the spot, leaving all of that undone. A second SIGTERM while
the first is being handled gets the default action (immediate death), so a stuck cleanup never makes a
process unkillable.

A signal is never lost and never leaves a lock held at a fork: Python runs at-fork hooks (``logging``
takes its module lock before a fork and releases it after) where an exception cannot propagate, so a
``Terminated`` raised inside one would be dropped ("Exception ignored") and leave the lock held: the stage
would run on and then hang for good (seen: a DataLoader forking its workers when SIGTERM came). So the
signals are blocked from just before a fork until the other hooks have run, and a ``Terminated`` that
Python still drops (raised in a ``__del__`` or a later hook) is delivered again 50 ms later, in ordinary code.

``die_with_parent()``: called first thing in a worker process, the worker is killed (SIGKILL) when its
parent dies, however it dies (SIGKILL, OOM killer, segfault), through Linux's
``prctl(PR_SET_PDEATHSIG)``; elsewhere (and as a fallback) a daemon thread notices that the parent is
gone (``os.getppid()`` changed: the orphan was re-parented) and ends the worker. Without it, a worker
forked by a killed process keeps working for nobody and then hangs, holding its memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence

__all__ = ["Terminated", "terminate_gracefully", "install", "die_with_parent", "SIGNALS"]

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# the signals that end a stage cleanly (SIGHUP: not on Windows)
SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))


class Terminated(SystemExit):
    """Raised in the main thread on a termination signal; ``code`` is 128 + signum (143 for SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"terminated by {signal.Signals(self.signum).name}"


def _raise_terminated(signum, _frame):
    # later signals of this kind during the cleanup: default action (the process dies at once)
    signal.signal(signum, signal.SIG_DFL)
    raise Terminated(signum)


_GUARDED = False  # the fork guard and the unraisable hook are set up once per process


def _redeliver(unraisable, previous_hook=sys.unraisablehook) -> None:
    """``sys.unraisablehook``: a ``Terminated`` that Python had to drop is sent again shortly."""
    exc = unraisable.exc_value
    if not isinstance(exc, Terminated):
        previous_hook(unraisable)
        return
    with contextlib.suppress(ValueError):  # ValueError: not the main thread (its handler stays as it is)
        signal.signal(exc.signum, _raise_terminated)
    timer = threading.Timer(0.05, os.kill, (os.getpid(), exc.signum))
    timer.daemon = True
    timer.start()


def _guard(signals: Sequence[int]) -> None:
    """Block ``signals`` across every fork and redeliver a dropped ``Terminated``; once per process."""
    global _GUARDED
    if _GUARDED:
        return
    _GUARDED = True
    sys.unraisablehook = functools.partial(_redeliver, previous_hook=sys.unraisablehook)
    # C calls, not Python functions: no signal handler runs inside them (registered after the libraries'
    # own hooks: ours block first before a fork and unblock last after it)
    masks = _libc_sigmask(signals)
    if masks is not None and hasattr(os, "register_at_fork"):
        block, unblock = masks
        os.register_at_fork(before=block, after_in_parent=unblock, after_in_child=unblock)


def _libc_sigmask(signals: Sequence[int]):
    """(block, unblock): libc's ``pthread_sigmask`` for ``signals`` as ctypes calls, or None. Not Python's
    ``signal.pthread_sigmask``, which runs a pending handler before it returns (inside the at-fork hook,
    where its exception is dropped); after a ctypes call the handler runs in the code that forked."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        sigset = ctypes.create_string_buffer(1024)  # larger than any sigset_t (glibc: 128 bytes)
        libc.sigemptyset(sigset)
        for sig in signals:
            libc.sigaddset(sigset, int(sig))
        call = libc.pthread_sigmask
    except (OSError, AttributeError):
        return None
    block = functools.partial(call, int(signal.SIG_BLOCK), sigset, None)
    unblock = functools.partial(call, int(signal.SIG_UNBLOCK), sigset, None)
    block.sigset = unblock.sigset = sigset  # kept alive with the hooks
    return block, unblock


def install(signals: Sequence[int] = SIGNALS) -> dict[int, object]:
    """Make ``signals`` raise ``Terminated`` in the main thread; returns the previous handlers. A signal
    that is ignored (``SIG_IGN``: ``nohup``'s SIGHUP) stays ignored.

    Does nothing (returns {}) outside the main thread, where Python cannot set signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    _guard(signals)
    previous = {}
    for sig in signals:
        if signal.getsignal(sig) == signal.SIG_IGN:
            continue
        previous[sig] = signal.signal(sig, _raise_terminated)
    return previous


@contextlib.contextmanager
def terminate_gracefully(signals: Sequence[int] = SIGNALS) -> Iterator[None]:
    """Within the block, SIGTERM, SIGINT and SIGHUP raise ``Terminated`` (``SystemExit(128 + signal)``)
    in the main thread, so cleanups run as on Ctrl-C; the previous handlers are restored afterwards.

        with terminate_gracefully():
            run_the_stage()
    """
    previous = install(signals)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _set_pdeathsig(sig: int) -> bool:
    """Linux: deliver ``sig`` to this process when the thread that created it exits; False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _start_time(pid: int) -> str | None:
    """The process's start time (Linux: /proc/<pid>/stat field 22) while it runs; None once it is dead or
    a zombie. Elsewhere: "" while ``kill(pid, 0)`` finds it, else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()  # after "(comm)", which may hold spaces
        return None if fields[0] in (b"Z", b"X") else fields[19].decode()
    except (OSError, IndexError):
        if os.path.isdir("/proc/self"):
            return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def _watch(parent: int, started: str, ppid: int, interval: float, grace: float) -> None:
    while os.getppid() == ppid and _start_time(parent) == started:
        time.sleep(interval)
    # orphaned: let the main thread clean up as on SIGTERM (atomic temp files), then end it regardless
    with contextlib.suppress(OSError):
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace)
    os._exit(128 + signal.SIGTERM)


def die_with_parent(parent: int | None = None, interval: float = 0.5, grace: float = 5.0) -> bool:
    """End this (worker) process when ``parent`` dies. Call it first thing in the worker.

    ``parent``: the pid of the process whose death must end this one (its ``os.getpid()``, passed to the
    worker): the direct parent, or an ancestor, like the owner of a pool whose workers a forkserver forks
    (the forkserver itself lives as long as any of its workers). Default: the direct parent. A worker
    whose ``parent`` is already gone exits at once.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (immediate, for the direct parent). Everywhere: a daemon
    thread checks every ``interval`` seconds that the direct parent is unchanged (``os.getppid()``) and
    ``parent`` still runs (the same process: its start time, where /proc tells it); if not, it sends this
    process SIGTERM (cleanups run where SIGTERM is handled) and ends it ``grace`` seconds later. Returns
    whether the prctl was set."""
    ppid = os.getppid()
    parent = ppid if parent is None else parent
    armed = _set_pdeathsig(signal.SIGKILL)
    started = _start_time(parent)
    if started is None or (parent == ppid and os.getppid() != ppid):  # gone before we got here
        os._exit(128 + signal.SIGKILL)
    threading.Thread(target=_watch, args=(parent, started, ppid, interval, grace), name="die-with-parent",
                     daemon=True).start()
    return armed
