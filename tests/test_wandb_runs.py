"""The W&B dashboard as a reader finds it, read back from what the SDK wrote (offline transaction logs and
media files): runs named after what they are, groups that mean something (DVC experiment, Hydra sweep, git
revision + params hash), tags, artifact lineage, every figure of the report in the summary run, one run
per job under a multi-process launcher, and a console without W&B's chatter."""

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from helpers import REPO, offline_records
from zfnet import tracking
from zfnet.tracking import start_run


def offline_runs(root: Path) -> list[dict]:
    """Every offline run under ``root/wandb``: its folder, ``run`` record, history, summary and artifacts."""
    runs = []
    for log in sorted((root / "wandb").glob("offline-run-*/run-*.wandb")):
        records = offline_records(log)
        kinds = {}
        for r in records:
            kinds.setdefault(r.WhichOneof("record_type"), []).append(r)
        run = kinds["run"][0].run
        history = {".".join(item.nested_key) or item.key: json.loads(item.value_json)  # media: "<key>.path" ...
                   for r in kinds.get("history", []) for item in r.history.item}
        summary = {u.key: json.loads(u.value_json) for r in kinds.get("summary", []) for u in r.summary.update if u.key}
        runs.append({"dir": log.parent, "run": run, "name": run.display_name, "history": history, "summary": summary,
                     "config": {u.key: json.loads(u.value_json) for u in run.config.update},
                     "artifacts": [r.artifact for r in kinds.get("artifact", [])]})
    return runs


def md5_b64(path: Path) -> str:
    """The digest W&B's manifests give a file (base64 of its MD5)."""
    return base64.b64encode(hashlib.md5(Path(path).read_bytes()).digest()).decode()


def git_rev(cwd: Path) -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.strip()


def pixels(path: Path) -> bytes:
    image = np.asarray(Image.open(path).convert("RGB"))
    return hashlib.sha1(image.tobytes() + str(image.shape).encode()).digest()


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.src = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.src.append(dict(attrs)["src"])


def report_images(index: Path) -> set[Path]:
    """Every image the HTML report shows: the <img> of its index and of every page it has."""
    found = set()
    for page in [index, *sorted((index.parent / "pages").glob("*.html"))]:
        parser = Images()
        parser.feed(page.read_text())
        found |= {(page.parent / unquote(urlsplit(s).path)).resolve() for s in parser.src}
    return found


# --- names and groups --------------------------------------------------------------------------------
def test_runs_are_named_after_what_they_are(tiny_cfg):
    assert tracking.run_name(tiny_cfg, "train") == "train"
    assert tracking.run_name(tiny_cfg, "summary", name="summary") == "summary"
    assert tracking.run_name(tiny_cfg, "ablation", name="zfnet_fc8192") == "ablate/zfnet_fc8192"
    assert tracking.run_name(tiny_cfg, "finetune", name="finetune/last") == "finetune/last"  # already qualified
    tiny_cfg.train.variant = "alexnet_fc2048"
    assert tracking.run_name(tiny_cfg, "ablation") == "ablate/alexnet_fc2048"
    tiny_cfg.wandb.name = "mine"
    assert tracking.run_name(tiny_cfg, "ablation", name="zfnet_fc8192") == "mine"  # wandb.name overrides


_HYDRA_STAGE = """
import json, hydra
from zfnet.tracking import group_name, run_name

@hydra.main(version_base="1.3", config_path={conf!r}, config_name="config")
def main(cfg):
    print("RESULT", json.dumps({{"group": group_name(cfg), "name": run_name(cfg, "train")}}), flush=True)

main()
"""


def _hydra_stage(tmp_path, *args):
    script = tmp_path / "stage.py"
    script.write_text(_HYDRA_STAGE.format(conf=str(REPO / "conf")))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "ZFNET_WANDB"))}
    proc = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, env=clean,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]


