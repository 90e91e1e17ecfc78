"""Pure parts of the runner, and Galaxy's job configuration loader picking it up."""

from __future__ import annotations

from pathlib import Path

import pytest
from tesp_galaxy.client import report_from_dict
from tesp_galaxy.params import ParamsError, StagingMode, parse_params
from tesp_galaxy.task import GalaxyJob, build_task, extra_files_path, file_url

JOB = GalaxyJob(
    galaxy_id="7",
    name="g7_cat1",
    job_script="/g/jobs/7/galaxy_7.sh",
    working_directory="/g/jobs/7",
    stdout_file="/g/jobs/7/galaxy_7.o",
    stderr_file="/g/jobs/7/galaxy_7.e",
    input_paths=("/g/objects/a b.dat", "/g/jobs/7/working/inside.txt", "/g/objects/x_files/i"),
    input_directories=("/g/objects/x_files",),
    output_paths=("/g/objects/out.dat", "/g/objects/new.dat"),
    existing_output_paths=("/g/objects/out.dat",),
    tool_id="cat1",
    tool_directory="/g/tools/cat",
)


def test_params_parse_types_and_reject_unknown_keys() -> None:
    dest = parse_params(
        {"tes_url": "http://tes", "cpu_cores": "4", "ram_gb": 2, "staging": "TES",
         "backend_parameters": '{"queue": "long"}', "embed_metadata_in_job": "false"}
    )  # fmt: skip
    assert (dest.cpu_cores, dest.ram_gb, dest.staging) == (4, 2.0, StagingMode.TES)
    assert dest.backend_parameters == {"queue": "long"}
    assert dest.embed_metadata_in_job is False and dest.metadata_in_job is False
    assert parse_params({"tes_url": "http://t"}).metadata_in_job is True
    assert parse_params({"tes_url": "http://t", "staging": "tes"}).metadata_in_job is False
    staged = parse_params({"tes_url": "http://t", "staging": "tes", "embed_metadata_in_job": 1})
    assert staged.metadata_in_job is True
    with pytest.raises(ParamsError, match="cpu_corez"):
        parse_params({"tes_url": "http://tes", "cpu_corez": 1})
    with pytest.raises(ParamsError, match="tes_url"):
        parse_params({"cpu_cores": 1})
    with pytest.raises(ParamsError, match="at least 1"):
        parse_params({"tes_url": "http://tes", "cpu_cores": 0})
    assert "secret" not in repr(parse_params({"tes_url": "http://t", "tes_token": "secret"}))


def test_shared_mode_task_runs_galaxys_script_in_place() -> None:
    task = build_task(JOB, parse_params({"tes_url": "http://t", "cpu_cores": 2}))
    (executor,) = task["executors"]
    assert executor["command"] == ["/bin/bash", "/g/jobs/7/galaxy_7.sh"]
    assert executor["stdout"] == "/g/jobs/7/galaxy_7.o"
    assert executor["workdir"] == "/g/jobs/7"
    assert task["resources"] == {"cpu_cores": 2}
    assert task["tags"] == {"galaxy_job_id": "7", "galaxy_tool_id": "cat1"}
    assert "inputs" not in task and "outputs" not in task


def test_staging_mode_moves_job_directory_and_datasets_through_tes() -> None:
    task = build_task(JOB, parse_params({"tes_url": "http://t", "staging": "tes"}))
    assert task["inputs"] == [
        {"name": "galaxy_job_directory", "url": "file:///g/jobs/7", "path": "/g/jobs/7",
         "type": "DIRECTORY"},
        {"name": "galaxy_tool_directory", "url": "file:///g/tools/cat", "path": "/g/tools/cat",
         "type": "DIRECTORY"},
        {"url": "file:///g/objects/x_files", "path": "/g/objects/x_files", "type": "DIRECTORY"},
        {"url": "file:///g/objects/a%20b.dat", "path": "/g/objects/a b.dat", "type": "FILE"},
        {"url": "file:///g/objects/out.dat", "path": "/g/objects/out.dat", "type": "FILE"},
    ]  # fmt: skip
    assert task["outputs"] == [
        {"name": "galaxy_job_directory", "url": "file:///g/jobs/7", "path": "/g/jobs/7",
         "type": "DIRECTORY"},
        {"url": "file:///g/objects/new.dat", "path": "/g/objects/new.dat", "type": "FILE"},
        {"url": "file:///g/objects", "path": "/g/objects/new_file[s]",
         "path_prefix": "/g/objects/", "type": "DIRECTORY"},
        {"url": "file:///g/objects/out.dat", "path": "/g/objects/out.dat", "type": "FILE"},
        {"url": "file:///g/objects", "path": "/g/objects/out_file[s]",
         "path_prefix": "/g/objects/", "type": "DIRECTORY"},
    ]  # fmt: skip
    no_tool_dir = parse_params({"tes_url": "t", "staging": "tes", "stage_tool_directory": "no"})
    assert "/g/tools/cat" not in [i["path"] for i in build_task(JOB, no_tool_dir)["inputs"]]
    assert extra_files_path("/o/dataset_1.dat") == "/o/dataset_1_files"
    assert extra_files_path("/o/x.txt") is None
    with pytest.raises(ValueError):
        file_url("relative")


def test_report_joins_executor_logs_and_system_logs() -> None:
    report = report_from_dict(
        {"id": "t1", "state": "SYSTEM_ERROR",
         "logs": [{"logs": [{"exit_code": 1, "stdout": "o", "stderr": "e"}],
                   "system_logs": ["staging failed: /x"]}]}
    )  # fmt: skip
    assert report.is_terminal and report.exit_codes == (1,)
    assert (report.stdout, report.stderr, report.system_logs) == ("o", "e", ("staging failed: /x",))


def test_galaxys_job_configuration_loads_the_runner(tmp_path: Path) -> None:
    from galaxy.app_unittest_utils.galaxy_mock import MockApp
    from galaxy.job_metrics import JobMetrics
    from galaxy.jobs import JobConfiguration
    from tesp_galaxy.runner import TESPJobRunner

    conf = tmp_path / "job_conf.yml"
    conf.write_text(
        "runners:\n  tesp:\n    load: tesp_galaxy.runner:TESPJobRunner\n    workers: 1\n"
        "    tes_url: http://127.0.0.1:9\n"
        "execution:\n  default: tes\n  environments:\n"
        "    tes: {runner: tesp, cpu_cores: 3, staging: tes}\n"
    )
    # MockApp: Galaxy's own test app (real model on in-memory SQLite, mock config).
    app = MockApp(
        job_config_file=str(conf),
        default_job_resubmission_condition=None,
        job_resource_params_file=str(tmp_path / "none.xml"),
        use_tasked_jobs=False,
    )
    app.job_metrics = JobMetrics()  # MockApp has none; the real one, with no plugins
    job_config = JobConfiguration(app)
    runners = job_config.get_job_runner_plugins("main")
    runner = runners["tesp"]
    assert isinstance(runner, TESPJobRunner)
    dest = job_config.get_destination("tes")
    parsed = runner.parse_destination_params(dest.params)
    assert (parsed.tes_url, parsed.cpu_cores, parsed.staging) == (
        "http://127.0.0.1:9",
        3,
        StagingMode.TES,
    )
