"""Same inputs, same bytes; a soak of kills; a team's round trip through a DVC remote; an interrupted rerun
loses nothing.

One more `dvc repro` of the tiny pipeline (beside the session's `tiny_pipeline`) in another folder, killed
at random points first (a fixed seed, SIGINT, SIGTERM and SIGKILL to its whole process group, as a terminal's
Ctrl-C, SLURM's `scancel` and the OOM killer do), then run to its end: its outputs are compared with the
session's clean run byte for byte, it is pushed to a remote and pulled into a fresh clone (a directory remote,
and an SSH remote served by an sshd of the test's own), and its stages are rerun and killed."""

import getpass
import hashlib
import os
import random
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from helpers import as_from_a_terminal, sh, tiny_repo

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
            for p in paths if "previous" not in p.relative_to(work).parts and ".tmp-" not in p.name}


def all_files(work: Path) -> dict[str, str]:
    return {k: v for rel in lock_outs(work) for k, v in files_of(work, rel).items()}


def differing(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def group_gone(pgid: int, within: float) -> float | None:
    """Seconds until no process of group ``pgid`` is left, or None if some still run after ``within`` s."""
    t = time.monotonic()
    while time.monotonic() - t < within:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return time.monotonic() - t
        time.sleep(0.05)
    return None


def left_in_group(pgid: int) -> str:
    """`ps` of what is left of a process group (for a failure's message)."""
    return subprocess.run(["ps", "-o", "pid,ppid,stat,etime,args", "-g", str(pgid)], capture_output=True,
                          text=True).stdout


SOAK_SEED = 2014
SOAK_KILLS = 5


def soak(work: Path, env: dict, logs: Path) -> list[dict]:
    """`dvc repro` killed ``SOAK_KILLS`` times: each time in its n-th stage (n drawn from 1..3 among the
    stages that run), a drawn delay after that stage starts, with a drawn signal to its whole process group
    (each of SIGINT, SIGTERM, SIGKILL at least once). Returns one row per kill."""
    rng = random.Random(SOAK_SEED)
    sigs = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
    sigs += [rng.choice(sigs) for _ in range(SOAK_KILLS - len(sigs))]
    rng.shuffle(sigs)
    rows = []
    for i, sig in enumerate(sigs):
        nth, delay = rng.randint(1, 3), rng.uniform(0.5, 8.0)
        log = logs / f"soak-{i}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(["dvc", "repro"], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=as_from_a_terminal)
        deadline = time.monotonic() + 600
        while len(stages := re.findall(r"Running stage '([^']+)'", log.read_text())) < nth and proc.poll() is None:
            assert time.monotonic() < deadline, f"soak {i}: no stage {nth} in 600 s:\n{log.read_text()}"
            time.sleep(0.1)
        time.sleep(delay)
        stages = re.findall(r"Running stage '([^']+)'", log.read_text())
        assert proc.poll() is None, f"soak {i}: `dvc repro` ended before the kill:\n{log.read_text()[-3000:]}"
        os.killpg(proc.pid, sig)
        status = proc.wait(timeout=60)
        seconds = group_gone(proc.pid, 10)
        assert seconds is not None, (f"soak {i}: processes of the group still run 10 s after {sig.name}:\n"
                                     f"{left_in_group(proc.pid)}\n{log.read_text()[-3000:]}")
        rows.append({"signal": sig.name, "stage": stages[-1], "after_s": round(delay, 1), "exit": status,
                     "gone_s": round(seconds, 2)})
    return rows


@pytest.fixture(scope="module")
def second_run(tmp_path_factory):
    """Another `dvc repro` of the tiny pipeline, soaked (killed at random points, see ``soak``) and then run
    to its end; its results committed as the README says (DVC's autostage has staged dvc.lock and the
    .gitignore files it wrote)."""
    work = tmp_path_factory.mktemp("share") / "repo"
    # W&B off (the session's clean run logs offline): tracking must not change a byte of the outputs, and
    # 36 stages start faster without it
    env = {**tiny_repo(work), "WANDB_MODE": "disabled"}
    kills = soak(work, env, work.parent)
    finished = sh(["dvc", "repro"], work, env)
    status = sh(["dvc", "status"], work, env)
    print("soak:", *kills, sep="\n  ")
    assert len(kills) >= SOAK_KILLS and {k["signal"] for k in kills} == {"SIGINT", "SIGTERM", "SIGKILL"}
    assert "Data and pipelines are up to date" in status, status
    assert "Running stage" in finished  # the kills left work to do
    sh([*GIT, "commit", "-qm", "results"], work, env)
    return work, env, kills


def test_soaked_run_writes_the_same_bytes_as_a_clean_one(tiny_pipeline, second_run):
    """Killed five times at random points, then finished: every output as in the session's clean run."""
    work, _, kills = second_run
    assert len({k["stage"] for k in kills}) >= 2  # the kills hit more than one stage
    first, second = lock_outs(tiny_pipeline.work), lock_outs(work)
    assert first.keys() == second.keys() and len(first) > 30
    assert all("md5" in out for out in second.values())  # every output cached: nothing DVC cannot restore
    assert differing(all_files(tiny_pipeline.work), all_files(work)) == []
    assert [p for p in first if first[p] != second[p]] == []  # dvc.lock: md5, size and file count


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """An sshd of the test's own on localhost (Debian's openssh-server, `make sshd`): its own config, host and
    user keys and port; stopped by its pid. Yields (ssh:// URL of a remote folder, the user's private key)."""
    root = tmp_path_factory.mktemp("sshd")
    for name in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    (root / "authorized_keys").write_text((root / "user.pub").read_text())
    port = free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host'}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation folder (the system service makes it)
    log = (root / "sshd.log").open("w")
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(root / "sshd_config")], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, f"sshd exited: {(root / 'sshd.log').read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"sshd not listening on {port}: {(root / 'sshd.log').read_text()}"
                time.sleep(0.1)
        yield f"ssh://{getpass.getuser()}@127.0.0.1:{port}{root / 'remote'}", root / "user"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.mark.parametrize("kind", ["directory", "ssh"])