def test_groups_name_the_sweep_the_experiment_or_the_revision_and_params(tiny_cfg, tmp_path, monkeypatch):
    # a Hydra multirun (its jobs, run by Hydra's own launcher): one group, the sweep's folder; names by job
    jobs = _hydra_stage(tmp_path, "-m", "profile=tiny", "model.width=0.25,0.5", "hydra.sweep.dir=multirun/day/time")
    assert [j["group"] for j in jobs] == ["sweep-multirun_day_time"] * 2
    assert sorted(j["name"] for j in jobs) == ["train/profile=tiny,model.width=0.25", "train/profile=tiny,model.width=0.5"]
    # a run by hand: its own group, the composed config's (test_tracking: shared by stages, changes with params)
    (one,) = _hydra_stage(tmp_path, "profile=tiny", "model.width=0.25", "hydra.run.dir=out")
    assert one["group"].startswith("adhoc-tiny-nogit-") and one["name"] == "train"

    # a `dvc repro` stage: git revision + hash of params.yaml, whatever the stage pins on its command line
    OmegaConf.save(tiny_cfg, tmp_path / "params.yaml")
    for args in (["init", "-q"], ["add", "params.yaml"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "p"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True)
    monkeypatch.setenv("DVC_STAGE", "train")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    expected = f"tiny-{git_rev(tmp_path)}-{hashlib.sha1((tmp_path / 'params.yaml').read_bytes()).hexdigest()[:8]}"
    pinned = tiny_cfg.copy()
    pinned.train.out_dir = "models/elsewhere"
    assert tracking.group_name(tiny_cfg) == tracking.group_name(pinned) == expected
    # under `dvc exp run` (DVC sets DVC_EXP_NAME for every stage): the experiment's name
    monkeypatch.setenv("DVC_EXP_NAME", "funny-dado")
    assert tracking.group_name(tiny_cfg) == "funny-dado"
    tiny_cfg.wandb.group = "chosen"
    assert tracking.group_name(tiny_cfg) == "chosen"


# --- one run per job, quiet --------------------------------------------------------------------------
_RANKED_STAGE = """
import os, sys
from omegaconf import OmegaConf
from zfnet.tracking import start_run

tracker = start_run(OmegaConf.load(sys.argv[1]), "train")
tracker.log({"rank": int(os.environ.get("RANK", "0"))})
tracker.finish()
"""


def test_only_rank_zero_of_a_torchrun_job_opens_a_run(tiny_cfg, tmp_path):
    OmegaConf.save(tiny_cfg, tmp_path / "cfg.yaml")
    (tmp_path / "stage.py").write_text(_RANKED_STAGE)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}
    proc = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--nproc-per-node=2", "--nnodes=1",
                           "stage.py", "cfg.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = offline_runs(tmp_path)
    assert run["history"]["rank"] == 0 and run["name"] == "train"


