"""Training never loses a result: earlier runs are moved aside (never deleted), only an interrupted run of
the same configuration *and* code is resumed (its history rides in the checkpoint), a corrupt last.ckpt
is set aside, and model.pt has the same bytes for the same weights."""

import copy
import csv
import hashlib
import json
import logging
import os
import subprocess
import sys

import pytest
import torch

from test_training import Interrupt, configure, prepared_dir  # noqa: F401  (prepared_dir: a fixture)
from zfnet.models.weights import export_model, load_model
from zfnet.stages.train import run as train_stage

pytestmark = pytest.mark.usefixtures("one_thread")

CODE_HASH = None


@pytest.fixture(autouse=True)
def stable_code_hash(monkeypatch):
    """The code part of the fingerprint, computed once: other edits to this working tree while the tests
    run must not turn a resume into a fresh run (test_code_hash_* check the real one)."""
    import zfnet.training.run as run

    global CODE_HASH
    CODE_HASH = CODE_HASH or run.code_hash()
    monkeypatch.setattr(run, "code_hash", lambda: CODE_HASH)

MEASURES = ("train_top1_error", "train_top5_error", "val_top1_error", "val_top5_error",
            "val_10crop_top1_error", "val_10crop_top5_error")


def snapshot(folder):
    """{relative path: (size, mtime_ns, sha1)} of every file under folder."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_files(folder):
    """sha1 of the run's own files directly in folder (checkpoints, model.pt, run_config.json)."""
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in folder.iterdir()
            if p.is_file() and (p.suffix == ".ckpt" or p.name in ("model.pt", "run_config.json"))}


def rows(path):
    return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(open(path, newline=""))]


def interrupted(monkeypatch, cfg, metrics, history, at_epoch):
    """Train until the report of 1-based epoch ``at_epoch`` raises (before that epoch's checkpoint)."""
    import zfnet.training.run as run

    class Stop(run.EpochReport):
        def on_train_epoch_end(self, trainer, pl_module):
            super().on_train_epoch_end(trainer, pl_module)
            if trainer.current_epoch + 1 == at_epoch:
                raise Interrupt()

    with monkeypatch.context() as patch:
        patch.setattr(run, "EpochReport", Stop)
        with pytest.raises(Interrupt):
            train_stage(cfg, metrics, history)


