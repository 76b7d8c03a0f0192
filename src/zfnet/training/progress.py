"""Training progress a person can follow for days, with or without a terminal.

On a terminal Lightning's own bar (``TQDMProgressBar``) shows the epoch. Without one (DVC, SLURM, ``nohup``),
or with ``ZFNET_PROGRESS=lines``, Lightning's bar is turned off and ``LineProgress`` writes one line to stderr
when an epoch (or its validation) starts, at most every ``ZFNET_PROGRESS_INTERVAL`` seconds (60 by default)
while it runs, and when it ends (the same two settings as ``zfnet.progress``):

    train: epoch 3/90 | batch 1,200/10,009 (12.0%) | 245.3 img/s | loss 6.8120 | elapsed 0:10:26 | ETA epoch 1:16:37 | ETA run 129:01:12
    validate: epoch 3/90 | batch 20/391 (5.1%) | 801.2 img/s | elapsed 0:00:03 | ETA 0:00:59

The batch total is ``trainer.num_training_batches`` (``num_val_batches``); when it is unknown (a stream
without a length) the line shows the count alone and the ETAs read ``?``. The rate counts the images of
every rank; the loss is the mean training loss of the batches since the previous line. The run's ETA is
this epoch's plus the remaining epochs at the last whole epoch's duration (training and validation), or
at this epoch's training rate before one has finished (``?`` until then when the total is unknown). Only global rank 0 writes.
"""

from __future__ import annotations

import math
import sys
import time

import pytorch_lightning as pl
import torch

from zfnet.progress import clock, interval, mode

__all__ = ["LineProgress", "trainer_progress"]


def trainer_progress(enabled: bool = True) -> tuple[list[pl.Callback], bool]:
    """(callbacks, enable_progress_bar) for ``pl.Trainer``: Lightning's bar on a terminal, ``LineProgress``
    without one (or with ``ZFNET_PROGRESS=lines``), neither when ``enabled`` is false or ``ZFNET_PROGRESS=off``."""
    how = mode() if enabled else "off"
    if how == "lines":
        return [LineProgress()], False
    return [], how == "tty"


def _known(total) -> int | None:
    """A batch total, or None when Lightning does not know it (inf) or there is none."""
    try:
        total = sum(total) if isinstance(total, (list, tuple)) else total
        return int(total) if total is not None and math.isfinite(total) and total > 0 else None
    except (TypeError, ValueError):
        return None


def _images(batch) -> int:
    """The number of images in a batch: the first dimension of its first tensor."""
    while isinstance(batch, (list, tuple)) and batch:
        batch = batch[0]
    if isinstance(batch, dict) and batch:
        return _images(next(iter(batch.values())))
    return int(batch.shape[0]) if isinstance(batch, torch.Tensor) and batch.dim() else 1


class _Phase:
    """The counting of one pass (a training epoch or a validation): batches, images, time, lines."""

    def __init__(self, name: str, total: int | None, now: float):
        self.name, self.total, self.start, self.batches, self.images = name, total, now, 0, 0
        self.last_line: float | None = None  # time of the last line
        self.last_batches = -1  # the count it showed

    def seconds_per_batch(self, now: float) -> float | None:
        return (now - self.start) / self.batches if self.batches else None

    def eta(self, now: float) -> float | None:
        per = self.seconds_per_batch(now)
        return None if per is None or self.total is None else max(0, self.total - self.batches) * per


