"""Bytes per training run on disk: the paper profile's full-width zfnet (1000 classes, 224 crop).

One SGD step (so the momentum buffers exist) under Lightning with the train stage's own callback and
checkpoint IO (``EpochCheckpoints`` + ``AtomicCheckpointIO``), then ``export_model``: the sizes of one
``epoch=NN.ckpt``, ``last.ckpt`` and ``model.pt``, times how many a run keeps (``train.checkpoint_epochs``
of the paper profile, one each of the others). "full" is what an evolution checkpoint weighed when it was a
full Lightning checkpoint: the size of ``last.ckpt`` (the same state). Writes results/checkpoint_bytes.json.

    PYTHONPATH=src python benchmarks/bench_checkpoint_bytes.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from zfnet.models.weights import export_model
from zfnet.training.checkpoints import AtomicCheckpointIO, EpochCheckpoints
from zfnet.training.lightning_module import Classifier

ROOT = Path(__file__).resolve().parent.parent


def main() -> dict:
    paper = OmegaConf.load(ROOT / "conf/profile/paper.yaml")
    model_cfg = {**OmegaConf.to_container(OmegaConf.load(ROOT / "conf/model/zfnet.yaml")), "width": paper.model.width}
    evolution = len(paper.train.checkpoint_epochs)
    module = Classifier(model_cfg, 1000, crop=int(paper.data.crop))
    train = torch.utils.data.TensorDataset(torch.randn(2, 3, 224, 224), torch.tensor([0, 1]))
    val = torch.utils.data.TensorDataset(torch.randn(1, 3, 256, 256), torch.tensor([0]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        trainer = pl.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, accelerator="cpu", logger=False,
                             enable_progress_bar=False, num_sanity_val_steps=0, enable_checkpointing=True,
                             callbacks=[EpochCheckpoints(out, [1], run={"fingerprint": "0" * 40})],
                             plugins=[AtomicCheckpointIO()])
        trainer.fit(module, torch.utils.data.DataLoader(train, batch_size=2), torch.utils.data.DataLoader(val, batch_size=1))
        export_model(module.model, out / "model.pt", extra={"classes": 1000})
        size = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
    weights, full, model = size["epoch=01.ckpt"], size["last.ckpt"], size["model.pt"]
    result = {
        "measured": "one checkpoint of each kind, full-width zfnet, 1000 classes, 224 crop; bytes per run = "
                    f"{evolution} evolution checkpoints + last.ckpt + model.pt",
        "bytes": {"epoch_ckpt_weights_only": weights, "epoch_ckpt_full_before": full, "last_ckpt": full, "model_pt": model},
        "evolution_checkpoints": evolution,
        "per_run_before": evolution * full + full + model,
        "per_run_after": evolution * weights + full + model,
        "per_run_with_dvc_copy_before": 2 * (evolution * full + full + model),
        "per_run_with_dvc_links_after": evolution * weights + full + model,
    }
    (ROOT / "benchmarks/results/checkpoint_bytes.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
