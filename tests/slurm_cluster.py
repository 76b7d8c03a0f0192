"""A real one-node SLURM for tests: Debian's munged, slurmctld and slurmd started as this process's own
children (foreground, their own state, spool, socket and log files under a temporary folder), stopped by
their pids. The node is this host with 2 CPUs, cgroup-free (proctrack/linuxproc, task/none), one partition
capped at an hour. ``make slurm`` installs the packages (apt-get), as ``make chromium`` does for the browser.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/sbatch")
REPO = Path(__file__).resolve().parents[1]
PARTITION = "debug"
MAX_TIME_MIN = 60
CPUS = 2
MEMORY_MB = 6000


def install() -> None:
    """``make slurm`` when a daemon is missing (apt-get, as root or with sudo)."""
    if all(os.access(p, os.X_OK) for p in DAEMONS):
        return
    subprocess.run(["make", "-C", str(REPO), "slurm"], check=True, timeout=900)
    missing = [p for p in DAEMONS if not os.access(p, os.X_OK)]
    if missing:
        raise RuntimeError(f"make slurm did not install {missing}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SLURM_CONF = """\
ClusterName=zfnettest
SlurmctldHost={host}
SlurmUser={user}
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket.2
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName={host} CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName={partition} Nodes={host} Default=YES MaxTime={max_time} State=UP
"""


class SlurmCluster:
    """``with SlurmCluster(tmp) as c:`` a running one-node cluster; ``c.env`` for sbatch/squeue/Hydra."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.procs: list[subprocess.Popen] = []
        self.host = socket.gethostname()

    @property
    def env(self) -> dict:
        return {**os.environ, "SLURM_CONF": str(self.root / "slurm.conf")}

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.root / "log" / f"{name}.out", "ab")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def _wait(self, what: str, ok, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if ok():
                return
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead[0].args[0]} exited ({dead[0].returncode}) while waiting for {what}; "
                                   f"logs in {self.root / 'log'}:\n{self.logs()}")
            time.sleep(0.3)
        raise TimeoutError(f"{what} not ready after {timeout:.0f} s; logs in {self.root / 'log'}:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted((self.root / "log").glob("*")) if p.is_file())

    def start(self) -> "SlurmCluster":
        install()
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        (self.root / "slurm.conf").write_text(SLURM_CONF.format(
            host=self.host, user=user, root=self.root, ctld_port=_free_port(), d_port=_free_port(), cpus=CPUS,
            memory=MEMORY_MB, partition=PARTITION, max_time=MAX_TIME_MIN))
        sock = self.root / "munge" / "munge.socket.2"
        self._start("munged", ["/usr/sbin/munged", "-F", "-f", f"--socket={sock}", f"--key-file={key}",
                               f"--log-file={self.root / 'log' / 'munged.log'}",
                               f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                               f"--seed-file={self.root / 'munge' / 'munged.seed'}"])
        self._wait("munged", sock.exists, 20)
        self._start("slurmctld", ["/usr/sbin/slurmctld", "-D", "-i", "-f", str(self.root / "slurm.conf")])
        self._wait("slurmctld", lambda: self._ok(["scontrol", "ping"], "UP"), 60)
        self._start("slurmd", ["/usr/sbin/slurmd", "-D", "-N", self.host, "-f", str(self.root / "slurm.conf")])
        self._wait("an idle node", lambda: self._ok(["sinfo", "-h", "-o", "%t"], "idle"), 60)
        return self

    def _ok(self, args: list[str], word: str) -> bool:
        proc = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=20)
        return proc.returncode == 0 and word in proc.stdout

    def stop(self) -> None:
        """scancel what is left, then SIGTERM each daemon by pid (SIGKILL after 15 s), slurmd first."""
        if self.procs:
            subprocess.run(["scancel", "--full", "-p", PARTITION], env=self.env, capture_output=True, timeout=20)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(5)
        self.procs.clear()

    def __enter__(self) -> "SlurmCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
