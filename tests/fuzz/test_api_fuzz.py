"""Property-based fuzzing of the HTTP API from the TES 1.1 OpenAPI document (schemathesis).

The schema is the spec as published, with two readings its own text makes explicit: the
MINIMAL view carries only ``id`` and ``state`` (so ``executors`` is not required in a task
response), and errors answer 400/401/403/404 with a JSON body (the spec documents only 200).
Every response must then be valid against the schema and no request may cause a 5xx.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi import checks

from tests.conftest import TespProcess

SPEC = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "spec"
    / "tes-1.1.local-refs.openapi.yaml"
)


class _Loader(yaml.SafeLoader):
    """YAML without implicit timestamps: the spec's examples stay the strings they are."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _schema_dict() -> dict[str, Any]:
    spec = yaml.load(SPEC.read_text(), Loader=_Loader)
    task = spec["components"]["schemas"]["tesTask"]
    task["required"] = [r for r in task.get("required", []) if r != "executors"]
    error = {
        "description": "error",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["msg"],
                    "properties": {
                        "msg": {"type": "string"},
                        "field": {"type": "string"},
                        "status_code": {"type": "integer"},
                    },
                }
            }
        },
    }
    for path in spec["paths"].values():
        for operation in path.values():
            if isinstance(operation, dict) and "responses" in operation:
                for code in ("400", "401", "403", "404"):
                    operation["responses"].setdefault(code, error)
    return spec


schema = schemathesis.openapi.from_dict(_schema_dict())


@pytest.fixture(scope="module")
def api(tesp_server: TespProcess) -> str:
    return tesp_server.api


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_answers_within_the_spec(case: schemathesis.Case, api: str) -> None:
    case.call_and_validate(
        base_url=api,
        excluded_checks=[
            # TESP rejects more than the schema does (e.g. zero executors, relative paths,
            # unsupported URL schemes), as the spec's prose requires.
            checks.positive_data_acceptance,
            # TESP reads an explicit null in an optional field as "absent" (clients send
            # them), and an empty query parameter as "no filter"; both are deliberate.
            checks.negative_data_rejection,
        ],
    )