class LineProgress(pl.Callback):
    """Plain progress lines for ``pl.Trainer`` (see the module's docstring); ``every``: seconds between
    lines (default ``ZFNET_PROGRESS_INTERVAL``), ``stream``: default stderr, ``clock``: the time source."""

    def __init__(self, every: float | None = None, stream=None, clock=time.monotonic):
        self.every = interval() if every is None else float(every)
        self.stream, self.clock = stream, clock
        self.run_start: float | None = None
        self.epoch_start: float | None = None
        self.epoch_seconds: float | None = None  # the last whole epoch, training and validation
        self.val_seconds: float | None = None  # the last validation
        self.train: _Phase | None = None
        self.val: _Phase | None = None
        self._loss_sum, self._loss_n = None, 0  # training loss since the last line (summed on its device)

    # ---------------------------------------------------------------------------------------- writing
    def _write(self, line: str) -> None:
        out = self.stream if self.stream is not None else sys.stderr
        out.write(line + "\n")
        out.flush()

    @staticmethod
    def _epoch(trainer) -> str:
        total = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else None
        return f"epoch {trainer.current_epoch + 1}/{total}" if total else f"epoch {trainer.current_epoch + 1}"

    @staticmethod
    def _count(phase: _Phase) -> str:
        if phase.total is None:
            return f"batch {phase.batches:,}"
        return f"batch {phase.batches:,}/{phase.total:,} ({100.0 * phase.batches / phase.total:.1f}%)"

    def _rate(self, trainer, phase: _Phase, now: float) -> str:
        seconds = now - phase.start
        if seconds <= 0.01 or not phase.images:
            return "? img/s"
        return f"{phase.images * max(1, trainer.world_size) / seconds:,.1f} img/s"

    def _run_eta(self, trainer, now: float) -> float | None:
        if self.train is None or trainer.max_epochs is None or trainer.max_epochs < 0:
            return None
        later = max(0, trainer.max_epochs - trainer.current_epoch - 1)  # epochs after this one
        this = self.train.eta(now)
        if self.epoch_seconds is not None:  # a whole epoch has run: it sets the pace, validation included
            if this is None:  # no rate yet, or no total: the rest of an epoch as long as the last
                this = max(0.0, self.epoch_seconds - (now - self.train.start))
            else:
                this += self.val_seconds or 0.0
            return this + later * self.epoch_seconds
        if this is None:
            return None
        return this + later * self.train.seconds_per_batch(now) * self.train.total  # training alone, so far

    def _due(self, phase: _Phase, now: float, last: bool) -> bool:
        if phase.batches == phase.last_batches:
            return False
        return phase.last_line is None or last or now - phase.last_line >= self.every

    def _train_line(self, trainer, now: float) -> None:
        phase = self.train
        loss = ""
        if self._loss_n:
            loss = f" | loss {float(self._loss_sum) / self._loss_n:.4f}"
            self._loss_sum, self._loss_n = None, 0
        self._write(f"train: {self._epoch(trainer)} | {self._count(phase)} | {self._rate(trainer, phase, now)}{loss} | "
                    f"elapsed {clock(now - phase.start)} | ETA epoch {clock(phase.eta(now))} | "
                    f"ETA run {clock(self._run_eta(trainer, now))}")
        phase.last_line, phase.last_batches = now, phase.batches

    def _val_line(self, trainer, now: float) -> None:
        phase = self.val
        self._write(f"validate: {self._epoch(trainer)} | {self._count(phase)} | {self._rate(trainer, phase, now)} | "
                    f"elapsed {clock(now - phase.start)} | ETA {clock(phase.eta(now))}")
        phase.last_line, phase.last_batches = now, phase.batches

    # ---------------------------------------------------------------------------------------- training
    def on_train_start(self, trainer, pl_module):
        self.run_start = self.clock()

    def on_train_epoch_start(self, trainer, pl_module):
        self.epoch_start = now = self.clock()
        self.train = _Phase("train", _known(trainer.num_training_batches), now)
        self._loss_sum, self._loss_n = None, 0
        if trainer.is_global_zero:
            self._train_line(trainer, now)  # the log shows at once that the epoch started, and its size

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not trainer.is_global_zero or self.train is None:
            return
        phase = self.train
        phase.batches, phase.images = phase.batches + 1, phase.images + _images(batch)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            loss = loss.detach().float()  # summed on its device: no synchronization per batch
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
            self._loss_n += 1
        now = self.clock()
        if self._due(phase, now, last=phase.total is not None and phase.batches >= phase.total):
            self._train_line(trainer, now)

    def on_train_epoch_end(self, trainer, pl_module):
        now = self.clock()
        if trainer.is_global_zero and self.train is not None and self._due(self.train, now, last=True):
            self._train_line(trainer, now)  # the closing line of an epoch whose total was unknown
        if self.epoch_start is not None and self.train is not None and self.train.batches:
            self.epoch_seconds = now - self.epoch_start

    # -------------------------------------------------------------------------------------- validation
    def on_validation_epoch_start(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        now = self.clock()
        if trainer.is_global_zero and self.train is not None and self._due(self.train, now, last=True):
            self._train_line(trainer, now)  # where training stands (its last line, when the total is unknown)
        self.val = _Phase("validate", _known(trainer.num_val_batches), now)
        if trainer.is_global_zero:
            self._val_line(trainer, now)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if trainer.sanity_checking or not trainer.is_global_zero or self.val is None:
            return
        phase = self.val
        phase.batches, phase.images = phase.batches + 1, phase.images + _images(batch)
        now = self.clock()
        if self._due(phase, now, last=phase.total is not None and phase.batches >= phase.total):
            self._val_line(trainer, now)

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero or self.val is None:
            return
        now = self.clock()
        if self._due(self.val, now, last=True):
            self._val_line(trainer, now)
        self.val_seconds = now - self.val.start
