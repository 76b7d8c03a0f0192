"""Progress a person can follow without a terminal: a plain line with count/total, rate and ETA at most every
ZFNET_PROGRESS_INTERVAL seconds (``zfnet.progress`` for loops, ``zfnet.training.progress`` for Lightning),
checked with a fake clock against the arithmetic, and in the log of real stage runs (prepare, train) whose
stderr is a pipe; worker counts above the machine's cores are capped with a warning naming the key."""

from __future__ import annotations

import io
import logging
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from helpers import REPO
from test_prepare import make_imagenet

import zfnet.parallel as parallel
from zfnet.progress import LineBar, bar, clock, interval, mode

CLOCK = r"(\d+:\d\d:\d\d|\?)"
NUM = r"([\d,]+(?:\.\d+)?|\?)"
LOOP = re.compile(rf"^(?P<desc>[^:]+): (?P<n>[\d,]+)(?:/(?P<total>[\d,]+))? (?P<unit>\w+)(?: \((?P<pct>[\d.]+)%\))? \| "
                  rf"(?P<rate>{NUM[1:-1]}) \w+/s(?: \| (?P<extra>[^|]+))? \| elapsed (?P<elapsed>{CLOCK[1:-1]}) \| "
                  rf"ETA (?P<eta>{CLOCK[1:-1]})$")
TRAIN = re.compile(rf"^train: epoch (?P<epoch>\d+)/(?P<epochs>\d+) \| batch (?P<n>[\d,]+)(?:/(?P<total>[\d,]+) "
                   rf"\((?P<pct>[\d.]+)%\))? \| (?P<rate>{NUM[1:-1]}) img/s(?: \| loss (?P<loss>[\d.]+))? \| "
                   rf"elapsed (?P<elapsed>{CLOCK[1:-1]}) \| ETA epoch (?P<eta>{CLOCK[1:-1]}) \| "
                   rf"ETA run (?P<eta_run>{CLOCK[1:-1]})$")
VALIDATE = re.compile(rf"^validate: epoch (?P<epoch>\d+)/(?P<epochs>\d+) \| batch (?P<n>[\d,]+)(?:/(?P<total>[\d,]+) "
                      rf"\((?P<pct>[\d.]+)%\))? \| (?P<rate>{NUM[1:-1]}) img/s \| elapsed (?P<elapsed>{CLOCK[1:-1]}) \| "
                      rf"ETA (?P<eta>{CLOCK[1:-1]})$")


def num(text: str | None) -> float | None:
    return None if text in (None, "?") else float(text.replace(",", ""))


def seconds(text: str) -> int | None:
    if text == "?":
        return None
    h, m, s = map(int, text.split(":"))
    return 3600 * h + 60 * m + s


def parse(pattern, text: str) -> list[dict]:
    return [m.groupdict() for m in map(pattern.match, text.splitlines()) if m]


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def lines_mode(monkeypatch):
    monkeypatch.setenv("ZFNET_PROGRESS", "lines")
    monkeypatch.setenv("ZFNET_PROGRESS_INTERVAL", "60")
    fake = FakeClock()
    monkeypatch.setattr(LineBar, "clock", staticmethod(fake))
    return fake


# ------------------------------------------------------------------------------------------ loops (bar)

def test_lines_come_at_most_every_interval_with_rate_and_eta(lines_mode):
    """One item every 7 s, 100 items, interval 60 s: a line at the start, then at the first update at least
    60 s after the previous line, and the closing line; each with n/total, n / t img/s and (total - n) / rate."""
    out = io.StringIO()
    shown = bar(total=100, desc="prepare", unit="img", file=out)
    expected, last = [(0, 0.0)], 0.0
    for n in range(1, 101):
        lines_mode.t += 7.0
        shown.update(1)
        t = 7.0 * n
        if t - last >= 60:
            expected.append((n, t))
            last = t
    shown.close()
    if expected[-1][0] != 100:
        expected.append((100, 700.0))
    rows = parse(LOOP, out.getvalue())
    assert len(rows) == len(out.getvalue().splitlines()), out.getvalue()  # every line is a progress line
    assert [(int(num(r["n"])), seconds(r["elapsed"])) for r in rows] == [(n, round(t)) for n, t in expected]
    for r, (n, t) in zip(rows, expected):
        assert r["desc"] == "prepare" and r["unit"] == "img" and num(r["total"]) == 100
        assert num(r["pct"]) == pytest.approx(n, abs=0.05)
        if n == 0:
            assert r["rate"] == "?" and r["eta"] == "?"
            continue
        rate = n / t
        assert num(r["rate"]) == pytest.approx(rate, abs=0.05)
        assert seconds(r["eta"]) == round((100 - n) / rate)
    assert "\r" not in out.getvalue()