@pytest.fixture(scope="module")
def reference(_tiny_cfg_session, prepared_dir, tmp_path_factory):  # noqa: F811
    """One uninterrupted 3-epoch run: its weights, history rows and metrics."""
    import zfnet.training.run as run

    global CODE_HASH
    CODE_HASH = CODE_HASH or run.code_hash()
    root = tmp_path_factory.mktemp("reference")
    cfg = configure(copy.deepcopy(_tiny_cfg_session), prepared_dir, out=str(root / "models"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run, "code_hash", lambda: CODE_HASH)
        patch.chdir(root)
        patch.setenv("WANDB_DIR", str(root))
        metrics = train_stage(cfg, str(root / "m.json"), str(root / "h.csv"))
    return {"weights": torch.load(root / "models" / "model.pt", weights_only=True)["state_dict"],
            "model_bytes": (root / "models" / "model.pt").read_bytes(),
            "rows": rows(root / "h.csv"), "metrics": metrics}


def assert_same_as_reference(reference, models, metrics, history):
    weights = torch.load(models / "model.pt", weights_only=True)["state_dict"]
    assert weights.keys() == reference["weights"].keys()
    for key in weights:
        assert torch.equal(weights[key], reference["weights"][key]), key
    assert (models / "model.pt").read_bytes() == reference["model_bytes"]  # same weights, same bytes
    assert rows(history) == reference["rows"]
    assert {k: metrics[k] for k in MEASURES} == {k: reference["metrics"][k] for k in MEASURES}


def test_another_config_moves_the_earlier_run_aside(tiny_cfg, prepared_dir, tmp_path, caplog):  # noqa: F811
    cfg = configure(tiny_cfg, prepared_dir, epochs=1, out="M")
    train_stage(cfg, "a.json", "a.csv")
    first = run_files(tmp_path / "M")
    assert {"epoch=01.ckpt", "last.ckpt", "model.pt", "run_config.json"} <= first.keys()
    old_fp = json.loads((tmp_path / "M" / "run_config.json").read_text())["fingerprint"]

    cfg.train.lr = 0.02
    with caplog.at_level(logging.INFO, logger="zfnet.training.run"):
        assert train_stage(cfg, "b.json", "b.csv")["resumed"] is False
    aside = list((tmp_path / "M" / "previous").iterdir())
    assert len(aside) == 1 and aside[0].name.startswith(old_fp[:12] + "-"), aside
    assert run_files(aside[0]) == first  # every file of the first run, byte for byte
    assert f"M/previous/{aside[0].name}" in caplog.text  # says where
    assert json.loads((tmp_path / "M" / "run_config.json").read_text())["fingerprint"] != old_fp


@pytest.mark.parametrize("key,value", [("lr", "abc"), ("epochs", 0), ("batch_size", "x"), ("checkpoint_epochs", [1, "two"])])
@pytest.mark.parametrize("entry", ["stage", "library"])
def test_invalid_value_fails_before_out_dir_changes(tiny_cfg, prepared_dir, tmp_path, key, value, entry):  # noqa: F811
    """Through the stage (config schema) and straight through zfnet.training.run.train (its own checks)."""
    from zfnet.training.run import train

    cfg = configure(tiny_cfg, prepared_dir, epochs=1, out="M")
    train_stage(cfg, "a.json", "a.csv")
    before = snapshot(tmp_path / "M")
    cfg.train[key] = value
    with pytest.raises(ValueError, match=f"train.{key}"):
        if entry == "stage":
            train_stage(cfg, "b.json", "b.csv")
        else:
            train(cfg, cfg.prepare.out_dir, "b.json", "b.csv")
    assert snapshot(tmp_path / "M") == before


def test_no_epoch_run_fails_clearly(tiny_cfg, prepared_dir, tmp_path, monkeypatch):  # noqa: F811
    import zfnet.training.run as run
    from zfnet.training.run import train

    cfg = configure(tiny_cfg, prepared_dir, epochs=1, out="M")
    cfg.train.limit_train_batches = 0  # Lightning skips training altogether (the schema refuses it: bypassed)
    monkeypatch.setattr(run, "validate", lambda cfg: cfg)
    with pytest.raises(RuntimeError, match="train.epochs"):
        train(cfg, cfg.prepare.out_dir, "a.json", "a.csv")
    assert not (tmp_path / "a.json").exists()


def test_finished_run_without_metrics_trains_afresh(tiny_cfg, prepared_dir, tmp_path, reference):  # noqa: F811
    """`dvc repro -f train`: DVC deletes the metrics and history, the finished last.ckpt stays."""
    cfg = configure(tiny_cfg, prepared_dir, out="M")
    train_stage(cfg, "m.json", "h.csv")
    first = run_files(tmp_path / "M")
    (tmp_path / "m.json").unlink()
    (tmp_path / "h.csv").unlink()
    metrics = train_stage(cfg, "m.json", "h.csv")
    assert metrics["resumed"] is False
    # the file holds what the run measured; whether it was resumed goes to W&B and the log (same bytes either way)
    assert json.loads((tmp_path / "m.json").read_text()) == {k: v for k, v in metrics.items() if k != "resumed"}
    assert_same_as_reference(reference, tmp_path / "M", metrics, tmp_path / "h.csv")
    [aside] = (tmp_path / "M" / "previous").iterdir()
    assert run_files(aside) == first
    assert run_files(tmp_path / "M") == first  # same configuration and code: the same bytes, checkpoints too
    stamp = json.loads((tmp_path / "M" / "run_config.json").read_text())
    assert stamp.keys() == {"fingerprint", "config_hash", "code_hash", "epochs_done"} and stamp["epochs_done"] == 3


def test_interrupted_run_resumes_without_its_history_csv(tiny_cfg, prepared_dir, tmp_path, reference, monkeypatch):  # noqa: F811
    cfg = configure(tiny_cfg, prepared_dir, out="M")
    interrupted(monkeypatch, cfg, "m.json", "h.csv", at_epoch=2)
    assert json.loads((tmp_path / "M" / "run_config.json").read_text())["epochs_done"] == 1
    (tmp_path / "h.csv").unlink()  # DVC deletes non-persisted outputs before it reruns the stage
    metrics = train_stage(cfg, "m.json", "h.csv")
    assert metrics["resumed"] is True
    assert_same_as_reference(reference, tmp_path / "M", metrics, tmp_path / "h.csv")
    assert not (tmp_path / "M" / "previous").exists()


def test_corrupt_last_ckpt_trains_afresh_and_keeps_the_epoch_ckpts(tiny_cfg, prepared_dir, tmp_path, reference,  # noqa: F811
                                                                   monkeypatch, caplog):
    """epoch=NN.ckpt hold weights only (no momentum, no loop or RNG state): not a resume point."""
    cfg = configure(tiny_cfg, prepared_dir, out="M")
    interrupted(monkeypatch, cfg, "m.json", "h.csv", at_epoch=3)  # last.ckpt: epoch 2; epoch=01.ckpt
    last, epoch1 = tmp_path / "M" / "last.ckpt", (tmp_path / "M" / "epoch=01.ckpt").read_bytes()
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="zfnet.training.run"):
        metrics = train_stage(cfg, "m.json", "h.csv")
    assert metrics["resumed"] is False
    [corrupt] = (tmp_path / "M").glob("last.ckpt.corrupt-*")
    assert corrupt.read_bytes() == data[: len(data) // 2]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("M/last.ckpt:" in w and "not a readable checkpoint" in w and f"M/{corrupt.name}" in w
               for w in warnings), warnings
    [aside] = (tmp_path / "M" / "previous").iterdir()  # the earlier run's weights, kept
    assert (aside / "epoch=01.ckpt").read_bytes() == epoch1
    assert_same_as_reference(reference, tmp_path / "M", metrics, tmp_path / "h.csv")


