"""dvc.yaml never serves a stale result and never reruns for nothing.

- deps: each stage's code deps are exactly the import closure of its entry point (``zfnet.closure``): every
  package file it can run is covered (empty ``__init__`` files aside), and no dep under ``src/zfnet`` covers a
  file it cannot run (editing transfer code must not retrain).
- params: each stage lists the parameters it reads, and none that its command line pins (those values never
  come from params.yaml); DVC's own ``status`` on a locked copy of the repo shows which stages a change of
  ``params.yaml`` makes stale.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import REPO
from zfnet.closure import PACKAGE_DIR, import_closure

SRC = PACKAGE_DIR.relative_to(PACKAGE_DIR.parents[1])  # src/zfnet


def _stages(root: Path = REPO):
    """DVC's own stage loading (``foreach`` expanded, ``${...}`` resolved), as ``dvc repro`` sees them."""
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo(str(root)) as repo:
        return list(repo.index.stages)


@pytest.fixture(scope="module")
def stages():
    return _stages()


def _script(stage) -> str:
    match = re.match(r"python (pipelines/\w+\.py)\b", stage.cmd)
    assert match, f"{stage.addressing}: cmd does not start with `python pipelines/<stage>.py`: {stage.cmd}"
    return match.group(1)


def _path_deps(stage) -> list[str]:
    from dvc.dependency.param import ParamsDependency

    return [str(d.def_path) for d in stage.deps if not isinstance(d, ParamsDependency)]


def _covers(dep: str, path: str) -> bool:
    return path == dep or path.startswith(dep.rstrip("/") + "/")


def _group(name: str) -> str:
    return name.split("@", 1)[0]  # ablate@zfnet -> ablate (one entry of dvc.yaml)


def code_dep_problems(stages, root: Path = REPO) -> dict[str, list[str]]:
    """Per dvc.yaml entry, the YAML lines to add to / remove from its ``deps`` (empty when they match)."""
    out: dict[str, list[str]] = {}
    for stage in stages:
        script = _script(stage)
        closure = {p.relative_to(root).as_posix() for p in import_closure(root / script)}
        deps = _path_deps(stage)
        code_deps = [d for d in deps if _covers(str(SRC), d)]
        # an empty file (a bare package __init__) runs nothing; listed, DVC warns "'...' is empty" on every
        # repro. Once it holds code it is required like any other module.
        required = {p for p in closure if (root / p).stat().st_size > 0} | {script}
        missing = sorted(p for p in required if not any(_covers(d, p) for d in deps))
        extra, replace = [], set()
        for dep in code_deps:
            under = [f.relative_to(root).as_posix() for f in ((root / dep).rglob("*.py") if (root / dep).is_dir()
                                                                else [root / dep])]
            outside = sorted(f for f in under if f not in closure or not (root / f).is_file())
            if outside or not under:
                extra.append(f"      - {dep}    # covers {', '.join(outside) or 'no file'}, not imported by {script}")
                replace.update(f for f in required if _covers(dep, f))
        add = sorted(set(missing) | replace)
        lines = []
        if add:
            lines += ["    add under deps:"] + [f"      - {p}" for p in add]
        if extra:
            lines += ["    remove from deps:"] + extra
        if lines:
            out.setdefault(_group(stage.name), lines)
    return out


def test_every_stage_has_its_entry_point_and_import_closure_as_deps(stages):
    problems = code_dep_problems(stages)
    report = "\n".join(f"  stage '{name}':\n" + "\n".join(lines) for name, lines in problems.items())
    assert not problems, ("dvc.yaml deps do not match the stages' import closures (zfnet.closure.import_closure); "
                          f"change dvc.yaml:\n{report}")


