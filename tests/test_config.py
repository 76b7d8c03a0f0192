"""conf/ is the single source; params.yaml is its composed snapshot, exactly as `dvc exp run` writes it."""

import configparser
import re

import pytest
from omegaconf import OmegaConf

from conftest import REPO
from zfnet.config import compose_params


def test_params_yaml_in_sync_with_conf(tmp_path):
    fresh = compose_params(tmp_path / "params.yaml")
    assert fresh.read_text() == (REPO / "params.yaml").read_text(), "params.yaml is stale: run `make params`"


def test_compose_is_dvcs_own(tmp_path):
    # DVC's `dvc exp run` path: dvc.repo.experiments.queue.utils -> compose_and_dump(params.yaml, conf, None, config, ...)
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(str(tmp_path / "dvc.yaml"), str(REPO / "conf"), None, "config", str(REPO), [])
    assert (tmp_path / "dvc.yaml").read_text() == (REPO / "params.yaml").read_text()


@pytest.mark.parametrize("profile", ["demo", "tiny", "paper"])
def test_profiles_compose_without_runtime_interpolations(tmp_path, profile):
    out = compose_params(tmp_path / "p.yaml", overrides=[f"profile={profile}"])
    text = out.read_text()
    assert not re.search(r"\$\{(hydra|now|oc\.env):", text)
    cfg = OmegaConf.load(out)
    assert cfg.profile == profile
    expected = {"demo": (128, 112), "tiny": (72, 64), "paper": (256, 224)}[profile]
    assert (cfg.data.resize, cfg.data.crop) == expected


def test_dvc_hydra_composition_enabled():
    parser = configparser.ConfigParser()
    parser.read(REPO / ".dvc" / "config")
    assert parser["hydra"]["enabled"] == "true"
    assert parser["hydra"]["config_dir"] == "conf" and parser["hydra"]["config_name"] == "config"


def test_conf_has_no_runtime_interpolations():
    for path in (REPO / "conf").rglob("*.yaml"):
        code = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
        assert not re.search(r"\$\{(hydra|now|oc\.env):", code), path


@pytest.mark.parametrize("preset,target", [("slurm", "SlurmLauncher"), ("local", "JoblibLauncher")])
def test_launcher_presets_compose(preset, target):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"+launcher={preset}", "+sweep=ablation", "trainer=ddp"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    assert "zfnet_fc8192" in cfg.hydra.sweeper.params["train.variant"]
    if preset == "slurm":
        assert cfg.hydra.launcher.tasks_per_node == cfg.trainer.devices == 8  # one task per GPU: no re-launch


def test_paper_profile_points_at_real_datasets_not_the_demo(tmp_path):
    """Every dataset root of the paper profile leaves the demo data (a '???' would silently keep the demo's)."""
    cfg = OmegaConf.load(compose_params(tmp_path / "p.yaml", overrides=["profile=paper"]))
    roots = [cfg.data.imagenet_root, cfg.transfer.caltech101.root, cfg.transfer.caltech256.root, cfg.transfer.voc2012.root]
    assert all(str(r).startswith("/datasets/") for r in roots), roots
    assert cfg.overlap.ground_truth is None  # no planted duplicates in real data
