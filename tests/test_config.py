"""conf/ is the single source; params.yaml is its composed snapshot, exactly as `dvc exp run` writes it."""

import configparser
import itertools
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from helpers import REPO
from zfnet.config import compose_params


def _committed(repo: Path, rel: str) -> str | None:
    """``rel`` as of the last commit, or None outside a git checkout (or when it is not committed)."""
    proc = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=repo, capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def _changed_keys(a: str, b: str) -> list[str]:
    def leaves(node, prefix=""):
        if isinstance(node, dict) and node:
            return {k: v for key, val in node.items() for k, v in leaves(val, f"{prefix}{key}.").items()}
        return {prefix.rstrip("."): node}

    x, y = leaves(yaml.safe_load(a)), leaves(yaml.safe_load(b))
    return sorted(k for k in x.keys() | y.keys() if x.get(k, ...) != y.get(k, ...))


def snapshot_problem(repo: Path, scratch: Path) -> str | None:
    """Why ``repo``'s params.yaml is not the composed snapshot of its ``conf/`` (None when it is).

    The snapshot checked is the working copy, except when it differs from the committed one: `dvc exp run -S
    key=value` rewrites params.yaml in the workspace (conf/ composed with its overrides), so a finished
    experiment leaves it changed on purpose; then the committed params.yaml must match conf/. A stale
    snapshot fails either way: conf/ edited without `make params`, or a stale params.yaml committed."""
    fresh = compose_params(scratch / "params.yaml", conf_dir=repo / "conf").read_text()
    working = (repo / "params.yaml").read_text()
    if working == fresh:
        return None
    committed = _committed(repo, "params.yaml")
    if committed is not None and committed != working:  # rewritten since the last commit (an experiment's -S)
        if committed == fresh:
            return None
        return (f"the committed params.yaml is stale (differs from conf/ at {_changed_keys(committed, fresh)}); "
                "the workspace's was rewritten (by `dvc exp run`?): run `make params` and commit it "
                "(`git checkout params.yaml` first to drop the experiment's values)")
    return f"params.yaml is stale (differs from conf/ at {_changed_keys(working, fresh)}): run `make params`"


def test_params_yaml_in_sync_with_conf(tmp_path):
    problem = snapshot_problem(REPO, tmp_path)
    assert problem is None, problem


