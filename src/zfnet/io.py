"""Atomic writes: a file is either its old self or its complete new self, never half written.

``atomic_path`` yields a temporary name in the same folder (same suffix, so savers that infer the format
from it keep working) and renames it over the target only when the block finishes without error.

A full disk is reported as such: writers say it in many ways (``OSError: 196608 requested and 50672
written`` from ``torch.save``, ``RuntimeError: ... unexpected pos ...`` from torch's zip writer, a bare
``ENOSPC`` from ``open().write``), so a failure inside the block becomes ``OSError(ENOSPC, "disk full while
writing <path>: <N> bytes free on <filesystem>")`` (chained to the original) when it is, or wraps, an
ENOSPC error, or when the filesystem has less than ``NEARLY_FULL`` bytes left as it fails. Other errors
pass through unchanged. Either way the temporary file is removed and the earlier file is left as it was.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: free bytes under which a failed write is taken for a full disk (a writer that fails on a full disk
#: leaves at most a block or so free; reserved blocks do not count, ``shutil.disk_usage`` reports what
#: this user can still write)
NEARLY_FULL = 1 << 20


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _is_enospc(err: BaseException) -> bool:
    """ENOSPC / EDQUOT anywhere in the chain, or the errno-less short write Python's buffered writer
    reports when the disk fills mid-write ("196608 requested and 50672 written")."""
    codes = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and (e.errno in codes or (e.errno is None and "requested and" in str(e)
                                                             and "written" in str(e))):
            return True
        e = e.__cause__ or e.__context__
    return False


def disk_full_error(path: str | Path, err: BaseException) -> OSError | None:
    """The ENOSPC error naming ``path`` to raise instead of ``err``, or None when ``err`` is no full disk."""
    path = Path(path)
    try:
        free: int | None = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    nearly_full = free is not None and free < NEARLY_FULL and isinstance(err, (OSError, RuntimeError))
    if not (nearly_full or _is_enospc(err)):
        return None
    where = _mount_point(path.parent)
    left = f"{free} bytes free" if free is not None else "free space unknown"
    return OSError(errno.ENOSPC, f"disk full while writing {path}: {left} on {where}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as err:
        full = disk_full_error(path, err)  # before the temp file goes: it holds the space that ran out
        if full is None:
            raise
        raise full from err
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True))