def test_closure_check_catches_missing_and_over_listed_deps(tmp_path):
    """The check itself, on a toy package: a stage missing a module it imports, and one listing a
    directory that holds a module it does not import (both must be reported, with the lines to change)."""
    pkg = tmp_path / "src" / "zfnet"
    (pkg / "sub").mkdir(parents=True)
    for f in ("__init__.py", "sub/__init__.py", "sub/other.py"):
        (pkg / f).write_text('"""A module."""\n')
    (pkg / "sub" / "empty.py").write_text("")  # imported, but empty: runs nothing, not required
    (pkg / "sub" / "used.py").write_text("from zfnet.sub import empty\n")
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "a.py").write_text("from zfnet.sub.used import _\n")

    class Stage:
        def __init__(self, name, deps):
            self.name = self.addressing = name
            self.cmd = "python pipelines/a.py x=1"
            self.deps = [type("D", (), {"def_path": d})() for d in deps]

    import zfnet.closure as closure

    real = (closure.PACKAGE_DIR, closure.PACKAGE)
    closure.PACKAGE_DIR = pkg
    try:
        good = ["pipelines/a.py", "src/zfnet/__init__.py", "src/zfnet/sub/__init__.py", "src/zfnet/sub/used.py"]
        problems = code_dep_problems([Stage("ok", good), Stage("short@x", good[:2]),
                                      Stage("wide", good[:2] + ["src/zfnet/sub"])], tmp_path)
    finally:
        closure.PACKAGE_DIR, closure.PACKAGE = real
    assert set(problems) == {"short", "wide"}
    assert problems["short"] == ["    add under deps:", "      - src/zfnet/sub/__init__.py", "      - src/zfnet/sub/used.py"]
    assert "      - src/zfnet/sub/used.py" in problems["wide"]
    assert any(line.startswith("      - src/zfnet/sub    # covers src/zfnet/sub/other.py") for line in problems["wide"])


# ---------------------------------------------------------------------------------------------------- params

# What each stage reads from params.yaml (by reading its code): every leaf key under these must be a params
# dep of the stage, pinned on its command line, or named in NOT_READ with the reason. A key added to conf/
# under one of these groups fails here until it is classified.
_VIS_STREAM = ["visualize.out_dir", "prepare.out_dir", "visualize.images", "visualize.batch_size",
               "visualize.image_folder", "data.resize", "data.crop"]
_VIS_MODEL = ["visualize.checkpoint", "visualize.model", "visualize.weights"]
READS = {
    "demo_data": ["demo_data"],
    "overlap": ["overlap", "data.imagenet_root", "transfer.caltech101.root", "transfer.caltech256.root"],
    "prepare": ["prepare", "data.imagenet_root", "data.resize", "overlap.remove"],
    "train": ["seed", "data", "model", "train", "trainer"],
    "ablate": ["seed", "data", "model", "train", "trainer", "ablation.{key}.model", "table3.epochs", "table3.width"],
    "train_noclip": ["seed", "data", "model", "train", "trainer", "table3.epochs", "table3.width"],
    "table3": ["ablation"],
    "transfer": ["transfer", "data.resize", "data.crop", "model"],
    # the visualize parts (zfnet.stages.visualize.<part>): the stream's and the model's keys, then the part's own
    "visualize_deconv": [*_VIS_STREAM, *_VIS_MODEL, "visualize.layers", "visualize.deconv", "visualize.checkpoints_dir",
                         "train.history_path", "seed"],
    "visualize_synthesis": [*_VIS_STREAM, *_VIS_MODEL, "visualize.synthesis"],
    "visualize_occlusion": [*_VIS_STREAM, *_VIS_MODEL, "visualize.layers", "visualize.occlusion", "data.imagenet_root",
                            "data.val_boxes"],
    "visualize_invariance": [*_VIS_STREAM, *_VIS_MODEL, "visualize.layers", "visualize.invariance",
                             "visualize.curves_dir"],
    "visualize_correspondence": [*_VIS_MODEL, "visualize.layers", "visualize.image_folder", "visualize.correspondence",
                                 "visualize.ground_truth", "visualize.tables_dir", "data.resize", "data.crop",
                                 "data.imagenet_root"],
    "visualize_fig6": [*_VIS_STREAM, "visualize.model", "visualize.layers", "visualize.fig6", "seed"],
    "claims": ["claims", "data.crop", "seed"],
    "dissect": ["dissect", "data.crop"],
    "atlas": ["atlas", "prepare.out_dir", "visualize.out_dir", "visualize.image_folder", *_VIS_MODEL,
              "visualize.checkpoints_dir", "visualize.synthesis", "data.resize", "data.crop", "dissect.model",
              "dissect.weights", "dissect.checkpoint", "dissect.figures_dir"],
    "report": ["report", "profile", "model.name", "data.imagenet_root", "overlap.remove"],
    "finetune": ["finetune.strategies.{key}", "finetune.root", "finetune.classes", "finetune.ground_truth",
                 "finetune.checkpoint", "finetune.model", "finetune.weights", "finetune.mean", "finetune.std",
                 "finetune.val_per_class", "finetune.train_per_class", "finetune.epochs", "finetune.batch_size",
                 "finetune.momentum", "finetune.weight_decay", "finetune.seed", "finetune.workers", "finetune.analysis",
                 "finetune.only", "finetune.out_dir", "finetune.metrics_dir", "finetune.models_dir", "data.resize",
                 "data.crop", "trainer.accelerator", "trainer.threads"],
    "finetune_table": ["finetune.strategies", "finetune.metrics_dir", "finetune.table", "finetune.out_dir"],
}
_TRAINING_NOT_READ = {
    "data.imagenet_root": "prepare's input: training reads the prepared shards (a dep)",
    "data.resize": "prepare's: the shards are already resized",
    "data.batch_size": "read by no stage (train.batch_size is the batch)",
    "data.val_boxes": "the visualize stage's (Fig. 7's boxes): training never reads it",
}
NOT_READ = {
    "overlap": {"overlap.remove": "prepare's: the overlap stage always lists the copies in removed.txt"},
    "train": _TRAINING_NOT_READ,
    "train_noclip": _TRAINING_NOT_READ,
    "ablate": {**_TRAINING_NOT_READ, "model.name": "every Table 3 row sets model.name (ablation.<row>.model)"},
}


