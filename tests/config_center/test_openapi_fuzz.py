"""Schemathesis against the config center's own OpenAPI description: no 5xx, no schema breach.

The config center runs as a real process (SQLite), and every operation gets a bounded number of
generated requests, authenticated as admin, so the handlers (not just the 401 path) are fuzzed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.helpers import free_port, start_config_center

ADMIN_TOKEN = "fuzz-admin-token-0123456789"
EXAMPLES = 30  # per operation; bounded so the suite stays fast


@pytest.fixture(scope="module")
def center_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    env = {
        "AIGW_DATABASE_URL": f"sqlite:///{tmp}/fuzz.db",
        "AIGW_MASTER_KEY": "fuzz-master-key",
        "AIGW_ADMIN_TOKEN": ADMIN_TOKEN,
        "AIGW_GATEWAY_TOKEN": "fuzz-gateway-token-0123456789",
    }
    process = start_config_center(tmp, port, env)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.fixture(scope="module")
def api_schema(center_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{center_url}/openapi.json")


def test_no_server_error_and_responses_match_the_schema(
    api_schema: schemathesis.BaseSchema,
) -> None:
    # Driven with Hypothesis directly: schemathesis' pytest plugin does not support pytest 9 yet.
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 30, "the OpenAPI description lost its operations"
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
            )

        try:
            fuzz()
        except Exception as exc:  # collect every operation's failure, not just the first
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