def test_team_round_trip_through_a_remote(second_run, kind, tmp_path, request):
    work, env, _ = second_run
    # every output reaches the teammate: DVC tracks it (git ignores it); nothing is left for git to carry
    untracked = sh(["git", "status", "--porcelain", "--untracked-files=all", *lock_outs(work)], work, env)
    assert untracked.strip() == ""
    url, key = (str(tmp_path / "remote"), None) if kind == "directory" else request.getfixturevalue("sshd")
    sh(["dvc", "remote", "add", "--force", "-d", "shared", url], work, env)
    sh([*GIT, "commit", "-qam", f"a {kind} remote"], work, env)
    # the key is each user's own: `--local` (.dvc/config.local, not committed), in each clone
    keyfile = ["dvc", "remote", "modify", "--local", "shared", "keyfile", str(key)]
    if key:
        sh(keyfile, work, env)
    t = time.perf_counter()
    pushed = sh(["dvc", "push"], work, env)
    push_s = time.perf_counter() - t
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(work), str(clone)], tmp_path, env)
    if key:
        sh(keyfile, clone, env)
    t = time.perf_counter()
    pulled = sh(["dvc", "pull"], clone, env)
    pull_s = time.perf_counter() - t
    status = sh(["dvc", "status"], clone, env)
    repro = sh(["dvc", "repro"], clone, env)
    print(f"{kind} remote: push {push_s:.1f} s: {pushed.strip().splitlines()[-1]}; pull {pull_s:.1f} s: "
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
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=as_from_a_terminal)
    deadline = time.monotonic() + 300
    while "Running stage" not in (text := log.read_text()) or not started(text):
        assert proc.poll() is None and time.monotonic() < deadline, f"{stage} ended before it was killed:\n{text}"
        time.sleep(0.05)
    assert proc.poll() is None, f"{stage} ended before it was killed:\n{log.read_text()}"
    os.killpg(proc.pid, signal.SIGTERM)
    status = proc.wait(timeout=60)
    seconds = group_gone(proc.pid, 30)  # the stage and its workers too: none may write after the checkout
    assert seconds is not None, (f"processes of the killed `dvc repro -s {stage}` still run 30 s after SIGTERM:\n"
                                 f"{left_in_group(proc.pid)}\n{log.read_text()[-3000:]}")
    return status, seconds


# when to kill, as early as the stage has done what can be lost (no delay after: a tiny stage may finish within
# a second, and a finished rerun writes the same bytes, which would leave nothing to restore): train once it
# has moved the earlier run aside (a forced rerun of a finished run trains afresh), transfer once it trains the
# non-pretrained baseline, table3 as soon as its command runs (DVC removed its outputs before it started it)
WHEN = {"train": lambda work, before: lambda text: bool(moved_aside(work) - before),
        "transfer": lambda work, before: lambda text: "non-pretrained" in text,
        "table3": lambda work, before: lambda text: True}


@pytest.mark.parametrize("stage", list(WHEN))
def test_interrupted_rerun_is_restored_by_dvc_checkout(second_run, stage, tmp_path):
    work, env, _ = second_run
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