@pytest.mark.parametrize("variable", ["RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"])
def test_other_ranks_get_a_no_op_tracker(tiny_cfg, tmp_path, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    with start_run(tiny_cfg, "train") as tracker:
        assert tracker.run is None
        tracker.log({"x": 1})
        tracker.artifact("a", "model", [tmp_path])
    assert not (tmp_path / "wandb").exists()


_QUIET_STAGE = """
import logging, sys
from omegaconf import OmegaConf
from zfnet.tracking import start_run

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
cfg = OmegaConf.load(sys.argv[1])
with start_run(cfg, "train") as tracker:
    for step in range(3):
        tracker.log({"loss": 1.0 / (step + 1)})
    tracker.summary({"val_top1_error": 0.5})
"""


def test_console_holds_one_line_per_run_saying_how_to_sync_it(tiny_cfg, tmp_path):
    (tmp_path / "stage.py").write_text(_QUIET_STAGE)
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_SILENT", "WANDB_QUIET")}
    env.update(WANDB_MODE="offline", WANDB_DIR=str(tmp_path))
    outputs = {}
    for quiet in (True, False):
        tiny_cfg.wandb.quiet = quiet
        OmegaConf.save(tiny_cfg, tmp_path / "cfg.yaml")
        proc = subprocess.run([sys.executable, "stage.py", "cfg.yaml"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outputs[quiet] = (proc.stdout + proc.stderr).splitlines()
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert not [line for line in outputs[True] if line.startswith("wandb:")], outputs[True]
    assert [line for line in outputs[True] if "wandb sync" in line] == [
        f"W&B run 'train' (group '{tracking.group_name(tiny_cfg)}') saved offline; upload it with: wandb sync {runs[0]}"]
    assert len([line for line in outputs[False] if line.startswith("wandb:")]) >= 5  # W&B's own, when asked for


# --- the tiny pipeline's runs ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline_runs(tiny_pipeline):
    return tiny_pipeline.work, offline_runs(tiny_pipeline.work), tiny_pipeline.first


def test_pipeline_runs_have_names_one_group_tags_and_resolved_config(pipeline_runs):
    import yaml

    work, runs, console = pipeline_runs
    params = yaml.safe_load((work / "params.yaml").read_text())
    names = [r["name"] for r in runs]
    assert len(names) == len(set(names)), names
    expected = {"demo_data", "overlap", "prepare", "train", "zfnet_noclip", "table3", "transfer", "claims",
                "summary"} | {f"ablate/{row}" for row in params["ablation"]} | {
                f"visualize/{part}" for part in ("deconv", "synthesis", "occlusion", "invariance", "correspondence", "fig6")}
    assert expected <= set(names), expected - set(names)
    for r in runs:  # stages added later: named after their job type, never W&B's random names
        job = r["run"].job_type
        assert r["name"] in expected or r["name"] == job or r["name"].startswith(f"{job}/"), r["name"]

    rev = git_rev(work)
    group = f"tiny-{rev}-{hashlib.sha1((work / 'params.yaml').read_bytes()).hexdigest()[:8]}"
    assert {r["run"].run_group for r in runs} == {group}
    assert f"W&amp;B group</th><td>{group}<" in (work / "reports/index.html").read_text()  # the report names it

    for r in runs:
        config, tags = r["config"], set(r["run"].tags)
        stage = config["provenance"]["dvc_stage"]
        assert tags >= {"profile:tiny", f"model:{config['model']['name']}", f"stage:{stage}"}, (r["name"], tags)
        assert config["provenance"]["git_revision"] == rev
        assert "${" not in json.dumps(config)  # resolved
        if r["run"].job_type == "ablation":
            row = stage.split("@", 1)[1]
            assert r["name"] == f"ablate/{row}" and f"variant:{row}" in tags
            assert config["model"]["name"] == params["ablation"][row]["base"]

    # the console: no W&B chatter, one line per run naming it and how to upload it
    assert not [line for line in console.splitlines() if line.startswith("wandb:")]
    assert len([line for line in console.splitlines() if line.startswith("W&B run '")]) == len(runs)


def test_pipeline_artifacts_link_prepare_to_every_training_run(pipeline_runs):
    work, runs, _ = pipeline_runs
    mean = md5_b64(work / "data/prepared/mean.npy")

    def files(art):
        return {e.path: e.digest for e in art.manifest.contents}

    (prepare,) = [r for r in runs if r["name"] == "prepare"]
    (logged,) = [a for a in prepare["artifacts"] if a.name == "mean-image-tiny"]
    assert not logged.use_after_commit and files(logged)["mean.npy"] == mean
    training = [r for r in runs if r["run"].job_type in ("train", "ablation")]
    assert len(training) == 14  # train, train_noclip, 12 Table 3 rows
    for r in training:
        (used,) = [a for a in r["artifacts"] if a.name == "mean-image-tiny"]
        assert used.use_after_commit and used.digest == logged.digest, r["name"]  # an input, the same version
        (model,) = [a for a in r["artifacts"] if a.type == "model"]
        out_dir = Path(r["config"]["train"]["out_dir"])
        assert files(model) == {"model.pt": md5_b64(work / out_dir / "model.pt")}, r["name"]
        assert not model.use_after_commit
    assert {a.name for r in training for a in r["artifacts"] if a.type == "model"} >= {
        "model-zfnet", "model-zfnet_noclip", "model-ablate-zfnet_fc8192"}


def test_summary_run_holds_every_report_figure_table_and_links_back(pipeline_runs):
    work, runs, _ = pipeline_runs
    (summary,) = [r for r in runs if r["run"].job_type == "summary"]
    history = summary["history"]
    logged = {pixels(summary["dir"] / "files" / history[k[: -len("._type")] + ".path"]) for k, v in history.items()
              if k.startswith("figures/") and k.endswith("._type") and v == "image-file"}
    shown = report_images(work / "reports/index.html")
    raster = sorted(p for p in shown if p.suffix.lower() != ".svg")
    assert max(Counter(p.parent for p in raster).values()) > 4  # every figure of a group, not the first 4
    missing = [str(p.relative_to(work.resolve())) for p in raster if pixels(p) not in logged]
    assert not missing, missing

    for stem in ("table1_correspondence", "table2_imagenet", "table3_ablation", "table4_caltech101",
                 "table5_caltech256", "table6_voc2012", "table7_layers", "claims"):
        assert history[f"tables/{stem}._type"] == "table-file", stem
    table1 = json.loads((summary["dir"] / "files" / history["tables/table1_correspondence.path"]).read_text())
    assert any(c.startswith("paper") for c in table1["columns"]), table1["columns"]  # the paper's beside ours

    assert summary["summary"]["report"] == str((work / "reports/index.html").resolve())
    assert summary["summary"]["git revision"].startswith(git_rev(work))
    assert summary["summary"]["W&B group"] == summary["run"].run_group
    (report,) = [a for a in summary["artifacts"] if a.name == "report"]
    assert {"index.html", "tables/table3_ablation.csv"} <= {e.path for e in report.manifest.contents}
