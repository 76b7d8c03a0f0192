"""The train stage: build the data module and model from config, fit with Lightning, export results.

Outputs under ``train.out_dir``: ``epoch=NN.ckpt`` at the feature-evolution epochs, ``last.ckpt``,
``model.pt`` (weights_only-loadable, the same bytes for the same weights) and ``run_config.json``
({fingerprint, config_hash, code_hash, epochs_done}). Metrics go to ``metrics_path`` (DVC metrics),
per-epoch history to ``history_path`` (DVC plots), both to W&B.

Training never loses a result:
- the fingerprint is the configuration (``data``, ``model``, ``train``, ``seed``) *and* the code of the
  train stage (the import closure of ``zfnet/stages/train.py``); every checkpoint carries it;
- ``last.ckpt`` is resumed only when it has the same fingerprint and finished fewer than ``train.epochs``
  epochs (an interrupted run); the history rows travel inside the checkpoint, so a resume needs no CSV;
- any other earlier run (another fingerprint, or a finished one) is moved, never deleted, to
  ``train.out_dir/previous/<old fingerprint[:12]>-<UTC time>/``;
- an unreadable ``last.ckpt`` is renamed ``last.ckpt.corrupt-<UTC time>`` and the run trains afresh (the
  earlier run's ``epoch=NN.ckpt`` moved aside as above): they hold weights only, no optimizer momentum,
  scheduler or RNG state, so resuming one would not continue the run it came from;
- nothing under ``train.out_dir`` changes before the settings are valid and the data module, model and
  trainer are built.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import OmegaConf

from zfnet.closure import PACKAGE_DIR, import_closure, source_digest
from zfnet.data.datamodule import ShardDataModule
from zfnet.io import atomic_path, write_text
from zfnet.models.weights import UnreadableCheckpoint, export_model
from zfnet.parallel import cap_workers
from zfnet.schema import ConfigError, validate
from zfnet.tracking import Tracker, mean_image_artifact, model_artifact_name, start_run
from zfnet.training.checkpoints import AtomicCheckpointIO, EpochCheckpoints, run_info
from zfnet.training.lightning_module import Classifier
from zfnet.training.outputs import how_run, set_threads
from zfnet.training.progress import trainer_progress

log = logging.getLogger(__name__)

TRAIN_STAGE = PACKAGE_DIR / "stages" / "train.py"  # the code part of the fingerprint: its import closure
PREVIOUS = "previous"  # earlier runs moved aside, under train.out_dir
RUN_FILES = ("model.pt", "run_config.json", "logs")  # besides every *.ckpt; "logs": the CSVLogger's folder


class EpochReport(pl.Callback):
    """Per-epoch history CSV (atomic rewrite) and the images ``images(model)`` draws (``{key: uint8 array}``,
    e.g. the layer-1 filters: ``zfnet.stages.train``) to W&B.

    Runs at the end of each training epoch, after that epoch's validation and before the module resets
    its training metrics (Lightning calls callbacks' on_train_epoch_end before the module's, and the
    checkpoint callback's after this one, so each checkpoint holds the rows up to its own epoch). The
    rows are this callback's checkpoint state: a resumed run restores them without reading the CSV.
    """

    def __init__(self, history_path: Path, tracker: Tracker, images: Callable | None = None):
        self.history_path, self.tracker, self.rows = Path(history_path), tracker, []
        self.images = images

    @property
    def state_key(self) -> str:  # fixed, so subclasses (tests) and renames still restore the rows
        return "EpochReport"

    def state_dict(self) -> dict:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = [dict(r) for r in state_dict.get("rows", [])]

    def on_train_epoch_end(self, trainer, pl_module):
        summary = pl_module.train_epoch_summary()
        if summary is None or trainer.global_rank != 0:
            return
        row = {"epoch": trainer.current_epoch + 1}
        row.update({k.replace("/", "_"): round(float(v), 6) for k, v in summary.items() if not k.startswith("filter_rms")})
        row.update({k.replace("/", "_"): round(float(v), 6) for k, v in sorted(trainer.callback_metrics.items())
                    if k.startswith("val")})
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        fields = sorted({k for r in self.rows for k in r}, key=lambda k: (k != "epoch", k))
        with atomic_path(self.history_path) as tmp, tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.rows)
        for key, image in (self.images(pl_module.model) if self.images else {}).items():
            self.tracker.image(key, image, caption=f"epoch {row['epoch']}")


# ---------------------------------------------------------------------------------------------- settings

_SETTINGS = {"seed": ("seed", int), "epochs": ("train.epochs", int), "batch_size": ("train.batch_size", int),
             "lr": ("train.lr", float), "momentum": ("train.momentum", float),
             "weight_decay": ("train.weight_decay", float), "lr_factor": ("train.lr_factor", float),
             "lr_patience": ("train.lr_patience", int), "rms_clip": ("train.rms_clip", float),
             "crop": ("data.crop", int), "eval_crop_chunk": ("train.eval_crop_chunk", int)}
_NULLABLE = {"rms_clip"}


def settings(cfg) -> dict:
    """The numeric training settings, checked by the config schema (``zfnet.schema.train``: types and
    ranges) before anything is built or written; a ``ConfigError`` names a key that is missing."""
    validate(cfg)
    out, missing = {}, []
    for name, (key, kind) in _SETTINGS.items():
        value = OmegaConf.select(cfg, key, throw_on_missing=True)
        if value is None and name not in _NULLABLE:
            missing.append(f"{key}: missing (training needs it)")
        out[name] = None if value is None else kind(value)
    if missing:
        raise ConfigError(missing)
    out["checkpoint_epochs"] = [int(e) for e in OmegaConf.select(cfg, "train.checkpoint_epochs") or []]
    return out


def check_prepared(prepared_dir: str | Path, crop: int) -> None:
    """What the data module's ``setup`` (run inside ``fit``) needs, checked read-only before ``fit``:
    the mean image, large enough for the crop, and the train and val shards."""
    import numpy as np

    from zfnet.data import shards

    mean_path = Path(prepared_dir) / "mean.npy"
    if not mean_path.is_file():
        raise FileNotFoundError(f"{mean_path}: missing; run the prepare stage first")
    try:
        size = np.load(mean_path, mmap_mode="r").shape[1]
    except (OSError, ValueError, IndexError) as err:
        raise ValueError(f"{mean_path}: not a readable (H, W, 3) mean image ({err}); run the prepare stage again") from None
    if crop > size:
        raise ValueError(f"data.crop={crop} is larger than the prepared images ({size}) in {prepared_dir}")
    for split in ("train", "val"):
        shards.shards(prepared_dir, split)


# ------------------------------------------------------------------------------------------- fingerprint

def config_hash(cfg) -> str:
    keep = {k: cfg[k] for k in ("data", "model", "train", "seed") if k in cfg}
    text = OmegaConf.to_yaml(OmegaConf.create(OmegaConf.to_container(OmegaConf.create(keep), resolve=True)), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()


def code_hash() -> str:
    """sha1 of the train stage's code: every package file that ``zfnet/stages/train.py`` imports."""
    return source_digest(import_closure(TRAIN_STAGE))


def run_identity(cfg) -> dict:
    """{fingerprint, config_hash, code_hash}: the fingerprint covers both the configuration and the code."""
    config, code = config_hash(cfg), code_hash()
    return {"fingerprint": hashlib.sha1(f"config {config}\ncode {code}\n".encode()).hexdigest(),
            "config_hash": config, "code_hash": code}


def fingerprint(cfg) -> str:
    return run_identity(cfg)["fingerprint"]


# ------------------------------------------------------------------------------------------------ resume

def _utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


@dataclass
class ResumePlan:
    """What ``train`` will do to ``out_dir`` (decided before anything there changes)."""
    out_dir: Path
    ckpt: Path | None = None  # the checkpoint to resume, None: train afresh
    epochs_done: int = 0  # epochs finished in ``ckpt``
    corrupt: list[Path] = field(default_factory=list)  # unreadable checkpoints, to rename *.corrupt-<time>
    reason: str = "no earlier run"  # why the earlier run (if any) is not resumed

    @property
    def resume(self) -> bool:
        return self.ckpt is not None


def plan_resume(out_dir: str | Path, fp: str, epochs: int) -> ResumePlan:
    """Which checkpoint to resume (reads, changes nothing): ``last.ckpt`` when readable (the only one with the
    resume state; ``epoch=NN.ckpt`` hold weights only); resumed only if its fingerprint is ``fp`` and it
    finished < ``epochs``."""
    out_dir = Path(out_dir)
    plan = ResumePlan(out_dir)
    candidates = [out_dir / "last.ckpt"]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            info = run_info(path)
        except UnreadableCheckpoint:
            plan.corrupt.append(path)
            continue
        done = int(info.get("epochs_done", 0) or 0)
        if info.get("fingerprint") != fp:
            plan.reason = f"{path.name} was written by another configuration or code"
        elif done >= epochs:
            plan.reason = f"{path.name} holds a finished run, {done} of {epochs} epochs"
        elif done < 1:
            plan.reason = f"{path.name} holds no finished epoch"
        else:
            plan.ckpt, plan.epochs_done = path, done
        break
    return plan


def _fresh_dir(parent: Path, name: str) -> Path:
    target, n = parent / name, 1
    while target.exists():
        n += 1
        target = parent / f"{name}-{n}"
    return target


def move_aside_corrupt(path: Path) -> Path:
    target = _fresh_dir(path.parent, f"{path.name}.corrupt-{_utc_stamp()}")
    os.replace(path, target)
    return target


def move_aside_run(out_dir: Path) -> Path | None:
    """Move the earlier run's files (every *.ckpt, model.pt, run_config.json, logs/) to
    ``out_dir/previous/<its fingerprint[:12]>-<UTC time>/``; None when there is nothing to move."""
    files = sorted(out_dir.glob("*.ckpt")) + [out_dir / name for name in RUN_FILES if (out_dir / name).exists()]
    if not files:
        return None
    old = "unknown"
    try:
        old = str(json.loads((out_dir / "run_config.json").read_text())["fingerprint"])[:12] or old
    except (OSError, ValueError, KeyError, TypeError):
        try:
            old = str(run_info(out_dir / "last.ckpt").get("fingerprint", old))[:12]
        except (OSError, ValueError):
            pass
    target = _fresh_dir(out_dir / PREVIOUS, f"{old}-{_utc_stamp()}")
    target.mkdir(parents=True)
    for path in files:
        shutil.move(str(path), str(target / path.name))
    return target


def _global_rank_zero() -> bool:
    """Whether this process is the job's first (Lightning's rank variables, read before the Trainer
    starts): only it changes ``train.out_dir``; the other ranks follow the same plan read-only."""
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(key)
        if value not in (None, "", "0"):
            return False
    return True


def apply_plan(plan: ResumePlan) -> Path | None:
    """Carry out ``plan`` on its folder: rename unreadable checkpoints, move an earlier run aside."""
    out_dir = plan.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in plan.corrupt:
        target = move_aside_corrupt(path)
        log.warning("%s: not a readable checkpoint; moved to %s", path, target)
    if plan.resume:
        if plan.corrupt:
            log.warning("%s: resuming from %s (epoch %d)", out_dir, plan.ckpt, plan.epochs_done)
        return None
    moved = move_aside_run(out_dir)
    if moved is not None:
        log.warning("%s: training afresh (%s); the earlier run's files were moved to %s", out_dir, plan.reason, moved)
    return moved


# ----------------------------------------------------------------------------------------------- train

def train(cfg, prepared_dir: str | Path, metrics_path: str | Path, history_path: str | Path,
          job_type: str = "train", run_name: str | None = None, epoch_images: Callable | None = None) -> dict:
    """Train ``cfg``'s model on the prepared shards (resuming a run of the same fingerprint); writes the
    metrics and the history. ``epoch_images``: model -> ``{W&B key: uint8 image}``, logged after each epoch."""
    from pytorch_lightning.loggers import CSVLogger, WandbLogger

    # 1. everything that can fail on a bad configuration, before train.out_dir is touched
    s = settings(cfg)
    if cfg.train.out_dir is None:
        raise ValueError("train.out_dir: null (this run's Hydra output dir) is resolved by zfnet.stages.train.run; "
                         "give a folder when calling zfnet.training.run.train directly")
    out_dir = Path(cfg.train.out_dir)
    metrics_path, history_path = Path(metrics_path), Path(history_path)
    if cfg.trainer.get("threads") is not None:  # per job: the same numbers whatever launched it
        set_threads(int(cfg.trainer.threads))
    pl.seed_everything(s["seed"], workers=True)
    workers = cap_workers(cfg.data.num_workers, "data.num_workers")  # not in cfg: the fingerprint keeps the setting
    dm = ShardDataModule(prepared_dir, crop=s["crop"], batch_size=s["batch_size"], crops=cfg.data.crops,
                         pixel_scale=cfg.data.pixel_scale, num_workers=workers,
                         in_memory=cfg.data.get("in_memory", True))
    num_classes = dm.num_classes
    check_prepared(prepared_dir, s["crop"])
    gpu = cfg.trainer.accelerator in ("gpu", "cuda")
    module = Classifier(OmegaConf.to_container(cfg.model, resolve=True), num_classes, crop=s["crop"],
                        lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"],
                        lr_factor=s["lr_factor"], lr_patience=s["lr_patience"],
                        rms_clip=s["rms_clip"], channels_last=gpu,
                        eval_crop_chunk=s["eval_crop_chunk"])
    identity = run_identity(cfg)
    plan = plan_resume(out_dir, identity["fingerprint"], s["epochs"])
    stamp = out_dir / "run_config.json"
    rank_zero = _global_rank_zero()

    def write_stamp(epochs_done: int) -> None:
        write_text(stamp, json.dumps({**identity, "epochs_done": int(epochs_done)}, indent=2, sort_keys=True))

    tracker = start_run(cfg, job_type, name=run_name)
    tracker.use_artifact(*mean_image_artifact(cfg, prepared_dir))  # lineage: the prepare run's mean image
    try:
        report = EpochReport(history_path, tracker, epoch_images)
        logger = WandbLogger(experiment=tracker.run, log_model=False) if tracker.run else CSVLogger(str(out_dir), name="logs")
        progress, bar = trainer_progress()  # Lightning's bar on a terminal, log lines with rate and ETA without
        trainer = pl.Trainer(
            max_epochs=s["epochs"],
            accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, num_nodes=cfg.trainer.num_nodes,
            strategy=cfg.trainer.strategy, precision=cfg.trainer.precision,
            deterministic=bool(cfg.train.deterministic),
            limit_train_batches=cfg.train.limit_train_batches,
            callbacks=[EpochCheckpoints(out_dir, s["checkpoint_epochs"], run=identity, on_saved=write_stamp), report,
                       *progress], enable_progress_bar=bar,
            plugins=[AtomicCheckpointIO()], enable_checkpointing=True, logger=logger,
            default_root_dir=str(out_dir), log_every_n_steps=10, num_sanity_val_steps=0,
        )
    except BaseException:
        tracker.finish()
        raise

    # 2. the earlier run: resumed, or moved aside (never deleted)
    if rank_zero:
        apply_plan(plan)
        write_stamp(plan.epochs_done)
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=str(plan.ckpt) if plan.resume else None, weights_only=True)
    seconds = time.perf_counter() - start

    if trainer.global_rank != 0:
        return {}
    if not report.rows or report.rows[-1]["epoch"] != s["epochs"]:
        tracker.finish()
        ran = report.rows[-1]["epoch"] if report.rows else 0
        raise RuntimeError(f"{out_dir}: training stopped after {ran} of train.epochs={s['epochs']} epochs; "
                           f"no metrics written to {metrics_path} (check train.epochs and train.limit_train_batches)")
    export_model(module.model, out_dir / "model.pt", extra={"classes": num_classes})
    final = report.rows[-1]  # the last epoch's row of the history (kept across a resume, in the checkpoint)
    metrics = {
        "epochs": s["epochs"],
        "num_classes": num_classes,
        "chance_top1_error": 1 - 1 / num_classes,
        **{k: float(final[k]) for k in ("train_top1_error", "train_top5_error", "val_top1_error", "val_top5_error",
                                        "val_10crop_top1_error", "val_10crop_top5_error")},
        "run": how_run(cfg, trainer.world_size),  # launcher, world size, threads: how these numbers were made
    }
    write_text(metrics_path, json.dumps(metrics, indent=2))
    # wall-clock time goes to W&B and the log, never into the metrics file: same inputs, same bytes (DVC)
    # so is whether it was resumed: a resumed run and one never stopped write the same file
    log.info("%s: %d epochs trained in %.1f s%s", out_dir, s["epochs"], seconds, " (resumed)" if plan.resume else "")
    tracker.summary({**metrics, "train_seconds": round(seconds, 2), "resumed": plan.resume})
    if cfg.wandb.get("log_checkpoints"):
        tracker.artifact(model_artifact_name(cfg, tracker.name), "model", [out_dir / "model.pt"],
                         metadata={**metrics, "train_seconds": round(seconds, 2)})
    tracker.finish()
    return {**metrics, "resumed": plan.resume}
