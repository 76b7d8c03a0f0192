"""Atomic writes: a failed write leaves the earlier file as it was, and a full disk says so and names the
file and its filesystem."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from collections import namedtuple

import pytest

from zfnet import io as zio
from zfnet.io import atomic_path, write_json, write_text

Usage = namedtuple("Usage", "total used free")


def _mount_of(path) -> str:
    """The filesystem holding ``path``, as coreutils' ``df`` names it (independent of zfnet.io)."""
    out = subprocess.run(["df", "--output=target", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[-1].strip()


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def test_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "sub" / "m.json"
    write_json(target, {"a": 1})
    write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert _leftovers(target.parent) == []


def test_enospc_from_the_writer_says_disk_full_and_keeps_the_earlier_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_text(target, "earlier")
    original = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError) as err:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"x" * 4096)  # half a file on disk when the disk fills
            raise original
    assert err.value.errno == errno.ENOSPC
    match = re.fullmatch(
        rf"\[Errno {errno.ENOSPC}\] disk full while writing {re.escape(str(target))}: (\d+) bytes free on (.+)",
        str(err.value),
    )
    assert match, str(err.value)
    assert match.group(2) == _mount_of(tmp_path)
    assert err.value.__cause__ is original
    assert target.read_text() == "earlier"
    assert _leftovers(tmp_path) == []


def test_enospc_wrapped_by_another_error_is_found(tmp_path):
    target = tmp_path / "table.csv"
    with pytest.raises(OSError, match=f"disk full while writing {re.escape(str(target))}"):
        with atomic_path(target) as tmp:
            tmp.write_text("a,b\n")
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError as inner:
                raise RuntimeError("writer failed") from inner
    assert not target.exists() and _leftovers(tmp_path) == []


_TORCH_SAVE_ON_A_FULL_DISK = r"""
import json, resource, shutil, signal, sys
from collections import namedtuple
import torch
from zfnet import io as zio

target = sys.argv[1]
zio.write_text(target, "earlier")
# Writes past 256 KiB fail (EFBIG, as a full disk fails them), and the disk reports 0 bytes free.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 18, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
Usage = namedtuple("Usage", "total used free")
zio.shutil.disk_usage = lambda p: Usage(1 << 30, 1 << 30, 0)
try:
    with zio.atomic_path(target) as tmp:
        torch.save({"w": torch.zeros(1 << 20)}, tmp)
except Exception as err:
    cause = err.__cause__
    print("RESULT", json.dumps({"type": type(err).__name__, "errno": getattr(err, "errno", None),
                                "message": str(err), "cause": type(cause).__name__, "cause_message": str(cause)}))
"""


def test_torch_save_on_a_full_disk_says_disk_full(tmp_path):
    """torch.save's own error (a RuntimeError from its zip writer) on a disk with 0 bytes free."""
    target = tmp_path / "model.pt"
    script = tmp_path / "save.py"
    script.write_text(_TORCH_SAVE_ON_A_FULL_DISK)
    proc = subprocess.run([sys.executable, str(script), str(target)], capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(lines[0][len("RESULT "):])
    assert result["cause"] == "RuntimeError", result  # torch's zip writer, not an OSError
    assert result["type"] == "OSError" and result["errno"] == errno.ENOSPC, result
    assert result["message"] == (
        f"[Errno {errno.ENOSPC}] disk full while writing {target}: 0 bytes free on {_mount_of(tmp_path)}"
    )
    assert target.read_text() == "earlier"
    assert _leftovers(tmp_path) == []


def test_nearly_full_disk_turns_a_vague_writer_error_into_disk_full(tmp_path, monkeypatch):
    target = tmp_path / "figure.png"
    write_text(target, "earlier")
    monkeypatch.setattr(zio.shutil, "disk_usage", lambda p: Usage(1 << 30, (1 << 30) - 4096, 4096))
    with pytest.raises(OSError, match=f"disk full while writing {re.escape(str(target))}: 4096 bytes free on "):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"\x89PNG")
            raise OSError("196608 requested and 50672 written")
    assert target.read_text() == "earlier" and _leftovers(tmp_path) == []


@pytest.mark.parametrize("free", [0, 50 << 30])
def test_other_errors_pass_through_unchanged(tmp_path, monkeypatch, free):
    target = tmp_path / "out.json"
    write_text(target, "earlier")
    monkeypatch.setattr(zio.shutil, "disk_usage", lambda p: Usage(100 << 30, (100 << 30) - free, free))
    errors = [ValueError("bad value"), KeyError("k")]  # not write failures, whatever the disk says
    if free:  # with space left, write failures that are not ENOSPC are what they are
        errors += [OSError(errno.EACCES, "Permission denied"), RuntimeError("unexpected pos 64 vs 0")]
    for original in errors:
        with pytest.raises(type(original)) as err:
            with atomic_path(target) as tmp:
                tmp.write_text("partial")
                raise original
        assert err.value is original
        assert target.read_text() == "earlier" and _leftovers(tmp_path) == []


def test_disk_usage_is_read_while_the_temp_file_still_holds_its_space(tmp_path, monkeypatch):
    """The free space is measured before the partial temp file is removed (removing it frees space)."""
    seen = []
    real = shutil.disk_usage

    def spy(p):
        seen.append(sorted(os.listdir(tmp_path)))
        return real(p)

    monkeypatch.setattr(zio.shutil, "disk_usage", spy)
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"1")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert seen and any(name.startswith(".x.tmp-") for name in seen[0])
