"""The pure job -> TES task translation."""

from __future__ import annotations

from tesp_cwl.paths import EMPTY_DIRS_MANIFEST
from tesp_cwl.task import (
    MAX_INLINE_CONTENT,
    JobSpec,
    Staged,
    build_task,
    location_url,
    plan_staging,
    tes_resources,
)


def test_location_url() -> None:
    assert location_url("/data/a b.txt") == "file:///data/a%20b.txt"
    assert location_url("https://example.org/x") == "https://example.org/x"
    assert location_url("s3://bucket/key") == "s3://bucket/key"


def test_plan_staging_kinds() -> None:
    spilled: list[str] = []

    def spill(target: str, text: str) -> str:
        spilled.append(target)
        return "file:///spill" + target

    plan = plan_staging(
        [
            Staged("/host/a.txt", "/cwl/inputs/s1/a.txt", "File"),
            Staged("/host/a.txt", "/cwl/inputs/s1/a.txt", "File"),  # duplicates are dropped
            Staged("/host/d", "/cwl/inputs/s2/d", "WritableDirectory"),
            Staged("_:literal-dir", "/cwl/outdir/empty", "Directory"),
            Staged("hello", "/cwl/outdir/hello.txt", "CreateFile"),
            Staged("x" * (MAX_INLINE_CONTENT + 1), "/cwl/outdir/big", "CreateWritableFile"),
            Staged("http://h/f", "/cwl/inputs/s3/f", "File"),
        ],
        content_of=str.upper,
        spill=spill,
    )
    assert plan.inputs == [
        {"path": "/cwl/inputs/s1/a.txt", "type": "FILE", "url": "file:///host/a.txt"},
        {"path": "/cwl/inputs/s2/d", "type": "DIRECTORY", "url": "file:///host/d"},
        {"path": "/cwl/outdir/hello.txt", "type": "FILE", "content": "HELLO"},
        {"path": "/cwl/outdir/big", "type": "FILE", "url": "file:///spill/cwl/outdir/big"},
        {"path": "/cwl/inputs/s3/f", "type": "FILE", "url": "http://h/f"},
    ]
    assert plan.volumes == ["/cwl/outdir/empty"]
    assert spilled == ["/cwl/outdir/big"]


def test_resources() -> None:
    assert tes_resources({"cores": 1.5, "ram": 2048, "tmpdirSize": 1024, "outdirSize": 512}) == {
        "cpu_cores": 2,
        "ram_gb": 2.0,
        "disk_gb": 1.5,
    }
    assert tes_resources({}) == {}


def test_build_task() -> None:
    plan = plan_staging([], content_of=str, spill=lambda t, x: t)
    task = build_task(
        JobSpec(
            name="job",
            image="alpine",
            command=["cat"],
            outdir="/cwl/outdir",
            tmpdir="/cwl/tmp",
            outdir_url="file:///host/out",
            env={"HOME": "/cwl/outdir"},
            staging=plan,
            resources={"cores": 1},
            stdin="/cwl/inputs/s/in.txt",
            stdout="sub/out.txt",
            stderr="err.txt",
        )
    )
    tool, listing = task["executors"]
    assert tool["ignore_error"] is True
    assert tool["workdir"] == "/cwl/outdir"
    assert tool["stdin"] == "/cwl/inputs/s/in.txt"
    assert tool["stdout"] == "/cwl/outdir/sub/out.txt"
    assert tool["stderr"] == "/cwl/outdir/err.txt"
    assert listing["command"][-1] == f"/cwl/outdir/{EMPTY_DIRS_MANIFEST}"
    assert task["outputs"] == [
        {"path": "/cwl/outdir", "url": "file:///host/out", "type": "DIRECTORY"}
    ]
    assert task["volumes"] == ["/cwl/tmp"]
    assert task["resources"] == {"cpu_cores": 1}


def test_public_api() -> None:
    import tesp_cwl

    for name in tesp_cwl.__all__:
        assert hasattr(tesp_cwl, name), name
