"""Same inputs, same bytes; a team's round trip through a DVC remote; an interrupted rerun loses nothing.

One more `dvc repro` of the tiny pipeline (beside the session's `tiny_pipeline`) in another folder: its
outputs are compared with the session's byte for byte, it is pushed to a directory remote and pulled into a
fresh clone, and its stages are rerun and killed. (An SSH remote is not tested: DVC's SSH support, the
`dvc-ssh` package, is not among the project's dependencies, and no sshd is installed.)"""

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import sh, tiny_repo

pytestmark = pytest.mark.slow
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]


def lock_outs(work: Path) -> dict[str, dict]:
    """Every output dvc.lock lists: path -> its entry (md5, size, nfiles), over all stages."""
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    return {out["path"]: out for stage in lock["stages"].values() for out in stage.get("outs", [])}


def files_of(work: Path, rel: str) -> dict[str, str]:
    """md5 of each file of output ``rel`` (a file or a folder), as DVC sees it: without `.dvcignore`d
    `previous/` runs."""
    root = work / rel
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    return {str(p.relative_to(work)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in paths if "previous" not in p.relative_to(work).parts}


def all_files(work: Path) -> dict[str, str]:
    return {k: v for rel in lock_outs(work) for k, v in files_of(work, rel).items()}


def differing(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


@pytest.fixture(scope="module")
def second_run(tmp_path_factory):
    """Another clean `dvc repro` of the tiny pipeline, its results committed as the README says (DVC's
    autostage has staged dvc.lock and the .gitignore files it wrote)."""
    work = tmp_path_factory.mktemp("share") / "repo"
    env = tiny_repo(work)
    sh(["dvc", "repro"], work, env)
    sh([*GIT, "commit", "-qm", "results"], work, env)
    return work, env


def test_two_runs_write_the_same_bytes(tiny_pipeline, second_run):
    work = second_run[0]
    first, second = lock_outs(tiny_pipeline.work), lock_outs(work)
    assert first.keys() == second.keys() and len(first) > 30
    assert all("md5" in out for out in second.values())  # every output cached: nothing DVC cannot restore
    assert differing(all_files(tiny_pipeline.work), all_files(work)) == []
    assert [p for p in first if first[p] != second[p]] == []  # dvc.lock: md5, size and file count


def test_team_round_trip_through_a_directory_remote(second_run, tmp_path):
    work, env = second_run
    # every output reaches the teammate: DVC tracks it (git ignores it); nothing is left for git to carry
    untracked = sh(["git", "status", "--porcelain", "--untracked-files=all", *lock_outs(work)], work, env)
    assert untracked.strip() == ""
    remote = tmp_path / "remote"
    sh(["dvc", "remote", "add", "-d", "shared", str(remote)], work, env)
    sh([*GIT, "commit", "-qam", "remote"], work, env)
    t = time.perf_counter()
    pushed = sh(["dvc", "push"], work, env)
    push_s = time.perf_counter() - t
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(work), str(clone)], tmp_path, env)
    t = time.perf_counter()
    pulled = sh(["dvc", "pull"], clone, env)
    pull_s = time.perf_counter() - t
    status = sh(["dvc", "status"], clone, env)
    repro = sh(["dvc", "repro"], clone, env)
    print(f"push {push_s:.1f} s: {pushed.strip().splitlines()[-1]}; pull {pull_s:.1f} s: "
          f"{pulled.strip().splitlines()[-1]}; status: {status.strip()}; repro: {repro.strip().splitlines()[-1]}")
    assert "Data and pipelines are up to date" in status
    assert "Running stage" not in repro and "Data and pipelines are up to date" in repro
    assert differing(all_files(work), all_files(clone)) == []  # models, metrics, tables, figures, report
    assert any(p.startswith("models/zfnet/") for p in all_files(clone))


def moved_aside(work: Path) -> set[str]:
    previous = work / "models/zfnet/previous"
    return {p.name for p in previous.iterdir()} if previous.is_dir() else set()


def kill_partway(work: Path, env: dict, stage: str, started, log: Path) -> tuple[int, float]:
    """`dvc repro -f -s <stage>`, SIGTERM to its whole process group once ``started(log text)`` holds
    (DVC has removed the stage's outputs by then); returns dvc's exit status and the seconds until no
    process of the group is left."""
    with log.open("w") as out:
        proc = subprocess.Popen(["dvc", "repro", "-f", "-s", stage], cwd=work, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while "Running stage" not in (text := log.read_text()) or not started(text):
        assert proc.poll() is None and time.monotonic() < deadline, f"{stage} ended before it was killed:\n{text}"
        time.sleep(0.1)
    time.sleep(0.5)
    assert proc.poll() is None, f"{stage} ended before it was killed:\n{log.read_text()}"
    os.killpg(proc.pid, signal.SIGTERM)
    t = time.monotonic()
    status = proc.wait(timeout=60)
    while time.monotonic() - t < 30:  # the stage and its workers too: none may write after the checkout
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return status, time.monotonic() - t
        time.sleep(0.1)
    raise AssertionError(f"processes of the killed `dvc repro -s {stage}` still run 30 s after SIGTERM")


# when to kill: train once it has moved the earlier run aside and trains afresh (its first progress line) (a forced rerun of a finished
# run), transfer once it trains the non-pretrained baseline, table3 as soon as its command runs
WHEN = {"train": lambda work, before: lambda text: bool(moved_aside(work) - before) and "train: epoch 1/" in text,
        "transfer": lambda work, before: lambda text: "non-pretrained" in text,
        "table3": lambda work, before: lambda text: True}


@pytest.mark.parametrize("stage", list(WHEN))
def test_interrupted_rerun_is_restored_by_dvc_checkout(second_run, stage, tmp_path):
    work, env = second_run
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    outs = [o["path"] for o in lock["stages"][stage]["outs"]]
    before = {k: v for rel in outs for k, v in files_of(work, rel).items()}
    lock_before = (work / "dvc.lock").read_bytes()
    status, seconds = kill_partway(work, env, stage, WHEN[stage](work, moved_aside(work)), tmp_path / "repro.log")
    assert status != 0
    lost = differing(before, {k: v for rel in outs for k, v in files_of(work, rel).items()})
    assert lost, "the killed rerun removed or changed none of its outputs"
    assert (work / "dvc.lock").read_bytes() == lock_before  # a killed stage records nothing
    # train's models/zfnet is `persist`: DVC keeps it, and what the killed run wrote there (its
    # run_config.json, checkpoints) is not in the cache, so `dvc checkout` asks for --force before replacing it
    checkout = sh(["dvc", "checkout", *(["--force"] if stage == "train" else [])], work, env)
    print(f"{stage}: dvc exit {status}, no process left {seconds:.1f} s after SIGTERM; {len(lost)} of "
          f"{len(before)} files gone or changed; dvc checkout: {checkout.strip().splitlines()[-1]}")
    assert differing(before, {k: v for rel in outs for k, v in files_of(work, rel).items()}) == []
    assert "Data and pipelines are up to date" in sh(["dvc", "status"], work, env)
    assert sh(["git", "status", "--porcelain", "--untracked-files=no"], work, env).strip() == ""
