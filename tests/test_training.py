"""Training: checkpoints at the configured epochs, history, and exact resume from last.ckpt."""

import csv
import json

import pytest
import torch

from test_prepare import make_imagenet, settings
from zfnet.stages.train import run as train_stage
from zfnet.data.prepare import prepare
from zfnet.models.weights import load_model


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    make_imagenet(root / "in", per_class=6, val_per_class=2, bad=False)
    prepare(settings(size=72), root / "in", root / "prepared", progress=False)
    return root / "prepared"


def configure(cfg, prepared_dir, epochs=3, out="models"):
    cfg.prepare.out_dir = str(prepared_dir)
    cfg.train.out_dir = out
    cfg.train.epochs = epochs
    cfg.train.checkpoint_epochs = [1, 3]
    cfg.train.batch_size = 6
    cfg.model.init = "kaiming"
    return cfg


class Interrupt(Exception):
    pass


def test_checkpoints_history_and_exported_model(tiny_cfg, prepared_dir, tmp_path):
    cfg = configure(tiny_cfg, prepared_dir)
    metrics = train_stage(cfg, "m.json", "h.csv")
    assert sorted(p.name for p in (tmp_path / "models").glob("*.ckpt")) == ["epoch=01.ckpt", "epoch=03.ckpt", "last.ckpt"]
    assert json.loads((tmp_path / "m.json").read_text()) == metrics
    for split in ("train", "val", "val_10crop"):  # top-5 error can never exceed top-1 error
        assert 0 <= metrics[f"{split}_top5_error"] <= metrics[f"{split}_top1_error"] <= 1, split
    rows = list(csv.DictReader((tmp_path / "h.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for r in rows:  # every column of every epoch is filled with that epoch's values
        assert all(v != "" for v in r.values()), r
    assert float(rows[-1]["val_top1_error"]) == pytest.approx(metrics["val_top1_error"], abs=1e-6)
    assert float(rows[-1]["train_top1_error"]) == pytest.approx(metrics["train_top1_error"], abs=1e-6)
    model = load_model(tmp_path / "models" / "model.pt")
    ckpt = load_model(tmp_path / "models" / "epoch=03.ckpt")
    for (k, a), (_, b) in zip(model.state_dict().items(), ckpt.state_dict().items()):
        assert torch.equal(a, b), k


def test_resume_from_last_ckpt_equals_uninterrupted(tiny_cfg, prepared_dir, tmp_path, monkeypatch):
    import zfnet.training.run as run

    code = run.code_hash()  # fixed: edits elsewhere in the tree during the test must not block the resume
    monkeypatch.setattr(run, "code_hash", lambda: code)

    cfg = configure(tiny_cfg, prepared_dir, out="whole")
    train_stage(cfg, "whole.json", "whole.csv")

    class StopAfterEpoch2(run.EpochReport):
        def on_train_epoch_end(self, trainer, pl_module):
            super().on_train_epoch_end(trainer, pl_module)
            if trainer.current_epoch == 1:
                raise Interrupt()

    cfg = configure(tiny_cfg.copy(), prepared_dir, out="resumed")
    with monkeypatch.context() as patch:
        patch.setattr(run, "EpochReport", StopAfterEpoch2)
        with pytest.raises(Interrupt):
            train_stage(cfg, "resumed.json", "resumed.csv")
    # the interrupt came after epoch 2's report, before its checkpoint: last.ckpt is epoch 1's
    assert torch.load(tmp_path / "resumed" / "last.ckpt", weights_only=True)["epoch"] == 0
    metrics = train_stage(cfg, "resumed.json", "resumed.csv")
    assert metrics["resumed"] is True
    whole = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["state_dict"]
    resumed = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)["state_dict"]
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


def test_stale_checkpoint_of_another_config_is_not_resumed(tiny_cfg, prepared_dir, tmp_path):
    cfg = configure(tiny_cfg, prepared_dir, epochs=1)
    train_stage(cfg, "a.json", "a.csv")
    cfg.train.lr = 0.02
    assert train_stage(cfg, "b.json", "b.csv")["resumed"] is False
    # the first run is kept (moved aside), not deleted: tests/test_resume.py
