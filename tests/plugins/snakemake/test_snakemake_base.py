"""Snakemake's own executor-plugin test base, run with ``--executor tesp`` on a real TESP."""

from __future__ import annotations

import pytest
from snakemake.common.tests import TestWorkflowsLocalStorageBase
from snakemake_executor_plugin_tesp import ExecutorSettings

from tests.conftest import TespProcess


class TestTespSharedFs(TestWorkflowsLocalStorageBase):
    """The ``simple`` and ``groups`` workflows against ``tesp serve`` (runtime ``none``)."""

    __test__ = True
    server: TespProcess

    @pytest.fixture(autouse=True)
    def _server(self, tesp_host_server: TespProcess) -> None:
        self.server = tesp_host_server

    def get_executor(self) -> str:
        return "tesp"

    def get_executor_settings(self) -> ExecutorSettings:
        return ExecutorSettings(url=self.server.url)