@pytest.fixture
def git_conf_repo(tmp_path):
    """A git repo holding a copy of conf/ and its composed params.yaml, committed."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "conf", repo / "conf")
    compose_params(repo / "params.yaml", conf_dir=repo / "conf")
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    (tmp_path / "scratch").mkdir()
    return repo, tmp_path / "scratch"


def _commit(repo: Path) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "y"], cwd=repo, check=True)


def test_snapshot_check_accepts_an_experiments_rewrite(git_conf_repo):
    """After `dvc exp run -S train.epochs=12` (params.yaml rewritten from conf/ + the override), the check
    passes: it was "params.yaml is stale" before, so `make test` failed after every experiment."""
    repo, scratch = git_conf_repo
    assert snapshot_problem(repo, scratch) is None
    compose_params(repo / "params.yaml", conf_dir=repo / "conf", overrides=["train.epochs=12", "model.width=0.25"])
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["epochs"] == 12  # rewritten indeed
    assert snapshot_problem(repo, scratch) is None


def test_snapshot_check_still_fails_on_a_stale_snapshot(git_conf_repo):
    repo, scratch = git_conf_repo
    train = repo / "conf" / "train" / "default.yaml"
    train.write_text(re.sub(r"(?m)^lr: .*$", "lr: 0.123", train.read_text()))
    assert "run `make params`" in snapshot_problem(repo, scratch)  # conf/ edited, snapshot not regenerated
    assert "train.lr" in snapshot_problem(repo, scratch)
    _commit(repo)  # ... and committed like that
    assert "params.yaml is stale" in snapshot_problem(repo, scratch)
    compose_params(repo / "params.yaml", conf_dir=repo / "conf", overrides=["train.epochs=12"])  # then an experiment
    assert "committed params.yaml is stale" in snapshot_problem(repo, scratch)
    (repo / "params.yaml").write_text(compose_params(scratch / "p.yaml", conf_dir=repo / "conf").read_text())
    assert snapshot_problem(repo, scratch) is None  # `make params` fixes it


def test_compose_is_dvcs_own(tmp_path):
    # DVC's `dvc exp run` path: dvc.repo.experiments.queue.utils -> compose_and_dump(params.yaml, conf, None, config, ...)
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(str(tmp_path / "dvc.yaml"), str(REPO / "conf"), None, "config", str(REPO), ["train.epochs=3"])
    ours = compose_params(tmp_path / "ours.yaml", overrides=["train.epochs=3"])
    assert (tmp_path / "dvc.yaml").read_text() == ours.read_text()


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


# ------------------------------------------------------------------------------------- README's commands

def readme_commands(text: str) -> list[tuple[str, str, list[str], bool]]:
    """Every ``pipelines/<stage>.py ...`` command of the README's shell blocks: (line, script, overrides,
    multirun). Comments stripped, line continuations joined; a launcher prefix (``torchrun ...``, ``srun ...
    python``) is skipped by starting at the script."""
    found, blocks, block, lang = [], [], None, ""
    for line in text.splitlines():
        if line.startswith("```"):
            if block is None:
                block, lang = [], line[3:].strip()
            else:
                if lang in ("", "bash", "sh", "shell", "console"):
                    blocks.append("\n".join(block) + "\n")
                block = None
        elif block is not None:
            block.append(line)
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            scripts = [i for i, tok in enumerate(tokens) if re.fullmatch(r"pipelines/\w+\.py", tok)]
            if scripts:
                args = tokens[scripts[0] + 1 :]
                found.append((line.strip(), tokens[scripts[0]], [a for a in args if not a.startswith("-")],
                              "-m" in args or "--multirun" in args))
    return found


def _sweep_jobs(overrides: list[str], sweeper_params: dict | None = None) -> list[list[str]]:
    """Every job of a basic-sweeper multirun: the product of comma sweeps (config's hydra.sweeper.params,
    then the command line's, which win)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(
        [f"{k}={v}" for k, v in (sweeper_params or {}).items()] + overrides)
    axes: dict[str, list[str]] = {}
    for o in parsed:
        key = o.get_key_element()
        axes[key] = ([f"{key}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() else [o.input_line])
    return [list(job) for job in itertools.product(*axes.values())]


def compose_readme_command(script: str, overrides: list[str], multirun: bool) -> int:
    """Compose a README command's config with Hydra (nothing runs); returns how many jobs were composed."""
    from hydra import compose, initialize_config_dir

    from zfnet.ablation import selected_variant

    assert (REPO / script).is_file(), script
    jobs = [overrides]
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        if multirun:
            first = compose("config", overrides=_sweep_jobs(overrides)[0], return_hydra_config=True)
            params = first.hydra.sweeper.get("params")
            jobs = _sweep_jobs(overrides, OmegaConf.to_container(params) if params else {})
        for job in jobs:
            cfg = compose("config", overrides=job)
            if script == "pipelines/train.py":
                selected_variant(cfg)  # a train.variant that names no Table 3 row fails here, as at run time
    return len(jobs)


def test_readme_commands_are_found():
    """The extraction itself, on commands shaped like the README's (continuation, launcher prefix, comment)."""
    text = ("```bash\n"
            "python pipelines/prepare.py a=1 \\\n    b=2   # comment c=3\n"
            "torchrun --nnodes 2 --rdzv-endpoint $HEAD:29500 \\\n    pipelines/train.py d=4\n"
            "srun --nodes 2 python pipelines/train.py -m e=5,6\n"
            "dvc repro   # python pipelines/report.py f=7\n```\n")
    got = [(script, overrides, multirun) for _, script, overrides, multirun in readme_commands(text)]
    assert got == [("pipelines/prepare.py", ["a=1", "b=2"], False), ("pipelines/train.py", ["d=4"], False),
                   ("pipelines/train.py", ["e=5,6"], True)]
    assert _sweep_jobs(["e=5,6", "+g=x"], {"e": "1,2,3", "h": "7,8"}) == [
        ["e=5", "h=7", "+g=x"], ["e=5", "h=8", "+g=x"], ["e=6", "h=7", "+g=x"], ["e=6", "h=8", "+g=x"]]


def test_readme_command_with_a_wrong_key_fails():
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    for bad in (["train.epoch=3"], ["model=resnet"], ["trainer=gpu", "prepare.outdir=/x"]):
        with pytest.raises((HydraException, OmegaConfBaseException)):
            compose_readme_command("pipelines/train.py", bad, False)
    with pytest.raises(KeyError, match="not a Table 3 row"):
        compose_readme_command("pipelines/train.py", ["+sweep=ablation", "train.variant=zfnet,zfnet_fc4096"], True)


README_COMMANDS = readme_commands((REPO / "README.md").read_text())


def test_readme_has_pipeline_commands():
    assert len(README_COMMANDS) >= 10 and {"pipelines/train.py", "pipelines/prepare.py", "pipelines/transfer.py",
                                           "pipelines/overlap.py", "pipelines/table3.py"} <= {c[1] for c in README_COMMANDS}


@pytest.mark.parametrize("line,script,overrides,multirun", README_COMMANDS, ids=[c[0][:70] for c in README_COMMANDS])
def test_readme_command_composes(line, script, overrides, multirun):
    """Every `python pipelines/<stage>.py ...` of the README composes: no missing key, group or value."""
    assert compose_readme_command(script, overrides, multirun) >= 1, line
