"""A paper run reads only real data, and the report says what its numbers are.

- ``profile=paper`` composed into params.yaml and dvc.yaml resolved under it (DVC's own stage loading): no
  stage's command, dependency or output lies under the demo generator's folder (``data/demo``), except the
  demo_data stage's own output, where it then writes only a note;
- the paper profile agrees with the paper's setting (``zfnet.paper.SETTING``, from docs/paper.md §3), and a run of it
  on a full ImageNet has no departure; a reduced run lists each departure (epochs, classes, images, width, rows).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from helpers import REPO
from zfnet import paper
from zfnet.config import compose_params
from zfnet.reduced_run import datasets, departures

DEMO = "data/demo"


@pytest.fixture(scope="module")
def paper_repo(tmp_path_factory):
    """A copy of the repository's pipeline (dvc.yaml, conf/, .dvc/) with params.yaml composed for profile=paper."""
    root = tmp_path_factory.mktemp("paper")
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "conf", root / "conf")
    shutil.copytree(REPO / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    compose_params(root / "params.yaml", conf_dir=root / "conf", overrides=["profile=paper"])
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def _stages(root: Path):
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo(str(root)) as repo:
        return list(repo.index.stages)


def _under_demo(path: str) -> bool:
    p = str(path).replace("\\", "/")
    return p == DEMO or p.startswith(DEMO + "/") or f"/{DEMO}/" in p or p.endswith(f"/{DEMO}")


def test_paper_profile_references_nothing_under_data_demo(paper_repo):
    stages = _stages(paper_repo)
    assert len(stages) > 10
    offending = []
    for stage in stages:
        if stage.name == "demo_data":  # its own output folder (and its code, src/zfnet/data/demo)
            continue
        for d in stage.deps:
            if hasattr(d, "def_path") and _under_demo(d.def_path):
                offending.append(f"{stage.addressing}: dep {d.def_path}")
        for o in stage.outs:
            if _under_demo(o.def_path):
                offending.append(f"{stage.addressing}: out {o.def_path}")
        if DEMO in stage.cmd:
            offending.append(f"{stage.addressing}: cmd {stage.cmd}")
    assert not offending, "\n".join(offending)
    assert {s.name for s in stages} >= {"train", "visualize_deconv", "visualize_occlusion", "dissect", "report", "transfer", "demo_data"}
    params = yaml.safe_load((paper_repo / "params.yaml").read_text())
    text = json.dumps(params)
    assert DEMO not in text.replace(f'"out_dir": "{DEMO}"', ""), "params.yaml of profile=paper names data/demo"


def test_demo_generator_writes_only_a_note_on_real_data(paper_repo, tmp_path):
    from zfnet.stages.demo_data import NOT_GENERATED, run

    cfg = OmegaConf.load(paper_repo / "params.yaml")
    cfg.demo_data.out_dir = str(tmp_path / "demo")
    assert run(cfg) == {}
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [NOT_GENERATED]
    note = (tmp_path / "demo" / NOT_GENERATED).read_text()
    assert "/datasets/ILSVRC2012" in note and "data.imagenet_root" in note


def test_paper_profile_is_the_papers_setting(paper_repo, tmp_path):
    cfg = OmegaConf.load(paper_repo / "params.yaml")
    for key, (value, _) in paper.SETTING.items():
        assert OmegaConf.select(cfg, key) == value, key
    assert sorted(cfg.ablation) == sorted(paper.TABLE3_ROWS)
    assert not any(d["synthetic"] for d in datasets(cfg))
    # a full ImageNet prepared (the retrained model leaves out a few thousand Caltech copies): no departure
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "classes.json").write_text(json.dumps({"wnids": [f"n{i:08d}" for i in range(1000)]}))
    (prepared / "stats.json").write_text(json.dumps({"train": {"written": 1_281_167 - 3_000}, "val": {"written": 50_000}}))
    assert departures(cfg, prepared) == []


def test_a_reduced_run_lists_every_departure(paper_repo, tmp_path):
    cfg = OmegaConf.load(paper_repo / "params.yaml")
    cfg.train.epochs, cfg.model.width = 1, 0.25
    cfg.ablation = {k: cfg.ablation[k] for k in ("alexnet", "zfnet")}
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "classes.json").write_text(json.dumps({"wnids": [f"n{i:08d}" for i in range(10)]}))
    (prepared / "stats.json").write_text(json.dumps({"train": {"written": 5000}, "val": {"written": 500}}))
    found = {d["key"]: d for d in departures(cfg, prepared)}
    assert found["train.epochs"]["ours"] == 1 and found["train.epochs"]["paper"] == 70
    assert found["model.width"]["ours"] == 0.25
    assert found["ablation"]["what"] == "Table 3 rows: 2 of 12"
    whats = [d["what"] for d in departures(cfg, prepared)]
    assert "ImageNet classes" in whats and "ImageNet training images" in whats and "ImageNet validation images" in whats
    assert not any("synthetic" in w for w in whats)


def test_demo_profile_is_flagged_synthetic():
    cfg = OmegaConf.load(REPO / "params.yaml")
    synthetic = {d["key"] for d in datasets(cfg) if d["synthetic"]}
    assert {"data.imagenet_root", "transfer.caltech101.root", "dissect.probe_dir", "visualize.ground_truth"} <= synthetic
    whats = [d["what"] for d in departures(cfg, "/nonexistent")]
    assert "ImageNet 2012: synthetic demo data" in whats and "training epochs" in whats
