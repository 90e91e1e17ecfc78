"""No shared filesystem: Snakemake's S3 storage plugin moves every file through moto's S3.

``--shared-fs-usage none``: the job's TES task runs in a Pulsar job directory of its own,
not in the workflow directory. Snakemake uploads a source archive to the default storage
prefix; each job's command deploys it (``snakemake --deploy-sources``), fetches its inputs
from S3 and stores its outputs there. The S3 endpoint and keys are the storage plugin's
``env_var`` settings, so they reach the task in its executor ``env``, never on the
command line. The jobs run on the host (runtime ``none``), where ``python`` must be the
venv's: ``--envvars PATH`` hands the test's PATH to every task.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import TespProcess
from tests.plugins.snakemake.test_snakemake_cli import run_tasks, snakemake, workflow
from tests.servers import S3_KEY_ID, S3_SECRET

S3_WORKFLOW = """
rule all:
    input: "out/report.txt"

rule shout:
    input: "in/words.txt"
    output: "out/upper.txt"
    shell: "tr a-z A-Z < {input} > {output}"

rule report:
    input: "out/upper.txt"
    output: "out/report.txt"
    shell: "wc -l < {input} | tr -d ' ' > {output}; cat {input} >> {output}"
"""

WORDS = "alpha\nbeta\ngamma\n"


@pytest.fixture
def bucket(moto_endpoint: str) -> Iterator[tuple[Any, str]]:
    """A fresh bucket on the session's moto server, and a client to inspect it."""
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
    )
    name = f"smk-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    yield client, name
    for item in client.list_objects_v2(Bucket=name).get("Contents", []):
        client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)


def test_no_shared_fs_moves_files_through_s3(
    tmp_path: Path,
    tesp_host_server: TespProcess,
    moto_endpoint: str,
    bucket: tuple[Any, str],
) -> None:
    s3, name = bucket
    s3.put_object(Bucket=name, Key="wf/in/words.txt", Body=WORDS.encode())
    wd = workflow(tmp_path, S3_WORKFLOW)
    venv_bin = str(Path(sys.executable).parent)
    done = snakemake(
        wd,
        "--tesp-url",
        tesp_host_server.url,
        "--shared-fs-usage",
        "none",
        "--default-storage-provider",
        "s3",
        "--default-storage-prefix",
        f"s3://{name}/wf",
        "--storage-s3-endpoint-url",
        moto_endpoint,
        "--envvars",
        "PATH",
        env={
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "SNAKEMAKE_STORAGE_S3_ACCESS_KEY": S3_KEY_ID,
            "SNAKEMAKE_STORAGE_S3_SECRET_KEY": S3_SECRET,
        },
    )
    assert done.returncode == 0, done.stderr[-4000:]

    def body(key: str) -> str:
        answer = s3.get_object(Bucket=name, Key=key)
        return str(answer["Body"].read().decode())

    listing = s3.list_objects_v2(Bucket=name)
    # The source archive was removed at the end of the run; only data is left.
    assert sorted(o["Key"] for o in listing["Contents"]) == [
        "wf/in/words.txt",
        "wf/out/report.txt",
        "wf/out/upper.txt",
    ]
    assert body("wf/out/upper.txt") == WORDS.upper()
    assert body("wf/out/report.txt") == "3\n" + WORDS.upper()
    # Nothing was written to the workflow directory: the files live in S3 only.
    assert not (wd / "out").exists()
    assert not (wd / "in").exists()

    tasks = run_tasks(tesp_host_server.api, snakemake_workflow=wd.name)
    assert sorted(t["tags"]["snakemake_rule"] for t in tasks) == ["report", "shout"]
    assert {t["state"] for t in tasks} == {"COMPLETE"}
    for task in tasks:
        (executor,) = task["executors"]
        assert "workdir" not in executor
        command = executor["command"][2]
        assert command.startswith("python -m snakemake --deploy-sources s3://")
        assert "--shared-fs-usage 'none'" in command
        assert S3_SECRET not in command
        env = executor["env"]
        assert env["SNAKEMAKE_STORAGE_S3_ENDPOINT_URL"] == moto_endpoint
        # The keys reached the job (it read and wrote S3) but every view shows them masked.
        assert env["SNAKEMAKE_STORAGE_S3_ACCESS_KEY"] == "***"
        assert env["SNAKEMAKE_STORAGE_S3_SECRET_KEY"] == "***"
        assert S3_SECRET not in json.dumps(task)
        assert env["PATH"].split(os.pathsep)[0] == venv_bin