def _leaves(node, prefix: str) -> list[str]:
    if isinstance(node, dict) and node:
        return [leaf for k, v in node.items() for leaf in _leaves(v, f"{prefix}.{k}" if prefix else str(k))]
    return [prefix]


def _get(tree: dict, key: str):
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            raise KeyError(key)
        tree = tree[part]
    return tree


def _pinned(stage) -> list[str]:
    """Config keys the command line sets (``key=value`` after the script; Hydra's own keys aside)."""
    args = shlex.split(stage.cmd)
    after = args[args.index(_script(stage)) + 1 :]
    keys = [a.split("=", 1)[0].lstrip("+~") for a in after if "=" in a and not a.startswith("-")]
    return [k for k in keys if not (k == "hydra" or k.startswith("hydra.") or k.startswith("hydra/"))]


def _param_keys(stage) -> list[str]:
    return [key for dep in stage.params for key in dep.params]


@pytest.fixture(scope="module")
def params(tmp_path_factory) -> dict:
    """conf/ composed as `make params` writes it (params.yaml's own staleness is test_config's business)."""
    from zfnet.config import compose_params

    return yaml.safe_load(compose_params(tmp_path_factory.mktemp("params") / "params.yaml").read_text())


def test_params_are_read_and_not_pinned(stages, params):
    problems = []
    for stage in stages:
        name, _, key = stage.name.partition("@")
        listed, pinned = _param_keys(stage), _pinned(stage)
        for p in listed + pinned:
            try:
                _get(params, p)
            except KeyError:
                problems.append(f"{stage.name}: {p} is not a key of params.yaml")
        for p in listed:
            if (hit := [k for k in pinned if _covers(p.replace(".", "/"), k.replace(".", "/"))]):
                problems.append(f"{stage.name}: params entry {p!r} covers {hit}, pinned on the command line "
                                "(never read from params.yaml): list the other keys individually")
        for source in READS[name]:
            for leaf in _leaves(_get(params, source.format(key=key)), source.format(key=key)):
                covered = any(_covers(p.replace(".", "/"), leaf.replace(".", "/")) for p in listed + pinned)
                if not covered and leaf not in NOT_READ.get(name, {}):
                    problems.append(f"{stage.name}: reads {leaf} but neither lists it under params nor pins it")
    assert not problems, "\n".join(dict.fromkeys(problems))


def test_every_table3_row_sets_the_model_name(params):
    """Why ``ablate@`` does not depend on ``model.name``: each row's own ``model.name`` replaces it."""
    assert params["ablation"] and all(row["model"].get("name") for row in params["ablation"].values())


