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
import os
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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
        self._guard("finish", self.run.finish) if self.run is not None else None
        self.run = None

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        self.finish()


def start_run(cfg: Mapping, job_type: str, name: str | None = None) -> Tracker:
    """Start the stage's W&B run with the resolved config; a Tracker with no run if W&B fails."""
    from omegaconf import OmegaConf

    wcfg = cfg.get("wandb", {}) or {}
    mode = os.environ.get("WANDB_MODE") or wcfg.get("mode") or "offline"
    wandb_dir = Path(os.environ.get("WANDB_DIR") or wcfg.get("dir") or ".")
    try:
        import wandb

        wandb_dir.mkdir(parents=True, exist_ok=True)
        run = wandb.init(
            project=wcfg.get("project", "zfnet"),
            entity=wcfg.get("entity"),
            group=group_name(cfg),
            job_type=job_type,
            name=name or wcfg.get("name"),
            mode=mode,
            dir=str(wandb_dir),
            config=OmegaConf.to_container(OmegaConf.create(dict(cfg)), resolve=True),
            reinit="finish_previous",
        )
    except Exception as err:
        log.warning("W&B could not start (%s); stage %s continues with local outputs only", err, job_type)
        run = None
    return Tracker(run)


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
