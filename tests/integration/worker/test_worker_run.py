"""The real zipapp, run as a subprocess on real specs, under the `none` and `bwrap` runtimes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from tesp_core.worker import build_zipapp
from tesp_core.worker.package import worker_command

HAS_BWRAP = shutil.which("bwrap") is not None
RUNTIMES = [
    "none",
    pytest.param("bwrap", marks=pytest.mark.skipif(not HAS_BWRAP, reason="no bwrap")),
]
HOSTILE = "a b;rm -rf / $(id) `id` \"q\" 's' \\ * ~ %s\n2nd line \u2713"


@pytest.fixture(scope="session")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_zipapp(tmp_path_factory.mktemp("pyz"))


class Job:
    """One worker run: TES paths, the allowed storage root, the job dir."""

    def __init__(self, tmp_path: Path, kind: str, pyz: Path) -> None:
        self.kind = kind
        self.pyz = pyz
        self.store = tmp_path / "store"
        self.store.mkdir()
        self.job_dir = tmp_path / "job"
        # Under bwrap TES paths need not exist on the host (and must not be written there);
        # under none they are host paths, so they live in tmp_path.
        self.base = f"/tesp-it-{tmp_path.name}" if kind == "bwrap" else str(tmp_path / "tes")

    def p(self, rel: str) -> str:
        """A TES path."""
        return f"{self.base}/{rel}"

    def spec(self, executors: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "version": 1,
            "task_id": "t-1",
            "runtime": {"kind": self.kind, "executable": None, "extra_args": []},
            "inputs": [],
            "outputs": [],
            "volumes": [],
            "executors": [
                {"image": "ubuntu:24.04", "env": {}, "ignore_error": False, **ex}
                for ex in executors
            ],
            "storage": {"file_roots": [str(self.store)]},
            "log_tail_bytes": 65536,
        }
        spec.update(extra)
        return spec

    def start(
        self, spec: dict[str, Any], pass_fds: tuple[int, ...] = ()
    ) -> subprocess.Popen[bytes]:
        spec_path = self.job_dir.parent / "spec.json"
        spec_path.write_text(json.dumps(spec))
        # The command a Pulsar job runs, plus -I: no site-packages and no PYTHON* variables,
        # as on a compute node where TESP is not installed.
        python, *rest = worker_command(
            sys.executable, str(self.pyz), str(spec_path), str(self.job_dir)
        )
        return subprocess.Popen(
            [python, "-I", *rest],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
        )

    def run(self, spec: dict[str, Any], pass_fds: tuple[int, ...] = ()) -> dict[str, Any]:
        proc = self.start(spec, pass_fds)
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        result: dict[str, Any] = json.loads((self.job_dir / "result.json").read_text())
        return result


@pytest.fixture(params=RUNTIMES)
def job(request: pytest.FixtureRequest, tmp_path: Path, pyz: Path) -> Job:
    return Job(tmp_path, request.param, pyz)


def tool(path: Path, text: str, mode: int = 0o755) -> None:
    """A program file on the host for executors to find."""
    path.write_text(text)
    path.chmod(mode)


def sh(script: str, **extra: Any) -> dict[str, Any]:
    return {"command": ["sh", "-c", script], **extra}


def test_two_executors_share_a_volume(job: Job) -> None:
    vol = job.p("vol")
    spec = job.spec(
        [sh(f"echo hello > {vol}/a.txt"), {"command": ["cat", f"{vol}/a.txt"]}], volumes=[vol]
    )
    result = job.run(spec)
    assert result["state"] == "COMPLETE", result
    logs = result["executor_logs"]
    assert [log["exit_code"] for log in logs] == [0, 0]
    assert logs[1]["stdout"] == "hello\n"
    for stamp in (result["start_time"], result["end_time"], logs[0]["start_time"]):
        assert datetime.fromisoformat(stamp).tzinfo is not None
    assert result["system_logs"] == []


def test_done_progress_carries_the_result(job: Job) -> None:
    result = job.run(job.spec([sh("echo out; echo err >&2; exit 3")]))
    progress = json.loads((job.job_dir / "progress.json").read_text())
    assert progress["state"] == "DONE"
    assert progress["result"] == result  # one read gives a remote service the outcome
    assert result["state"] == "EXECUTOR_ERROR"
    assert [(x["exit_code"], x["stdout"], x["stderr"]) for x in result["executor_logs"]] == [
        (3, "out\n", "err\n")
    ]


def test_inline_content_readable_at_its_path(job: Job) -> None:
    path = job.p("in/hello.txt")
    inputs = [{"path": path, "type": "FILE", "url": None, "content": "h\u00e9llo\n$X"}]
    result = job.run(job.spec([{"command": ["cat", path]}], inputs=inputs))
    assert result["state"] == "COMPLETE", result
    assert result["executor_logs"][0]["stdout"] == "h\u00e9llo\n$X"


def test_file_url_inputs_file_and_directory(job: Job) -> None:
    (job.store / "x.txt").write_bytes(b"x-bytes\n")
    tree = job.store / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("A")
    (tree / "sub" / "b.txt").write_text("BB")
    inputs = [
        {"path": job.p("in/x.txt"), "type": "FILE", "url": f"file://{job.store}/x.txt"},
        {"path": job.p("ref"), "type": "DIRECTORY", "url": str(tree)},
    ]
    script = f"cat {job.p('in/x.txt')}; cd {job.p('ref')} && find . -type f | sort && cat sub/b.txt"
    result = job.run(job.spec([sh(script)], inputs=inputs))
    assert result["state"] == "COMPLETE", result
    assert result["executor_logs"][0]["stdout"] == "x-bytes\n./a.txt\n./sub/b.txt\nBB"


def test_outputs_file_directory_and_wildcards(job: Job) -> None:
    out = job.p("out")
    script = (
        f"mkdir -p {out}/dir/sub {out}/logs && printf one > {out}/file.txt && "
        f"printf aa > {out}/dir/a && printf bbb > {out}/dir/sub/b && "
        f"printf x > {out}/logs/x.log && printf yy > {out}/logs/y.log && "
        f"printf z > {out}/logs/z.txt"
    )
    res = job.store / "res"
    outputs = [
        {"path": f"{out}/file.txt", "type": "FILE", "url": f"file://{res}/file.txt"},
        {"path": f"{out}/dir", "type": "DIRECTORY", "url": f"{res}/dir"},
        {
            "path": f"{out}/logs/*.log",
            "type": "FILE",
            "url": f"file://{res}/logs/",
            "path_prefix": f"{out}/logs/",
        },
        {
            "path": f"{out}/nothing-*.bam",
            "type": "FILE",
            "url": f"file://{res}/none/",
            "path_prefix": f"{out}/",
        },
    ]
    result = job.run(job.spec([sh(script)], outputs=outputs, volumes=[out]))
    assert result["state"] == "COMPLETE", result
    assert (res / "file.txt").read_bytes() == b"one"
    assert (res / "dir" / "a").read_bytes() == b"aa"
    assert (res / "dir" / "sub" / "b").read_bytes() == b"bbb"
    assert sorted(p.name for p in (res / "logs").iterdir()) == ["x.log", "y.log"]
    assert (res / "logs" / "y.log").read_bytes() == b"yy"
    assert not (res / "none").exists()
    assert result["outputs"] == [
        {"url": f"file://{res}/file.txt", "path": f"{out}/file.txt", "size_bytes": "3"},
        {"url": f"{res}/dir/a", "path": f"{out}/dir/a", "size_bytes": "2"},
        {"url": f"{res}/dir/sub/b", "path": f"{out}/dir/sub/b", "size_bytes": "3"},
        {"url": f"file://{res}/logs/x.log", "path": f"{out}/logs/x.log", "size_bytes": "1"},
        {"url": f"file://{res}/logs/y.log", "path": f"{out}/logs/y.log", "size_bytes": "2"},
    ]


def test_stdin_from_input_stdout_to_tes_path_and_tail(job: Job) -> None:
    src, dst, err = job.p("in/words"), job.p("out/upper.txt"), job.p("out/err.txt")
    inputs = [{"path": src, "type": "FILE", "url": None, "content": "abc\ndef\n"}]
    outputs = [{"path": dst, "type": "FILE", "url": f"{job.store}/upper.txt"}]
    ex = sh("tr a-z A-Z; echo oops >&2", stdin=src, stdout=dst, stderr=err)
    result = job.run(job.spec([ex], inputs=inputs, outputs=outputs))
    assert result["state"] == "COMPLETE", result
    assert (job.store / "upper.txt").read_bytes() == b"ABC\nDEF\n"
    log = result["executor_logs"][0]
    assert (log["stdout"], log["stderr"]) == ("ABC\nDEF\n", "oops\n")
    assert result["outputs"][0]["size_bytes"] == "8"


def test_log_tail_keeps_the_last_bytes(job: Job) -> None:
    spec = job.spec([sh("seq 1 10000")], log_tail_bytes=10)
    result = job.run(spec)
    assert result["executor_logs"][0]["stdout"] == "\n9999\n10000\n"[-10:]


def test_env_values_arrive_byte_exact(job: Job) -> None:
    spec = job.spec([sh('printf %s "$X"', env={"X": HOSTILE, "EMPTY": ""})])
    result = job.run(spec)
    assert result["state"] == "COMPLETE", result
    assert result["executor_logs"][0]["stdout"] == HOSTILE


def test_ignore_error_continues(job: Job) -> None:
    spec = job.spec([sh("exit 3", ignore_error=True), {"command": ["echo", "ok"]}])
    result = job.run(spec)
    assert result["state"] == "COMPLETE", result
    assert [log["exit_code"] for log in result["executor_logs"]] == [3, 0]
    assert result["executor_logs"][1]["stdout"] == "ok\n"


def test_executor_error_stops_and_uploads_what_exists(job: Job) -> None:
    out = job.p("out")
    outputs = [
        {"path": f"{out}/partial.txt", "type": "FILE", "url": f"{job.store}/partial.txt"},
        {"path": f"{out}/never.txt", "type": "FILE", "url": f"{job.store}/never.txt"},
    ]
    spec = job.spec(
        [sh(f"printf part > {out}/partial.txt; exit 5"), sh(f"touch {out}/never.txt")],
        outputs=outputs,
        volumes=[out],
    )
    result = job.run(spec)
    assert result["state"] == "EXECUTOR_ERROR", result
    assert [log["exit_code"] for log in result["executor_logs"]] == [5]
    assert (job.store / "partial.txt").read_bytes() == b"part"
    assert not (job.store / "never.txt").exists()
    assert [o["path"] for o in result["outputs"]] == [f"{out}/partial.txt"]


def test_command_not_found_is_exit_127(job: Job) -> None:
    result = job.run(job.spec([{"command": ["tesp-no-such-command-xyz"]}]))
    assert result["state"] == "EXECUTOR_ERROR", result
    log = result["executor_logs"][0]
    assert log["exit_code"] == 127
    assert "tesp-no-such-command-xyz" in log["stderr"]


def test_command_is_found_on_the_task_path_and_non_executable_is_126(
    tmp_path: Path, pyz: Path
) -> None:
    job = Job(tmp_path, "none", pyz)
    bin_dir = tmp_path / "task-bin"
    bin_dir.mkdir()
    tool(bin_dir / "tesp-hello", "#!/bin/sh\necho hello from $0\n")
    tool(bin_dir / "tesp-noexec", "#!/bin/sh\necho never\n", mode=0o644)
    path = f"{bin_dir}:/usr/bin:/bin"
    spec = job.spec(
        [
            {"command": ["tesp-hello"], "env": {"PATH": path}},
            {"command": ["tesp-noexec"], "env": {"PATH": path}, "ignore_error": True},
        ]
    )
    result = job.run(spec)
    logs = result["executor_logs"]
    assert (logs[0]["exit_code"], logs[0]["stdout"]) == (0, f"hello from {bin_dir}/tesp-hello\n")
    assert (logs[1]["exit_code"], logs[1]["stderr"]) == (126, "tesp-noexec: Permission denied\n")


def test_executor_gets_only_stdio_and_default_signals(tmp_path: Path, pyz: Path) -> None:
    # What Popen(close_fds=True, restore_signals=True) gave and more: an fd the worker
    # inherited is not passed on; SIGPIPE/SIGXFSZ (which Python ignores) and SIGINT/SIGQUIT/
    # SIGTERM (ignored here for the worker, as a shell does for background jobs) are back
    # to their defaults, as for a container's entrypoint.
    job = Job(tmp_path, "none", pyz)
    spec_path = tmp_path / "spec.json"
    script = "test -e /proc/self/fd/9 && echo leaked || echo closed; grep SigIgn /proc/self/status"
    spec_path.write_text(json.dumps(job.spec([sh(script)])))
    python, *rest = worker_command(sys.executable, str(pyz), str(spec_path), str(job.job_dir))
    wrapper = 'trap "" INT QUIT TERM; exec 9</dev/null; exec "$@"'  # fd 9 stays inheritable
    proc = subprocess.run(
        ["sh", "-c", wrapper, "sh", python, "-I", *rest], capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((job.job_dir / "result.json").read_text())
    first, sigign = result["executor_logs"][0]["stdout"].splitlines()
    assert first == "closed"
    mask = int(sigign.split()[1], 16)
    wanted = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM)
    assert [s.name for s in wanted if mask & (1 << (s - 1))] == [], sigign


def test_relative_path_entries_are_searched_from_the_workdir(tmp_path: Path, pyz: Path) -> None:
    job = Job(tmp_path, "none", pyz)
    tool_dir = tmp_path / "tools"
    tool_dir.mkdir()
    tool(tool_dir / "mytool", '#!/bin/sh\necho mytool ran "$@"\n')
    tool(tool_dir / "noshebang", "echo never\n")
    runs = [
        {"command": ["mytool", "z"], "workdir": str(tool_dir), "env": {"PATH": path}}
        for path in (".:/usr/bin:/bin", ":/usr/bin:/bin")
    ]
    noexec = {"command": ["./noshebang"], "workdir": str(tool_dir), "ignore_error": True}
    result = job.run(job.spec([*runs, noexec]))
    logs = [(log["exit_code"], log["stdout"] or log["stderr"]) for log in result["executor_logs"]]
    assert logs == [
        (0, "mytool ran z\n"),
        (0, "mytool ran z\n"),
        (126, "./noshebang: Exec format error\n"),
    ]


def test_file_url_outside_roots_is_system_error(job: Job) -> None:
    (job.store / "link").symlink_to("/etc/hostname")
    for url, name in (("file:///etc/hostname", "file:///etc/hostname"), (f"{job.store}/link", "")):
        inputs = [{"path": job.p("in/x"), "type": "FILE", "url": url}]
        result = job.run(job.spec([{"command": ["true"]}], inputs=inputs))
        assert result["state"] == "SYSTEM_ERROR", result
        assert result["executor_logs"] == []
        expected = f"input {job.p('in/x')}: file: {url}: path is outside the allowed file roots"
        assert result["system_logs"] == [expected], name


def test_file_urls_into_the_data_directory_are_refused_even_through_a_link(job: Job) -> None:
    # A file root may contain TESP's data directory (a root of "/", or "/srv" with the
    # data in /srv/tesp): its files stay out of reach, however the URL spells the path.
    data = job.store / "tesp-data"
    (data / "pulsar").mkdir(parents=True)
    (data / "pulsar" / "embedded.json").write_text('{"token": "s3cret"}')
    (job.store / "innocent").symlink_to(data)
    for url in (
        f"file://{data}/pulsar/embedded.json",
        f"{job.store}/innocent/pulsar/embedded.json",
    ):
        inputs = [{"path": job.p("in/x"), "type": "FILE", "url": url}]
        spec = job.spec([{"command": ["true"]}], inputs=inputs)
        spec["storage"]["file_denied"] = [str(data)]
        result = job.run(spec)
        assert result["state"] == "SYSTEM_ERROR", result
        assert result["system_logs"] == [
            f"input {job.p('in/x')}: file: {url}: path is in TESP's data directory"
        ]
    outputs = [{"path": job.p("o"), "type": "FILE", "url": f"file://{data}/pulsar/app.yml"}]
    spec = job.spec([sh(f"echo x > {job.p('o')}")], outputs=outputs)
    spec["storage"]["file_denied"] = [str(data)]
    result = job.run(spec)
    assert result["state"] == "SYSTEM_ERROR", result
    assert not (data / "pulsar" / "app.yml").exists()


def test_sigterm_cancels_and_kills_the_executor(job: Job) -> None:
    proc = job.start(job.spec([{"command": ["sleep", "987.25"]}, {"command": ["true"]}]))
    try:
        sleeper = _wait_for_process(["sleep", "987.25"])
        os.kill(proc.pid, signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    result = json.loads((job.job_dir / "result.json").read_text())
    assert result["state"] == "CANCELED"
    assert [log["exit_code"] for log in result["executor_logs"]] == [143]  # 128 + SIGTERM
    assert result["system_logs"] == ["canceled: the worker received SIGTERM"]
    with pytest.raises(psutil.NoSuchProcess):
        sleeper.status()  # a zombie would still answer: it must be gone, reaped


def test_sigterm_to_job_and_executor_at_once_keeps_the_exit_code(tmp_path: Path, pyz: Path) -> None:
    # A scheduler's time limit signals the whole job: the executor dies in the same instant
    # the worker is told to stop. Its exit code must still be the signal's (143), never 0.
    for trial in range(15):
        (tmp_path / str(trial)).mkdir()
        job = Job(tmp_path / str(trial), "none", pyz)
        marker = f"{900 + trial}.5"
        proc = job.start(job.spec([{"command": ["sleep", marker]}]))
        try:
            sleeper = _wait_for_process(["sleep", marker])
            sleeper.send_signal(signal.SIGTERM)
            os.kill(proc.pid, signal.SIGTERM)
            _out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err.decode()
        result = json.loads((job.job_dir / "result.json").read_text())
        codes = [log["exit_code"] for log in result["executor_logs"]]
        assert codes == [143], f"trial {trial}: {codes}"


def _wait_for_process(cmdline: list[str]) -> psutil.Process:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["cmdline"]):
            if proc.info["cmdline"] == cmdline:
                return proc
        time.sleep(0.05)
    raise AssertionError(f"{cmdline} never started")


@pytest.mark.skipif(not HAS_BWRAP, reason="no bwrap")
def test_bwrap_host_is_read_only_and_tmp_paths_are_bound(tmp_path: Path, pyz: Path) -> None:
    job = Job(tmp_path, "bwrap", pyz)
    tes_in, tes_out = f"/tmp/tesp-{tmp_path.name}/in.txt", f"/tmp/tesp-{tmp_path.name}/o/r.txt"
    inputs = [{"path": tes_in, "type": "FILE", "content": "tmp-in"}]
    outputs = [{"path": tes_out, "type": "FILE", "url": f"{job.store}/r.txt"}]
    script = f"touch /usr/tesp-x 2>/dev/null && echo writable; cat {tes_in} > {tes_out}; pwd"
    spec = job.spec([sh(script, workdir="/tesp-nowhere/wd")], inputs=inputs, outputs=outputs)
    result = job.run(spec)
    assert result["state"] == "COMPLETE", result
    assert result["executor_logs"][0]["stdout"] == "/tesp-nowhere/wd\n"
    assert (job.store / "r.txt").read_bytes() == b"tmp-in"
    assert not Path("/usr/tesp-x").exists()
    assert not Path(tes_in).exists()  # it lived in the job directory, not the host's /tmp


@pytest.mark.skipif(not HAS_BWRAP, reason="no bwrap")
def test_bwrap_executor_has_no_capabilities_to_lift_the_masks(tmp_path: Path, pyz: Path) -> None:
    # A worker running as root (CI does) must not hand root's capabilities on: with them
    # an executor could unmount the tmpfs over TESP's data and remount the host writable.
    secret_dir = tmp_path / "tesp-data"
    secret_dir.mkdir()
    (secret_dir / "token").write_text("s3cret")
    job = Job(tmp_path, "bwrap", pyz)
    script = (
        "grep CapEff /proc/self/status; "
        f"umount -l {secret_dir} 2>/dev/null; mount -o remount,rw / 2>/dev/null; "
        f"cat {secret_dir}/token 2>/dev/null || echo hidden; "
        f"touch /usr/tesp-cap-x 2>/dev/null && echo writable || echo read-only"
    )
    spec = job.spec([sh(script)])
    spec["runtime"]["hide"] = [str(secret_dir)]
    result = job.run(spec)
    assert result["executor_logs"][0]["stdout"] == "CapEff:\t0000000000000000\nhidden\nread-only\n"
    assert not Path("/usr/tesp-cap-x").exists()


@pytest.mark.skipif(not HAS_BWRAP, reason="no bwrap")
def test_a_sandbox_bwrap_cannot_build_is_a_system_error(tmp_path: Path, pyz: Path) -> None:
    # Not the executor's failure: bwrap stopped before running it (the TES path lies under
    # a host file).
    job = Job(tmp_path, "bwrap", pyz)
    result = job.run(job.spec([{"command": ["true"]}], volumes=["/etc/passwd/sub"]))
    assert (result["state"], result["executor_logs"]) == ("SYSTEM_ERROR", [])
    assert result["system_logs"] == [
        "executor 0: the bwrap sandbox could not be set up: "
        "bwrap: Can't mkdir parents for /etc/passwd/sub: Not a directory"
    ]


@pytest.mark.skipif(not HAS_BWRAP, reason="no bwrap")
def test_bwrap_binds_under_existing_host_directories(tmp_path: Path, pyz: Path) -> None:
    job = Job(tmp_path, "bwrap", pyz)
    opt_in = f"/opt/tesp-{tmp_path.name}/in.txt"  # /opt exists: it is rebuilt around the bind
    tmp_vol = f"/tmp/tesp-{tmp_path.name}"
    inputs = [{"path": opt_in, "type": "FILE", "content": "opt"}]
    before = sorted(os.listdir("/opt"))
    script = f"cat {opt_in}; ls /opt | grep -v '^tesp-' ; echo v > {tmp_vol}/v; cat {tmp_vol}/v"
    result = job.run(job.spec([sh(script)], inputs=inputs, volumes=[tmp_vol]))
    assert result["state"] == "COMPLETE", result
    assert result["executor_logs"][0]["stdout"] == "opt" + "".join(f"{n}\n" for n in before) + "v\n"
    assert sorted(os.listdir("/opt")) == before
    assert (job.job_dir / "root" / tmp_vol.lstrip("/") / "v").read_bytes() == b"v\n"


def test_zipapp_is_deterministic_cached_and_self_contained(tmp_path: Path) -> None:
    first = build_zipapp(tmp_path / "a")
    stamp = first.stat().st_mtime_ns
    assert build_zipapp(tmp_path / "a").stat().st_mtime_ns == stamp  # cached
    assert build_zipapp(tmp_path / "b").read_bytes() == first.read_bytes()
    names = zipfile.ZipFile(first).namelist()
    assert names[:3] == ["__main__.py", "tesp_core/__init__.py", "tesp_core/__init__.pyc"]
    assert all(n.startswith(("tesp_core/worker/", "tesp_core/storage/")) for n in names[3:])
    # Every module ships with its bytecode (zipimport never caches a compile).
    sources = {n for n in names[1:] if n.endswith(".py")}
    assert {n + "c" for n in sources} == {n for n in names if n.endswith(".pyc")}
    assert first.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    usage = subprocess.run(
        [sys.executable, "-I", "-S", str(first)], capture_output=True, check=False
    )
    assert (usage.returncode, usage.stderr) == (
        2,
        b"usage: python3 tesp-worker.pyz SPEC_JSON JOB_DIR\n",
    )


def test_a_job_pulsar_is_cancelling_starts_no_further_executor(tmp_path: Path, pyz: Path) -> None:
    # Pulsar writes <job>/cancelled, then SIGKILLs the processes it listed: an executor the
    # worker spawned after that listing would outlive the job, so none is started.
    job = Job(tmp_path, "none", pyz)
    job.job_dir = tmp_path / "pulsar-job" / "working"
    job.job_dir.parent.mkdir()
    record = job.job_dir.parent / "cancelled"
    marker = tmp_path / "second-ran"
    spec = job.spec([sh(f"echo first; sleep 0.5; : > {record}"), sh(f"touch {marker}")])
    result = job.run(spec)
    assert result["state"] == "CANCELED"
    assert [(log["exit_code"], log["stdout"]) for log in result["executor_logs"]] == [
        (0, "first\n")
    ]
    assert result["system_logs"] == ["canceled: Pulsar cancelled the job"]
    assert not marker.exists()


def test_a_job_cancelled_before_its_worker_started_runs_nothing(tmp_path: Path, pyz: Path) -> None:
    # Pulsar can start a job it was just told to cancel: its record is already there.
    job = Job(tmp_path, "none", pyz)
    job.job_dir = tmp_path / "pulsar-job" / "working"
    job.job_dir.mkdir(parents=True)
    (job.job_dir.parent / "cancelled").write_text("true")
    marker = tmp_path / "ran"
    result = job.run(job.spec([sh(f"touch {marker}")]))
    assert (result["state"], result["executor_logs"]) == ("CANCELED", [])
    assert result["system_logs"] == ["canceled: Pulsar cancelled the job"]
    assert not marker.exists()


def test_a_worker_whose_job_was_cleaned_away_does_nothing(tmp_path: Path, pyz: Path) -> None:
    job = Job(tmp_path, "none", pyz)
    marker = tmp_path / "ran"
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(job.spec([sh(f"touch {marker}")])))
    working = tmp_path / "gone" / "working"  # the job directory (its parent) is gone
    python, *rest = worker_command(sys.executable, str(pyz), str(spec_path), str(working))
    proc = subprocess.run([python, "-I", *rest], capture_output=True, timeout=60, check=False)
    assert (proc.returncode, proc.stderr.decode().strip()) == (
        1,
        f"tesp-worker: {tmp_path / 'gone'} does not exist",
    )
    assert not marker.exists() and not working.exists()
