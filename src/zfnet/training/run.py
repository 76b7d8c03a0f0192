"""The train stage: build the data module and model from config, fit with Lightning, export results.

Outputs under ``train.out_dir``: ``epoch=NN.ckpt`` at the feature-evolution epochs, ``last.ckpt``,
``model.pt`` (weights_only-loadable) and ``run_config.json`` (the fingerprint that makes resuming
safe: ``last.ckpt`` is resumed only when it was written by the same configuration). Metrics go to
``metrics_path`` (DVC metrics), per-epoch history to ``history_path`` (DVC plots), both to W&B.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import OmegaConf

from zfnet.analysis.filters import filter_grid
from zfnet.data.datamodule import ShardDataModule
from zfnet.io import atomic_path, write_text
from zfnet.tracking import Tracker, start_run
from zfnet.models.weights import export_model
from zfnet.training.checkpoints import AtomicCheckpointIO, EpochCheckpoints
from zfnet.training.lightning_module import Classifier


class EpochReport(pl.Callback):
    """Per-epoch history CSV (atomic rewrite) and the layer-1 filters image to W&B.

    Runs at the end of each training epoch, after that epoch's validation and before the module resets
    its training metrics (Lightning calls callbacks' on_train_epoch_end before the module's).
    """

    def __init__(self, history_path: Path, tracker: Tracker, resume: bool = False):
        self.history_path, self.tracker, self.rows = history_path, tracker, []
        if resume and history_path.is_file():  # keep the epochs reported before the interruption
            with history_path.open(newline="") as fh:
                self.rows = [{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items() if v != ""}
                             for r in csv.DictReader(fh)]

    def on_train_epoch_end(self, trainer, pl_module):
        summary = pl_module.train_epoch_summary()
        if summary is None or trainer.global_rank != 0:
            return
        row = {"epoch": trainer.current_epoch + 1}
        row.update({k.replace("/", "_"): round(float(v), 6) for k, v in summary.items() if not k.startswith("filter_rms")})
        row.update({k.replace("/", "_"): round(float(v), 6) for k, v in sorted(trainer.callback_metrics.items())
                    if k.startswith("val")})
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        fields = sorted({k for r in self.rows for k in r}, key=lambda k: (k != "epoch", k))
        with atomic_path(self.history_path) as tmp, tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.rows)
        self.tracker.image("filters/conv1", filter_grid(pl_module.model.weight_layer("conv1").weight),
                           caption=f"epoch {row['epoch']}")


def fingerprint(cfg) -> str:
    keep = {k: cfg[k] for k in ("data", "model", "train", "seed") if k in cfg}
    text = OmegaConf.to_yaml(OmegaConf.create(OmegaConf.to_container(OmegaConf.create(keep), resolve=True)), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()


def train(cfg, prepared_dir: str | Path, metrics_path: str | Path, history_path: str | Path,
          job_type: str = "train", run_name: str | None = None) -> dict:
    from pytorch_lightning.loggers import CSVLogger, WandbLogger

    out_dir = Path(cfg.train.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path, history_path = Path(metrics_path), Path(history_path)
    pl.seed_everything(int(cfg.seed), workers=True)
    dm = ShardDataModule(prepared_dir, crop=cfg.data.crop, batch_size=cfg.train.batch_size, crops=cfg.data.crops,
                         pixel_scale=cfg.data.pixel_scale, num_workers=cfg.data.num_workers,
                         in_memory=cfg.data.get("in_memory", True))
    num_classes = dm.num_classes
    gpu = cfg.trainer.accelerator in ("gpu", "cuda")
    module = Classifier(OmegaConf.to_container(cfg.model, resolve=True), num_classes, crop=int(cfg.data.crop),
                        lr=cfg.train.lr, momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay,
                        lr_factor=cfg.train.lr_factor, lr_patience=cfg.train.lr_patience,
                        rms_clip=cfg.train.rms_clip, channels_last=gpu)

    fp = fingerprint(cfg)
    stamp = out_dir / "run_config.json"
    last = out_dir / "last.ckpt"
    resume = last.is_file() and stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fp
    if not resume:
        for stale in out_dir.glob("*.ckpt"):
            stale.unlink()
    write_text(stamp, json.dumps({"fingerprint": fp}))

    tracker = start_run(cfg, job_type, name=run_name)
    report = EpochReport(history_path, tracker, resume)
    logger = WandbLogger(experiment=tracker.run, log_model=False) if tracker.run else CSVLogger(str(out_dir), name="logs")
    trainer = pl.Trainer(
        max_epochs=int(cfg.train.epochs),
        accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, num_nodes=cfg.trainer.num_nodes,
        strategy=cfg.trainer.strategy, precision=cfg.trainer.precision,
        deterministic=bool(cfg.train.deterministic),
        limit_train_batches=cfg.train.limit_train_batches,
        callbacks=[EpochCheckpoints(out_dir, cfg.train.checkpoint_epochs), report],
        plugins=[AtomicCheckpointIO()], enable_checkpointing=True, logger=logger,
        default_root_dir=str(out_dir), log_every_n_steps=10, num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None, weights_only=True)
    seconds = time.perf_counter() - start

    if trainer.global_rank != 0:
        return {}
    export_model(module.model, out_dir / "model.pt", extra={"classes": num_classes})
    final = report.rows[-1]  # the last epoch's row of the history (kept across a resume)
    metrics = {
        "epochs": int(cfg.train.epochs),
        "num_classes": num_classes,
        "chance_top1_error": 1 - 1 / num_classes,
        **{k: float(final[k]) for k in ("train_top1_error", "train_top5_error", "val_top1_error", "val_top5_error",
                                        "val_10crop_top1_error", "val_10crop_top5_error")},
        "train_seconds": round(seconds, 2),
        "resumed": resume,
    }
    write_text(metrics_path, json.dumps(metrics, indent=2))
    tracker.summary(metrics)
    if cfg.wandb.get("log_checkpoints"):
        tracker.artifact(f"model-{cfg.model.name}", "model", [out_dir / "model.pt"])
    tracker.finish()
    return metrics
