"""Property-based fuzzing of the live API from its own OpenAPI document.

No generated input may produce a server error, an undeclared status code, or a response that
breaks the declared schema. Examples are bounded so the run stays near a minute.

Each operation is driven with plain Hypothesis (`operation.as_strategy()`): schemathesis'
pytest plugin (`from_fixture`) does not run under pytest 9 (AttributeError on `_nodeid`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.serving.conftest import run_server

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
MAX_EXAMPLES = {"POST /v1/predict": 80, "POST /v1/bid": 80, "POST /admin/reload": 20}
DEFAULT_EXAMPLES = 10


def test_api_conforms_to_its_schema(
    serving_store: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    uri, _ = serving_store
    with run_server(uri, tmp_path_factory.mktemp("fuzz")) as server:
        schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
        failures: dict[str, str] = {}
        labels = []
        for result in schema.get_all_operations():
            operation = result.ok()
            labels.append(operation.label)

            @given(case=operation.as_strategy())
            @settings(
                max_examples=MAX_EXAMPLES.get(operation.label, DEFAULT_EXAMPLES),
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate(base_url=server.base_url, checks=CHECKS)

            try:
                run()
            except Exception as e:  # collect every operation's failure, then report them all
                failures[operation.label] = f"{type(e).__name__}: {e}"
        assert set(MAX_EXAMPLES) <= set(labels)
        assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
        assert "Traceback" not in server.log()
        metrics = server.client.get("/metrics").text
        bid_calls = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith('bidopt_requests_total{endpoint="/v1/bid"')
        ]
        assert sum(bid_calls) >= 40  # the fuzzer really talked to the server