def test_corrupt_checkpoints_without_a_readable_one_train_afresh(tiny_cfg, prepared_dir, tmp_path, caplog):  # noqa: F811
    cfg = configure(tiny_cfg, prepared_dir, epochs=2, out="M")
    cfg.train.checkpoint_epochs = [1]
    with pytest.MonkeyPatch.context() as patch:
        interrupted(patch, cfg, "m.json", "h.csv", at_epoch=2)
    for name in ("last.ckpt", "epoch=01.ckpt"):
        (tmp_path / "M" / name).write_bytes(b"not a zip archive")
    with caplog.at_level(logging.WARNING, logger="zfnet.training.run"):
        assert train_stage(cfg, "m.json", "h.csv")["resumed"] is False
    [aside] = (tmp_path / "M").glob("last.ckpt.corrupt-*")
    assert aside.read_bytes() == b"not a zip archive"
    assert any("M/last.ckpt:" in r.getMessage() for r in caplog.records)
    [previous] = (tmp_path / "M" / "previous").iterdir()  # moved aside with the rest of the run, unread
    assert (previous / "epoch=01.ckpt").read_bytes() == b"not a zip archive"
    assert [int(r["epoch"]) for r in rows(tmp_path / "h.csv")] == [1, 2]


def test_evolution_checkpoints_hold_the_weights_of_their_epoch_only(tiny_cfg, prepared_dir, tmp_path,  # noqa: F811
                                                                    monkeypatch):
    """epoch=NN.ckpt: that epoch's weights (equal to the full last.ckpt Lightning wrote at the same epoch, and
    to model.pt at the last), the run's fingerprint, no optimizer or loop state; every analysis reads it."""
    from zfnet.claims.collect import _checkpoint_weights, layer_weights
    from zfnet.training.checkpoints import RUN_KEY
    from zfnet.stages.visualize.deconv import checkpoints_by_epoch

    cfg = configure(tiny_cfg, prepared_dir, out="M")
    interrupted(monkeypatch, cfg, "m.json", "h.csv", at_epoch=2)  # last.ckpt: the full state after epoch 1
    full = torch.load(tmp_path / "M" / "last.ckpt", weights_only=True)
    epoch1 = torch.load(tmp_path / "M" / "epoch=01.ckpt", weights_only=True)
    assert {"optimizer_states", "lr_schedulers", "callbacks", "loops"} <= full.keys()
    assert not {"optimizer_states", "lr_schedulers", "callbacks", "loops", "rng_state"} & epoch1.keys()
    assert epoch1[RUN_KEY] == full[RUN_KEY] and epoch1[RUN_KEY]["epochs_done"] == 1
    assert epoch1["state_dict"].keys() == full["state_dict"].keys()
    for key, value in full["state_dict"].items():
        assert torch.equal(epoch1["state_dict"][key], value), key
    assert (tmp_path / "M" / "epoch=01.ckpt").stat().st_size < 0.6 * (tmp_path / "M" / "last.ckpt").stat().st_size

    train_stage(cfg, "m.json", "h.csv")  # resumed from last.ckpt to the end
    final = torch.load(tmp_path / "M" / "model.pt", weights_only=True)["state_dict"]
    expected = {1: {k.removeprefix("model."): v for k, v in full["state_dict"].items() if k.startswith("model.")},
                3: final}
    by_label = checkpoints_by_epoch(tmp_path / "M")  # visualize: Fig. 4's evolution
    claims = _checkpoint_weights(tmp_path / "M")  # claims: the evolution findings
    assert list(by_label) == ["epoch 1", "epoch 3"] and sorted(claims) == [1, 3]
    for epoch, weights in expected.items():
        loaded = load_model(tmp_path / "M" / f"epoch={epoch:02d}.ckpt")  # zfnet.models.weights / notebooks
        for model in (loaded, by_label[f"epoch {epoch}"]):
            assert model.state_dict().keys() == weights.keys()
            for key, value in model.state_dict().items():
                assert torch.equal(value, weights[key]), (epoch, key)
        reference_layers = layer_weights(loaded)
        assert claims[epoch].keys() == reference_layers.keys() and len(claims[epoch]) >= 5
        for layer, value in claims[epoch].items():
            assert torch.equal(value, reference_layers[layer]), (epoch, layer)