def test_closing_line_once_and_only_when_the_count_moved(lines_mode):
    out = io.StringIO()
    for _ in bar(range(3), desc="a", file=out):  # closes when the loop ends: 3/3, not a repeat of 0/3
        lines_mode.t += 1.0
    rows = parse(LOOP, out.getvalue())
    assert [(r["n"], r["total"]) for r in rows] == [("0", "3"), ("3", "3")]
    assert num(rows[-1]["rate"]) == pytest.approx(1.0) and rows[-1]["eta"] == "0:00:00"

    out = io.StringIO()
    monkey_interval = bar(total=2, desc="b", file=out)
    lines_mode.t += 61
    monkey_interval.update(2)  # due: printed now
    monkey_interval.close()  # nothing new to say
    assert [r["n"] for r in parse(LOOP, out.getvalue())] == ["0", "2"]

    out = io.StringIO()
    for _ in bar([], desc="empty", file=out):  # no work, no line
        pass
    assert out.getvalue() == ""


def test_unknown_total_shows_the_count_alone(lines_mode):
    out = io.StringIO()
    for _ in bar((i for i in range(5)), desc="stream", unit="img", file=out):
        lines_mode.t += 30.0
    rows = parse(LOOP, out.getvalue())
    assert rows[0]["n"] == "0" and rows[-1]["n"] == "5"
    assert all(r["total"] is None and r["pct"] is None and r["eta"] == "?" for r in rows)
    assert num(rows[-1]["rate"]) == pytest.approx(5 / 150.0, abs=0.05)
    assert [seconds(r["elapsed"]) for r in rows] == [0, 60, 120, 150]  # 60 s apart, then the closing line


def test_postfix_is_shown_between_rate_and_elapsed(lines_mode):
    out = io.StringIO()
    shown = bar(total=4, desc="x", file=out)
    shown.set_postfix(loss=1.5, refresh=False)
    lines_mode.t += 2
    shown.update(4)
    shown.close()
    assert parse(LOOP, out.getvalue())[-1]["extra"] == "loss=1.5"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_modes_and_settings(monkeypatch):
    monkeypatch.delenv("ZFNET_PROGRESS", raising=False)
    monkeypatch.delenv("ZFNET_PROGRESS_INTERVAL", raising=False)
    assert interval() == 60.0
    tty = Terminal()
    assert mode(tty) == "tty" and mode(io.StringIO()) == "lines"
    for _ in bar(range(3), file=tty):
        pass
    assert "\r" in tty.getvalue() and "3/3" in tty.getvalue()  # tqdm's own bar, redrawn in place
    monkeypatch.setenv("ZFNET_PROGRESS", "off")
    out = io.StringIO()
    for _ in bar(range(3), file=out):
        pass
    assert out.getvalue() == ""
    monkeypatch.setenv("ZFNET_PROGRESS", "loud")
    with pytest.raises(ValueError, match="ZFNET_PROGRESS='loud'"):
        mode()
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("ZFNET_PROGRESS_INTERVAL", bad)
        with pytest.raises(ValueError, match="ZFNET_PROGRESS_INTERVAL"):
            interval()
    assert clock(2 * 86400 + 3 * 3600 + 4 * 60 + 5) == "51:04:05" and clock(None) == "?" and clock(math.inf) == "?"


# ----------------------------------------------------------------------------- training (LineProgress)

def fake_trainer(batches, epochs=3, val_batches=(5,)):
    return SimpleNamespace(num_training_batches=batches, num_val_batches=list(val_batches), max_epochs=epochs,
                           current_epoch=0, is_global_zero=True, world_size=1, sanity_checking=False)


def drive_epoch(cb, trainer, fake, n_batches, step=2.0, images=10, val=5, val_step=1.0, loss=lambda i: float(i)):
    cb.on_train_epoch_start(trainer, None)
    for i in range(n_batches):
        fake.t += step
        batch = (torch.zeros(images, 3, 1, 1), torch.zeros(images, dtype=torch.long))
        cb.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss(i))}, batch, i)
    cb.on_validation_epoch_start(trainer, None)
    for i in range(val):
        fake.t += val_step
        cb.on_validation_batch_end(trainer, None, None, (torch.zeros(4, 3, 1, 1), torch.zeros(4)), i)
    cb.on_validation_epoch_end(trainer, None)
    cb.on_train_epoch_end(trainer, None)


