"""TES 1.1 data models (pure data: this package imports nothing else of TESP)."""

from tesp_core.models.service_info import Organization, ServiceInfo, ServiceType
from tesp_core.models.task import (
    TERMINAL_STATES,
    CancelTaskResponse,
    CreateTaskResponse,
    Executor,
    ExecutorLog,
    FileType,
    Input,
    ListTasksResponse,
    Output,
    OutputFileLog,
    Resources,
    State,
    Task,
    TaskLog,
)
from tesp_core.models.views import View, render

__all__ = [
    "TERMINAL_STATES",
    "CancelTaskResponse",
    "CreateTaskResponse",
    "Executor",
    "ExecutorLog",
    "FileType",
    "Input",
    "ListTasksResponse",
    "Organization",
    "Output",
    "OutputFileLog",
    "Resources",
    "ServiceInfo",
    "ServiceType",
    "State",
    "Task",
    "TaskLog",
    "View",
    "render",
]