@pytest.fixture(scope="module")
def locked_repo(tmp_path_factory):
    """A copy of the repo's tracked files with a dvc.lock of its current state: placeholder files stand in for
    every output and data dep, then ``dvc commit -f`` records them (nothing runs). ``dvc status`` on it then
    answers which stages a change makes stale, exactly as on a repo whose stages all ran."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    from zfnet.config import compose_params

    work = tmp_path_factory.mktemp("dvc") / "repo"
    files = subprocess.run(["git", "ls-files", "--cached", "-z"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, work / rel)
    shutil.copy2(REPO / "dvc.yaml", work / "dvc.yaml")  # this working copy's, tracked or not
    compose_params(work / "params.yaml", conf_dir=REPO / "conf")  # conf/ as it is now, as `make params` writes it
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run(["git", "init", "-q"], cwd=work, check=True, env=env)
    with contextlib.chdir(work), Repo(str(work)) as repo:  # DVC resolves stage paths against the cwd
        for stage in repo.index.stages:
            for out in [*stage.outs, *(d for d in stage.deps if not isinstance(d, ParamsDependency))]:
                path = work / str(out.def_path)
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    if path.suffix:
                        path.write_text("placeholder\n")
                    else:
                        path.mkdir()
                        (path / "placeholder").write_text("placeholder\n")
        repo.commit(None, force=True)
    return work


def _stale_after(work: Path, changes: dict) -> set[str]:
    """Stages ``dvc status`` reports changed once ``changes`` (dotted key -> value) are written to params.yaml."""
    from dvc.repo import Repo

    path = work / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    for key, value in changes.items():
        *parents, last = key.split(".")
        node = params
        for part in parents:
            node = node[part]
        assert last in node, key
        node[last] = value
    try:
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        with contextlib.chdir(work), Repo(str(work)) as repo:
            return set(repo.status())
    finally:
        path.write_text(original)


def test_locked_copy_starts_up_to_date(locked_repo):
    assert _stale_after(locked_repo, {}) == set()


def test_train_epochs_and_model_width_leave_table3_variants_up_to_date(locked_repo, stages):
    """The README's `dvc exp run -S train.epochs=12 -S model.width=0.25` retrains `train` and what follows it,
    never the Table 3 variants or `train_noclip` (their epochs and width come from `table3`)."""
    stale = _stale_after(locked_repo, {"train.epochs": 12, "model.width": 0.125})
    assert "train" in stale and "transfer" in stale  # transfer's non-pretrained baseline reads model
    assert not {s for s in stale if s.startswith("ablate@") or s == "train_noclip"}, stale


def test_table3_width_leaves_train_up_to_date(locked_repo, stages):
    stale = _stale_after(locked_repo, {"table3.width": 0.125})
    ablate = {s.name for s in stages if s.name.startswith("ablate@")}
    assert len(ablate) == 12 and ablate | {"train_noclip"} <= stale
    assert not stale & {"train", "prepare", "transfer", "overlap", "demo_data"}, stale


def test_one_table3_row_reruns_only_its_variant(locked_repo):
    stale = _stale_after(locked_repo, {"ablation.zfnet_fc2048.model.fc_units": [1024, 1024]})
    assert {s for s in stale if s.startswith("ablate@")} == {"ablate@zfnet_fc2048"}
    assert "train" not in stale and "train_noclip" not in stale
    # the paper's numbers only change the table, never a trained variant
    stale = _stale_after(locked_repo, {"ablation.zfnet.paper.val_top1": 99.0})
    assert not {s for s in stale if s.startswith("ablate@")} and "table3" in stale, stale


def test_output_paths_and_logging_keys_retrain_nothing(locked_repo):
    """Output paths are pinned on the command line, W&B settings are logging, the ImageNet root is prepare's."""
    stale = _stale_after(locked_repo, {"train.out_dir": "elsewhere", "train.metrics_path": "elsewhere.json",
                                       "wandb.mode": "disabled", "data.imagenet_root": "/elsewhere"})
    assert "prepare" in stale and "overlap" in stale  # they read the ImageNet root
    assert not stale & {"train", "train_noclip", "transfer"} and not {s for s in stale if s.startswith("ablate@")}, stale


VISUALIZE = {"visualize_deconv", "visualize_synthesis", "visualize_occlusion", "visualize_invariance",
             "visualize_correspondence", "visualize_fig6"}


@pytest.mark.parametrize("changes, stale_parts", [
    ({"visualize.occlusion.images": 3}, {"visualize_occlusion"}),
    ({"visualize.invariance.images": 2}, {"visualize_invariance"}),
    ({"visualize.correspondence.repeats": 2}, {"visualize_correspondence"}),
    ({"visualize.synthesis.steps": 2}, {"visualize_synthesis"}),
    ({"visualize.deconv.k": 4}, {"visualize_deconv"}),  # the synthesis follows through Fig. 2's files (a dep)
    ({"visualize.images": 8}, VISUALIZE - {"visualize_correspondence"}),  # Table 1: its own images
])
def test_editing_one_analysis_reruns_only_its_visualize_stage(locked_repo, stages, changes, stale_parts):
    """The visualize stages are split by analysis: a key of one analysis leaves the other parts up to date."""
    assert {s.name for s in stages} >= VISUALIZE
    assert _stale_after(locked_repo, changes) & VISUALIZE == stale_parts