def test_training_lines_epoch_batch_rate_loss_and_etas():
    """100 batches of 10 images, 2 s each, 3 epochs, validation 5 batches of 1 s, interval 60 s."""
    from zfnet.training.progress import LineProgress

    fake, out = FakeClock(), io.StringIO()
    cb = LineProgress(every=60, stream=out, clock=fake)
    trainer = fake_trainer(100)
    cb.on_train_start(trainer, None)
    drive_epoch(cb, trainer, fake, 100)
    rows = parse(TRAIN, out.getvalue())
    # a line at the start, every 30 batches (60 s), and at the last batch
    assert [int(r["n"]) for r in rows] == [0, 30, 60, 90, 100]
    assert all(r["epoch"] == "1" and r["epochs"] == "3" and r["total"] == "100" for r in rows)
    r30 = rows[1]
    assert num(r30["rate"]) == pytest.approx(5.0)  # 10 images / 2 s
    assert seconds(r30["eta"]) == 70 * 2  # 70 batches left at 2 s
    assert seconds(r30["eta_run"]) == 70 * 2 + 2 * 100 * 2  # and two more epochs at this rate
    assert float(r30["loss"]) == pytest.approx(sum(range(30)) / 30, abs=1e-4)  # mean since the last line
    assert float(rows[2]["loss"]) == pytest.approx(sum(range(30, 60)) / 30, abs=1e-4)
    assert rows[0]["loss"] is None and rows[0]["rate"] == "?" and rows[0]["eta"] == "?"
    val = parse(VALIDATE, out.getvalue())
    assert [int(r["n"]) for r in val] == [0, 5] and all(r["total"] == "5" for r in val)
    assert num(val[-1]["rate"]) == pytest.approx(4.0) and val[-1]["eta"] == "0:00:00"
    # epoch 2: the whole first epoch (200 s training + 5 s validation) sets the run's pace
    trainer.current_epoch = 1
    out.seek(0), out.truncate()
    drive_epoch(cb, trainer, fake, 100)
    rows = parse(TRAIN, out.getvalue())
    assert seconds(rows[0]["eta_run"]) == 205 + 205  # before a batch: the rest of this epoch and the next
    assert seconds(rows[1]["eta_run"]) == 70 * 2 + 5 + 205


def test_training_lines_without_a_total():
    """A stream without a length: the count alone; the run's ETA once a whole epoch has been timed."""
    from zfnet.training.progress import LineProgress

    fake, out = FakeClock(), io.StringIO()
    cb = LineProgress(every=60, stream=out, clock=fake)
    trainer = fake_trainer(math.inf, epochs=2, val_batches=(math.inf,))
    cb.on_train_start(trainer, None)
    drive_epoch(cb, trainer, fake, 40, val=2)
    rows = parse(TRAIN, out.getvalue())
    assert [int(r["n"]) for r in rows] == [0, 30, 40]  # the closing line comes at the epoch's end
    assert all(r["total"] is None and r["eta"] == "?" and r["eta_run"] == "?" for r in rows)
    assert all(r["total"] is None for r in parse(VALIDATE, out.getvalue()))
    trainer.current_epoch = 1
    out.seek(0), out.truncate()
    drive_epoch(cb, trainer, fake, 10, val=2)
    rows = parse(TRAIN, out.getvalue())
    assert seconds(rows[0]["eta_run"]) == 80 + 2  # the first epoch's length: 40 × 2 s and 2 × 1 s


def test_trainer_progress_picks_lightnings_bar_or_lines(monkeypatch):
    from zfnet.training.progress import LineProgress, trainer_progress

    monkeypatch.setenv("ZFNET_PROGRESS", "lines")
    callbacks, lightning_bar = trainer_progress()
    assert [type(c) for c in callbacks] == [LineProgress] and lightning_bar is False
    assert trainer_progress(enabled=False) == ([], False)
    monkeypatch.setenv("ZFNET_PROGRESS", "tty")
    assert trainer_progress() == ([], True)
    monkeypatch.setenv("ZFNET_PROGRESS", "off")
    assert trainer_progress() == ([], False)


# --------------------------------------------------------------------------------------- worker counts

def test_worker_counts_are_capped_at_the_cores_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    with caplog.at_level(logging.WARNING, logger="zfnet.parallel"):
        assert parallel.cap_workers(8, "prepare.workers") == 2
        assert parallel.cap_workers(2, "overlap.workers") == 2
        assert parallel.cap_workers(1, "transfer.workers") == 1
    assert [r.getMessage() for r in caplog.records] == ["prepare.workers=8 exceeds this machine's 2 cores; using 2"]
    cfg = OmegaConf.create({"transfer": {"workers": 16, "seed": 0}, "finetune": {"workers": 1}})
    out = parallel.capped(cfg, "transfer.workers", "finetune.workers")
    assert out.transfer.workers == 2 and out.finetune.workers == 1 and out.transfer.seed == 0
    assert cfg.transfer.workers == 16  # the caller's config is left as it was


