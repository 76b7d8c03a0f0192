"""Weights & Biases tracking that never loses a run.

One project, ``group`` = one pipeline run, ``job_type`` = the stage. Offline by default; the standard
``WANDB_MODE`` / ``WANDB_DIR`` variables take precedence over config. Every call is guarded: when W&B
fails (not installed, unreachable, disk trouble) the stage logs a warning and goes on, and its local
outputs (metrics JSON, figures, tables) remain the record.

``read_records`` reads the transaction log an offline run writes (``run-<id>.wandb``): LevelDB-log framed
protobuf ``Record`` messages of the SDK's own schema, so tests can assert what was logged.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: seconds ``wandb.init`` may wait for the server (``wandb.init_timeout``); W&B's own default is 90
DEFAULT_INIT_TIMEOUT = 10.0
#: seconds ``finish`` may wait for uploads (``wandb.finish_timeout``; 0: until uploaded)
DEFAULT_FINISH_TIMEOUT = 600.0


def group_name(cfg: Mapping) -> str:
    """The W&B group of a pipeline run: explicit ``wandb.group``, else ``ZFNET_WANDB_GROUP``, else
    ``<profile>-<hash>`` of the ``params.yaml`` snapshot every DVC stage reads (so all stages of one
    ``dvc repro``, whatever each pins on its command line, share it), or of the composed config
    (without its wandb section) when there is no snapshot."""
    from omegaconf import OmegaConf

    explicit = cfg.get("wandb", {}).get("group") or os.environ.get("ZFNET_WANDB_GROUP")
    if explicit:
        return str(explicit)
    snapshot = Path("params.yaml")
    if snapshot.is_file():
        text = snapshot.read_text()
    else:
        plain = OmegaConf.to_container(OmegaConf.create(dict(cfg)), resolve=True)
        plain.pop("wandb", None)
        text = OmegaConf.to_yaml(OmegaConf.create(plain), sort_keys=True)
    return f"{cfg.get('profile', 'run')}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


class Tracker:
    """A W&B run, or nothing: every method is safe to call and degrades to a warning."""

    def __init__(self, run: Any | None):
        self.run = run

    def _guard(self, what: str, fn, *args, **kwargs):
        if self.run is None:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # W&B must never take a stage down with it
            log.warning("W&B %s failed (%s); local outputs are kept", what, err)
            return None

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self._guard("log", lambda: self.run.log(dict(metrics), step=step))

    def summary(self, values: Mapping[str, Any]) -> None:
        self._guard("summary", lambda: self.run.summary.update(dict(values)))

    def image(self, key: str, image: Any, caption: str | None = None) -> None:
        import wandb

        self._guard("image", lambda: self.run.log({key: wandb.Image(str(image) if isinstance(image, Path) else image, caption=caption)}))

    def table(self, key: str, frame: Any) -> None:
        import wandb

        self._guard("table", lambda: self.run.log({key: wandb.Table(dataframe=frame)}))

    def artifact(self, name: str, kind: str, paths: list[str | Path]) -> None:
        import wandb

        def _log():
            art = wandb.Artifact(name, type=kind)
            for p in map(Path, paths):
                (art.add_dir if p.is_dir() else art.add_file)(str(p))
            self.run.log_artifact(art)

        self._guard("artifact", _log)

    def finish(self) -> None:
        """End the run; never raises: an upload that fails at the end leaves the run's transaction log
        on disk, and the warning says how to upload it later (bounded by ``wandb.finish_timeout``)."""
        run, self.run = self.run, None
        if run is None:
            return
        try:
            run.finish()
        except Exception as err:  # W&B must never take a stage down with it
            sync_dir = _sync_dir(run)
            later = f"; upload it later with: wandb sync {sync_dir}" if sync_dir else ""
            log.warning("W&B finish failed (%s); local outputs are kept%s", _first_line(err), later)

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        self.finish()


_OFFLINE_MODES = ("offline", "dryrun", "disabled")


def _seconds(wcfg: Mapping, key: str, default: float, allow_zero: bool) -> float:
    value = wcfg.get(key, default)
    if value is None:
        value = default
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        expected = "a number of seconds >= 0 (0: no limit)" if allow_zero else "a number of seconds > 0"
        raise ValueError(f"config key wandb.{key}: expected {expected}, got {value!r}")
    return float(value)


def _first_line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text if len(text) <= 300 else text[:297] + "..."


def start_run(cfg: Mapping, job_type: str, name: str | None = None) -> Tracker:
    """Start the stage's W&B run with the resolved config; a Tracker with no run if W&B fails.

    Online, ``wandb.init`` waits at most ``wandb.init_timeout`` seconds for the server (W&B's defaults
    wait 90 s, plus up to 15 s of account look-ups and 20 s of SDK telemetry at exit, per stage; the
    latter two are skipped here). When the online start fails the run is logged offline instead, with one
    warning naming the stage, the reason and the ``wandb sync`` command, so nothing is lost.
    ``wandb.finish_timeout`` bounds the upload at ``finish`` (0: wait until everything is uploaded).
    """
    from omegaconf import OmegaConf

    wcfg = cfg.get("wandb", {}) or {}
    mode = os.environ.get("WANDB_MODE") or wcfg.get("mode") or "offline"
    wandb_dir = Path(os.environ.get("WANDB_DIR") or wcfg.get("dir") or ".")
    init_timeout = _seconds(wcfg, "init_timeout", DEFAULT_INIT_TIMEOUT, allow_zero=False)
    finish_timeout = _seconds(wcfg, "finish_timeout", DEFAULT_FINISH_TIMEOUT, allow_zero=True)
    online = mode not in _OFFLINE_MODES
    try:
        import wandb

        wandb_dir.mkdir(parents=True, exist_ok=True)
        if online:
            # Two SDK extras wait on an unreachable server outside init_timeout: the account look-up
            # ("logged in as ...", 5 s a try, up to three tries before the run starts) and the SDK's own
            # usage telemetry (a 10 s probe per exporter at exit). The run needs neither; an explicit
            # WANDB_ERROR_REPORTING is respected.
            os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
            wandb.setup(settings=wandb.Settings(x_disable_viewer=True))
        settings = wandb.Settings(init_timeout=init_timeout, finish_timeout=finish_timeout)
        kwargs = dict(
            project=wcfg.get("project", "zfnet"),
            entity=wcfg.get("entity"),
            group=group_name(cfg),
            job_type=job_type,
            name=name or wcfg.get("name"),
            dir=str(wandb_dir),
            config=OmegaConf.to_container(OmegaConf.create(dict(cfg)), resolve=True),
            reinit="finish_previous",
            settings=settings,
        )
        try:
            return Tracker(wandb.init(mode=mode, **kwargs))
        except Exception as err:
            if not online:
                raise
            reason = _first_line(err)
        run = wandb.init(mode="offline", **kwargs)
    except Exception as err:
        log.warning(
            "W&B could not start (%s); stage %s continues with local outputs only", _first_line(err), job_type
        )
        return Tracker(None)
    sync_dir = _sync_dir(run) or str(wandb_dir / "wandb" / "offline-run-*")
    log.warning(
        "W&B could not start online for stage %s (%s); logging offline instead, upload later with: "
        "wandb sync %s",
        job_type,
        reason,
        sync_dir,
    )
    return Tracker(run)


def _sync_dir(run: Any) -> str | None:
    try:
        return str(run.settings.sync_dir)
    except Exception:
        return None


# --- reading an offline run's transaction log -------------------------------------------------------
_BLOCK = 32768
_HEADER = struct.Struct("<IHB")  # crc32, length, chunk type
_FILE_HEADER = struct.Struct("<4sHB")  # b":W&B", magic 0xBEE1, version
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: str | Path) -> Iterator[Any]:
    """Yield ``wandb_internal_pb2.Record`` messages from a ``.wandb`` transaction log."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    ident, magic, _version = _FILE_HEADER.unpack_from(data, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path}: not a W&B transaction log (header {ident!r} {magic:#x})")
    pos, pending = _FILE_HEADER.size, b""
    while pos + _HEADER.size <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _HEADER.size:  # block trailer padding
            pos += left_in_block
            continue
        crc, length, kind = _HEADER.unpack_from(data, pos)
        if length == 0 and kind == 0:  # zero padding at the end of a block
            pos += left_in_block
            continue
        chunk = data[pos + _HEADER.size : pos + _HEADER.size + length]
        if len(chunk) < length:
            break  # a run still being written
        pos += _HEADER.size + length
        if kind in (_FULL, _FIRST):
            pending = chunk
        else:
            pending += chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""