def test_changed_code_is_not_resumed(tiny_cfg, prepared_dir, tmp_path, monkeypatch):  # noqa: F811
    import zfnet.training.run as run

    cfg = configure(tiny_cfg, prepared_dir, out="M")
    interrupted(monkeypatch, cfg, "m.json", "h.csv", at_epoch=2)
    first = run_files(tmp_path / "M")
    old = json.loads((tmp_path / "M" / "run_config.json").read_text())
    monkeypatch.setattr(run, "code_hash", lambda: "0" * 40)
    assert train_stage(cfg, "m.json", "h.csv")["resumed"] is False
    new = json.loads((tmp_path / "M" / "run_config.json").read_text())
    assert new["config_hash"] == old["config_hash"] and new["code_hash"] == "0" * 40
    assert new["fingerprint"] != old["fingerprint"]
    [aside] = (tmp_path / "M" / "previous").iterdir()
    assert run_files(aside) == first


def test_code_hash_covers_the_train_stage_closure(monkeypatch):
    from zfnet.closure import PACKAGE_DIR, import_closure, source_digest
    from zfnet.training.run import TRAIN_STAGE

    monkeypatch.undo()  # the real code_hash
    from zfnet.training.run import code_hash

    closure = import_closure(TRAIN_STAGE)
    for module in ("stages/train.py", "training/run.py", "training/lightning_module.py", "models/zfnet.py",
                   "data/datamodule.py"):
        assert PACKAGE_DIR / module in closure, module
    assert code_hash() == source_digest(closure)


EXPORT = """
import sys, torch
from zfnet.models import build
from zfnet.models.weights import export_model
torch.manual_seed(0)
export_model(build("zfnet", num_classes=5, input_size=64, width=0.125), sys.argv[1], extra={"classes": 5})
"""


def test_model_pt_has_the_same_bytes_for_the_same_weights(tmp_path):
    paths = []
    for seed, name in (("1", "a"), ("2", "bb")):  # two processes (pids differ), two folders
        (tmp_path / name).mkdir()
        paths.append(tmp_path / name / "model.pt")
        subprocess.run([sys.executable, "-c", EXPORT, str(paths[-1])], check=True, cwd=tmp_path / name,
                       env={**os.environ, "PYTHONHASHSEED": seed})
    assert paths[0].read_bytes() == paths[1].read_bytes()
    from zfnet.models import build

    torch.manual_seed(0)
    original = build("zfnet", num_classes=5, input_size=64, width=0.125)
    export_model(original, tmp_path / "here.pt", extra={"classes": 5})
    assert (tmp_path / "here.pt").read_bytes() == paths[0].read_bytes()
    loaded = load_model(paths[0])
    assert loaded.state_dict().keys() == original.state_dict().keys()
    for key, value in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.load(paths[0], weights_only=True)["classes"] == 5


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_load_model_names_an_unreadable_file(tmp_path, damage):
    from zfnet.models import build

    path = tmp_path / "model.pt"
    export_model(build("zfnet", num_classes=5, input_size=64, width=0.125), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"\x80\x04garbage" * 10)
    with pytest.raises(ValueError, match="not a readable checkpoint") as info:
        load_model(path)
    message = str(info.value)
    assert str(path) in message and "re-run the train stage" in message
    assert "weights_only=False" not in message


def test_unprepared_data_fails_before_out_dir_changes(tiny_cfg, prepared_dir, tmp_path):  # noqa: F811
    import shutil

    cfg = configure(tiny_cfg, prepared_dir, epochs=1, out="M")
    train_stage(cfg, "a.json", "a.csv")
    before = snapshot(tmp_path / "M")
    shutil.copytree(prepared_dir, tmp_path / "P")
    (tmp_path / "P" / "mean.npy").unlink()  # read by the data module's setup, inside fit
    cfg.prepare.out_dir = str(tmp_path / "P")
    cfg.train.lr = 0.02
    with pytest.raises(FileNotFoundError, match="mean.npy"):
        train_stage(cfg, "b.json", "b.csv")
    assert snapshot(tmp_path / "M") == before