# ----------------------------------------------------------------------- real stages, stderr a pipe

def stage(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "ZFNET_PROGRESS_INTERVAL": "0",
           "WANDB_MODE": "offline", "WANDB_DIR": str(cwd), "OMP_NUM_THREADS": "1"}
    env.pop("ZFNET_PROGRESS", None)  # decided by stderr: a pipe, not a terminal
    proc = subprocess.run([sys.executable, str(REPO / "pipelines" / script), "profile=tiny",
                           f"hydra.run.dir={cwd / 'logs' / script}", *args],
                          cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


PER_CLASS, VAL_PER_CLASS, CLASSES = 6, 2, 3


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The prepare stage run on a small ImageNet layout, with a worker count no machine has."""
    root = tmp_path_factory.mktemp("progress")
    make_imagenet(root / "in", per_class=PER_CLASS, val_per_class=VAL_PER_CLASS, bad=False)
    proc = stage("prepare.py", [f"data.imagenet_root={root / 'in'}", f"prepare.out_dir={root / 'prepared'}",
                                "overlap.remove=false", "prepare.shard_size=4", "prepare.workers=4096"], root)
    return root, proc


def test_prepare_logs_count_total_rate_and_eta(prepared):
    _, proc = prepared
    rows = [r for r in parse(LOOP, proc.stderr) if r["desc"] == "prepare"]
    images = CLASSES * (PER_CLASS + VAL_PER_CLASS)  # every image of both splits, counted from the layout
    assert len(rows) >= 3, proc.stderr[-3000:]
    assert all(num(r["total"]) == images and r["unit"] == "img" for r in rows)
    counts = [int(num(r["n"])) for r in rows]
    assert counts[0] == 0 and counts[-1] == images and counts == sorted(counts)
    timed = [r for r in rows if r["rate"] != "?"]
    assert timed and all(num(r["rate"]) > 0 and r["eta"] != "?" for r in timed)
    for r in timed:  # the ETA is what is left at the printed rate (its rounding: 0.05 img/s, 1 s)
        left = (images - num(r["n"])) / num(r["rate"])
        assert abs(seconds(r["eta"]) - left) <= 1 + left * 0.05 / num(r["rate"]), r
    assert "\r" not in proc.stderr  # a log, not a carriage-return bar
    cores = len(os.sched_getaffinity(0))
    log = proc.stdout + proc.stderr  # Hydra logs to stdout
    assert f"prepare.workers=4096 exceeds this machine's {cores} cores; using {cores}" in log


def test_train_logs_epochs_batches_rate_loss_and_etas(prepared):
    root, _ = prepared
    out = root / "train"
    proc = stage("train.py", [f"prepare.out_dir={root / 'prepared'}", f"train.out_dir={out / 'models'}",
                              f"train.metrics_path={out / 'm.json'}", f"train.history_path={out / 'h.csv'}",
                              "train.epochs=2", "train.checkpoint_epochs=[2]", "train.batch_size=4"], root)
    rows = parse(TRAIN, proc.stderr)
    train_images, val_images = CLASSES * PER_CLASS, CLASSES * VAL_PER_CLASS
    assert {r["epoch"] for r in rows} == {"1", "2"} and {r["epochs"] for r in rows} == {"2"}, proc.stderr[-3000:]
    assert {int(r["total"]) for r in rows} == {train_images // 4}  # full batches only (drop_last)
    for epoch in ("1", "2"):
        counts = [int(r["n"]) for r in rows if r["epoch"] == epoch]
        assert counts[0] == 0 and counts[-1] == train_images // 4 and counts == sorted(counts)
    timed = [r for r in rows if r["rate"] != "?"]
    assert timed and all(num(r["rate"]) > 0 and r["eta"] != "?" and r["eta_run"] != "?" for r in timed)
    assert all(0 < float(r["loss"]) < 20 for r in timed)  # a cross-entropy over 3 classes, near ln 3 untrained
    assert seconds(rows[-1]["eta"]) == 0
    val = parse(VALIDATE, proc.stderr)
    assert {r["epoch"] for r in val} == {"1", "2"}
    assert {int(r["total"]) for r in val} == {math.ceil(val_images / 4)}
    assert any(r["rate"] != "?" and r["eta"] != "?" for r in val)
    assert "\r" not in proc.stderr
