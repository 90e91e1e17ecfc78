"""A real single-node Slurm cluster for tests: munged, slurmctld and slurmd as subprocesses.

Everything lives in one private directory: the munge key and socket, slurm.conf, the
controller's state, slurmd's spool and all logs. Nothing touches /etc/slurm or the system's
munged, and the daemons listen on 127.0.0.1 only (``NoCtldInAddrAny,NoInAddrAny``). Clients
(sbatch, squeue, scancel, scontrol) find the cluster through ``SLURM_CONF``, which
:attr:`SlurmCluster.env` gives, and reach munged through ``AuthInfo=socket=...`` in that
file. Needs root (slurmd runs jobs as their submitter and must switch users) and the Debian
packages ``slurm-wlm`` and ``munge``. Start to idle node takes about 2 s.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

JOB_SUBMIT_LUA = Path(__file__).with_name("job_submit.lua")
PARTITIONS = ("debug", "tesp-alt")

SLURM_CONF = """\
ClusterName=tesp
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobSubmitPlugins=lua
MailProg=/bin/true
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
SlurmctldTimeout=10
SlurmdTimeout=60
MessageTimeout=5
InactiveLimit=0
KillWait=2
MinJobAge=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} TmpDisk=1024 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
PartitionName=tesp-alt Nodes={host} MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _memory_mb() -> int:
    """Slurm drains a node configured with more memory than it has: stay below it."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    return max(256, min(4096, total // 2))


def _hostname() -> str:
    host = socket.gethostname()
    try:
        socket.gethostbyname(host)
    except OSError as exc:
        raise RuntimeError(
            f"the host name {host!r} does not resolve; Slurm names the node by it "
            "(add it to /etc/hosts)"
        ) from exc
    return host


@dataclass
class SlurmCluster:
    """A running test cluster: its directory, config and the daemons' processes."""

    root: Path
    host: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """What a client process (Pulsar, sbatch, squeue) needs to find this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command against this cluster."""
        return subprocess.run(
            list(argv),
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=30,
            check=check,
        )

    def queued_job_ids(self) -> set[str]:
        """Ids of the jobs squeue lists (pending, running or completing)."""
        out = self.run("squeue", "-h", "-o", "%A").stdout
        return {line.strip() for line in out.splitlines() if line.strip()}

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (Key=Value fields of its one-line form)."""
        out = self.run("scontrol", "-o", "show", "job", job_id).stdout
        fields: dict[str, str] = {}
        for word in out.split():
            key, sep, value = word.partition("=")
            if sep:
                fields[key] = value
        return fields

    def start_controller(self) -> None:
        """(Re)start slurmctld; it keeps jobs across restarts in StateSaveLocation."""
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])

    def stop_controller(self) -> None:
        """Stop slurmctld only: jobs keep running under slurmd, clients cannot reach it."""
        self._terminate("slurmctld")

    def wait_idle(self, timeout: float = 30) -> None:
        """Until the node is up and takes jobs."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            result = self.run("sinfo", "-h", "-n", self.host, "-o", "%T", check=False)
            state = result.stdout.strip()
            if result.returncode == 0 and state.split("\n")[0] in ("idle", "mixed", "allocated"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the Slurm node never became idle (state {state!r}): {self.logs()}")

    def logs(self) -> str:
        """The tails of the daemons' logs, for failure messages."""
        parts = []
        for name in ("munged.out", "slurmctld.log", "slurmd.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text(errors="replace")[-2000:])
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel what still runs, then stop slurmd, slurmctld and munged."""
        if "slurmctld" in self.procs:
            self.run("scancel", "--full", "-u", "root", check=False)
            deadline = time.monotonic() + 15
            while self.queued_job_ids() and time.monotonic() < deadline:
                time.sleep(0.2)
        for name in ("slurmd", "slurmctld", "munged"):
            self._terminate(name)

    def _spawn(self, name: str, argv: list[str]) -> None:
        out = open(self.root / f"{name}.out", "ab")  # noqa: SIM115
        self.procs[name] = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        out.close()

    def _terminate(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _start_munged(cluster: SlurmCluster) -> None:
    # munged insists that every directory above its socket be searchable by all, and that
    # the key belong to the user munged runs as (root here), mode 0600; mungekey already
    # creates it so, as the user that runs it. In the foreground munged logs to stderr
    # (munged.out), whatever --log-file says, so none is given.
    sock_dir = cluster.root / "munge"
    sock_dir.mkdir(mode=0o755)
    key = cluster.root / "munge.key"
    subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True, timeout=30)
    key.chmod(0o600)
    cluster._spawn(
        "munged",
        [
            "munged",
            "--foreground",
            f"--socket={sock_dir}/munge.socket",
            f"--key-file={key}",
            f"--pid-file={cluster.root}/munged.pid",
            f"--seed-file={cluster.root}/munged.seed",
        ],
    )
    deadline = time.monotonic() + 15
    while not (sock_dir / "munge.socket").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"munged did not start: {cluster.logs()}")
        time.sleep(0.05)


def write_config(cluster: SlurmCluster) -> None:
    """slurm.conf (and job_submit.lua beside it, where slurmctld looks for it)."""
    (cluster.root / "state").mkdir()
    (cluster.root / "spool").mkdir()
    cluster.conf.write_text(
        SLURM_CONF.format(
            host=cluster.host,
            root=cluster.root,
            ctld_port=_free_port(),
            slurmd_port=_free_port(),
            cpus=os.cpu_count() or 1,
            memory_mb=_memory_mb(),
        )
    )
    shutil.copy(JOB_SUBMIT_LUA, cluster.root / "job_submit.lua")


@contextlib.contextmanager
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd; stop them (and every job) on exit."""
    if os.geteuid() != 0:
        raise RuntimeError("the Slurm test cluster needs root (slurmd switches users)")
    # Not under pytest's tmp_path: that lies below a 0700 directory, and munged refuses a
    # socket whose parent directories are not searchable by everyone.
    root = Path(tempfile.mkdtemp(prefix="tesp-slurm-"))
    root.chmod(0o755)
    cluster = SlurmCluster(root=root, host=_hostname())
    try:
        write_config(cluster)
        _start_munged(cluster)
        cluster.start_controller()
        cluster._spawn("slurmd", ["slurmd", "-D", "-f", str(cluster.conf)])
        cluster.wait_idle()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
