"""Config values are checked first: a wrong type or range fails in well under a second, naming the key, the
value and what is allowed, before any stage reads or writes a file (zfnet.schema)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import time
import types
import typing

import pytest
from omegaconf import OmegaConf
from pydantic import BaseModel

from helpers import REPO
from zfnet.config import compose_params
from zfnet.schema import PRECISIONS, UNSET, Config, ConfigError, validate


def _with(cfg, **values):
    """A copy of ``cfg`` with dotted keys set (``train__lr=...`` for ``train.lr``)."""
    cfg = copy.deepcopy(cfg)
    for key, value in values.items():
        OmegaConf.update(cfg, key.replace("__", "."), value, merge=False)
    return cfg


def _fail_if_called(what: str):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} ran: the config was not checked first")
    return fail


# ---------------------------------------------------------------------------- what conf/ holds validates
@pytest.mark.parametrize("overrides", [["profile=demo"], ["profile=tiny"], ["profile=paper"],
                                       ["+sweep=ablation", "train.variant=zfnet_fc2048"], ["ablation=alexnet_no_7"],
                                       ["trainer=ddp_multinode", "data.crops=random", "prepare.encoding=jpg"]])
def test_every_profile_and_preset_composes_and_validates(tmp_path, overrides):
    cfg = OmegaConf.load(compose_params(tmp_path / "p.yaml", overrides=overrides))
    assert validate(cfg) is cfg


def test_params_yaml_validates_and_is_returned_unchanged():
    cfg = OmegaConf.load(REPO / "params.yaml")
    before = OmegaConf.to_yaml(cfg)
    assert validate(cfg) is cfg
    assert OmegaConf.to_yaml(cfg) == before  # no defaults added, no value converted


def test_hydra_composed_config_validates_with_its_hydra_node():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+launcher=slurm", "+sweep=ablation", "trainer=ddp"], return_hydra_config=True)
    assert validate(cfg) is cfg


def test_every_schema_key_is_in_params_yaml():
    """The schema declares no key conf/ has dropped (only the few optional ones carry their own default)."""
    plain = OmegaConf.to_container(OmegaConf.load(REPO / "params.yaml"))
    missing = []

    def walk(model, node, prefix):
        for name, info in model.model_fields.items():
            key = info.alias or name
            inner = next((a for a in typing.get_args(info.annotation) if a is not type(None)), info.annotation)
            if key not in node:
                if info.default is UNSET:
                    missing.append(prefix + key)
            elif isinstance(inner, type) and issubclass(inner, BaseModel) and isinstance(node[key], dict):
                walk(inner, node[key], prefix + key + ".")

    walk(Config, plain, "")
    assert not missing, missing


def test_precisions_are_lightnings():
    from lightning_fabric.plugins.precision.precision import (_PRECISION_INPUT_INT, _PRECISION_INPUT_STR,
                                                              _PRECISION_INPUT_STR_ALIAS)

    lightning = {a for t in (_PRECISION_INPUT_INT, _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS) for a in typing.get_args(t)}
    assert set(PRECISIONS) == lightning


# ---------------------------------------------------------------------------- the four reproductions
@pytest.mark.parametrize("key,value,expected", [
    ("train.lr", "abc", "train.lr='abc': expected a float >= 0"),  # was: TypeError inside torch's SGD, no key
    ("train.epochs", -1, "train.epochs=-1: expected an int >= 1"),  # was: Lightning trains forever
    ("train.epochs", 0, "train.epochs=0: expected an int >= 1"),  # was: IndexError
])
def test_train_stage_fails_first_with_key_value_and_range(tiny_cfg, tmp_path, monkeypatch, key, value, expected):
    from zfnet.stages.train import run

    fake = types.ModuleType("zfnet.training.run")
    fake.train = _fail_if_called("training")  # old code would train (epochs=-1: forever)
    monkeypatch.setitem(sys.modules, "zfnet.training.run", fake)
    cfg = _with(tiny_cfg, **{key.replace(".", "__"): value})
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        run(cfg)
    assert time.perf_counter() - start < 5
    assert str(err.value) == f"conf error: {expected}"
    assert list(tmp_path.iterdir()) == []  # nothing written (cwd is tmp_path; every output path is relative)


def test_prepare_stage_rejects_shard_size_zero_before_reading(tiny_cfg, tmp_path, monkeypatch):
    from zfnet.stages.prepare import run

    fake = types.ModuleType("zfnet.data.prepare")
    fake.prepare = _fail_if_called("prepare")  # old code: a bare `range() arg 3 must not be zero`
    monkeypatch.setitem(sys.modules, "zfnet.data.prepare", fake)
    with pytest.raises(ConfigError, match=r"^conf error: prepare\.shard_size=0: expected an int >= 1$"):
        run(_with(tiny_cfg, prepare__shard_size=0))
    assert list(tmp_path.iterdir()) == []


def test_entry_point_prints_one_line_and_exits_2_before_writing(tmp_path):
    args = [sys.executable, str(REPO / "pipelines" / "train.py"), "profile=tiny", f"prepare.out_dir={tmp_path / 'P'}",
            f"train.out_dir={tmp_path / 'M'}", "train.lr=abc", f"hydra.run.dir={tmp_path / 'hydra'}"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    start = time.monotonic()
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == "conf error: train.lr='abc': expected a float >= 0", proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "M").exists() and not (tmp_path / "P").exists()
    assert elapsed < 15, elapsed


# ---------------------------------------------------------------------------- what the messages say
def test_nested_key_is_named_in_full(tiny_cfg):
    with pytest.raises(ConfigError, match=r"transfer\.caltech101\.folds='x': expected an int >= 1"):
        validate(_with(tiny_cfg, transfer__caltech101__folds="x"))
    with pytest.raises(ConfigError, match=r"ablation\.zfnet_fc2048\.model\.fc_units=\[2048\]: expected null or a list of ints >= 1 \(exactly 2\)"):
        validate(_with(tiny_cfg, ablation__zfnet_fc2048__model__fc_units=[2048]))
    with pytest.raises(ConfigError, match=r"visualize\.correspondence\.repeats=0"):
        validate(_with(tiny_cfg, visualize__correspondence__repeats=0))


@pytest.mark.parametrize("key,value,expected", [
    ("prepare.encoding", "png", "expected one of ['npy', 'jpg']"),
    ("data.crops", "five", "expected one of ['ten', 'random']"),
    ("wandb.mode", "on", "expected one of ['online', 'offline', 'disabled']"),
    ("train.momentum", 1.0, "expected a float in [0, 1)"),
    ("prepare.workers", 0, "expected an int >= 1"),
    ("trainer.precision", "32-bit", "expected one of ["),
    ("trainer.devices", 0, "expected an int >= 1, -1 (all), 'auto'"),
    ("model.remove", ["conv9"], "expected a list of strings, each one of ['conv3', 'conv4', 'fc6', 'fc7']"),
    ("train.deterministic", "false", "expected a bool"),  # a string 'false' is truthy: never passed on
    ("train.lr", "0.01", "expected a float >= 0"),  # a string number: SGD would get a str
    ("train.epochs", 2.5, "expected an int >= 1"),
    ("train.rms_clip", float("nan"), "expected null or a float > 0"),
    ("data.crop", 100, "expected <= data.resize=72"),
    ("prepare.shard_index", 1, "expected < prepare.shard_count=1"),
    ("transfer.classifier.layer", "fc8", "expected one of transfer.features.layers="),
    ("train.variant", "zfnet_fc4096", "expected null or a Table 3 row"),
])
def test_ranges_choices_and_relations(tiny_cfg, key, value, expected):
    with pytest.raises(ConfigError) as err:
        validate(_with(tiny_cfg, **{key.replace(".", "__"): value}))
    assert f"{key}={value!r}: {expected}" in str(err.value)


@pytest.mark.parametrize("key,value", [("trainer.precision", 32), ("trainer.devices", "auto"), ("trainer.devices", [0, 1]),
                                       ("train.limit_train_batches", 0.25), ("train.limit_train_batches", 3),
                                       ("model.lrn", None), ("train.rms_clip", None), ("train.lr", 1),
                                       ("transfer.caltech101.test_per_class", None), ("wandb.init_timeout", 2.5),
                                       ("train.lr", 0.0)])
def test_accepted_values(tiny_cfg, key, value):
    cfg = _with(tiny_cfg, **{key.replace(".", "__"): value})
    assert validate(cfg) is cfg


def test_every_problem_in_one_error(tiny_cfg):
    with pytest.raises(ConfigError) as err:
        validate(_with(tiny_cfg, train__epochs=0, train__lr=-1.0, data__num_workers=-2))
    assert err.value.problems == ["data.num_workers=-2: expected an int >= 0", "train.epochs=0: expected an int >= 1",
                                  "train.lr=-1.0: expected a float >= 0"]
    assert isinstance(err.value, ValueError)


def test_a_typo_in_conf_is_an_unknown_key_with_a_suggestion(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    path = conf / "train" / "default.yaml"
    path.write_text(path.read_text() + "weight_decy: 0.001\n")
    cfg = OmegaConf.load(compose_params(tmp_path / "p.yaml", conf_dir=conf))
    with pytest.raises(ConfigError, match=r"train\.weight_decy: unknown key .*did you mean 'weight_decay'\?"):
        validate(cfg)


def test_optional_keys_may_be_absent_and_are_checked_when_present(tiny_cfg):
    cfg = copy.deepcopy(tiny_cfg)
    for group, key in (("wandb", "init_timeout"), ("wandb", "finish_timeout"), ("prepare", "fast_decode")):
        cfg[group].pop(key, None)
    assert validate(cfg) is cfg
    with pytest.raises(ConfigError, match=r"wandb\.init_timeout=0: expected a float > 0"):
        validate(_with(cfg, wandb__init_timeout=0))
    with pytest.raises(ConfigError, match=r"prepare\.fast_decode='yes': expected a bool"):
        validate(_with(cfg, prepare__fast_decode="yes"))


def test_interpolation_to_nowhere_and_unset_value_name_the_key(tiny_cfg):
    with pytest.raises(ConfigError, match=r"data\.batch_size: Interpolation key 'train\.batchsize' not found"):
        validate(_with(tiny_cfg, data__batch_size="${train.batchsize}"))
    with pytest.raises(ConfigError, match=r"data\.imagenet_root: no value"):
        validate(_with(tiny_cfg, data__imagenet_root="???"))
    with pytest.raises(ConfigError, match=r"train\.epochs=0\.125: expected an int >= 1"):  # checked resolved
        validate(_with(tiny_cfg, train__epochs="${table3.width}"))


def test_validation_is_fast(tiny_cfg):
    validate(tiny_cfg)
    start = time.perf_counter()
    for _ in range(5):
        validate(tiny_cfg)
    assert (time.perf_counter() - start) / 5 < 1.0
