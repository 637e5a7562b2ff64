"""Property-based fuzzing of the live API from its own OpenAPI document.

Every operation of /openapi.json is driven with schema-generated requests. Positive mode (valid
per the schema): the server must answer a declared status with a body of the declared schema and
media type. Negative mode, for the four POSTs with a body: invalid bodies must still get a
declared 4xx, never a 500 (/admin/reload has no body to make invalid). Checks:
`not_a_server_error`, `status_code_conformance`, `response_schema_conformance`,
`content_type_conformance`. Seeded, no example database: the same cases every run.

The server runs with an API key and the campaigns file, so /v1/events and /openrtb2/bid do real
work: most cases carry the key, and half the generated event batches are pointed at a campaign
of the file with a time the service accepts, else nearly all would stop at 404 or 422.

Each operation is driven with plain Hypothesis (`operation.as_strategy()`): schemathesis'
pytest plugin (`from_fixture`) does not run under pytest 9 (AttributeError on `_nodeid`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.serving.campaign_files import CAMPAIGNS
from tests.serving.conftest import API_KEY, run_server

pytestmark = pytest.mark.integration

SEED = 20_261_201
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
POSTS = ("POST /v1/predict", "POST /v1/bid", "POST /v1/events", "POST /openrtb2/bid")
POST_EXAMPLES = 150  # positive cases per POST; plus NEGATIVE_EXAMPLES invalid ones
NEGATIVE_EXAMPLES = 60
EXAMPLES = {"POST /admin/reload": 100, "GET /v1/win": 100}
GET_EXAMPLES = 10  # the other GETs take no input: Hypothesis stops once it has tried it
KEYED_SHARE = 9  # of 10 cases carry the API key
CAMPAIGN_IDS = ("web-cpm", "video-cpm", "native-cpc", "small-budget", "capped")


def examples_for(label: str, mode: GenerationMode) -> int:
    if mode is GenerationMode.NEGATIVE:
        return NEGATIVE_EXAMPLES
    return POST_EXAMPLES if label in POSTS else EXAMPLES.get(label, GET_EXAMPLES)


def aim_events(case: schemathesis.Case, campaign: str, ago_s: int) -> None:
    """Point every event at a campaign of the file, dated `ago_s` seconds ago (both still
    valid per the schema), so the batch gets past 404 and the time check."""
    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        return
    when = (datetime.now(UTC) - timedelta(seconds=ago_s)).isoformat()
    for event in body["events"]:
        if isinstance(event, dict):
            event["campaign_id"] = campaign
            event["time"] = when


def fuzz(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    cases: Counter[str],
    statuses: Counter[int],
    tag: str,
) -> None:
    """Run one operation's cases in one generation mode; raises the first failure found."""
    label = operation.label

    @seed(SEED)
    @given(
        case=operation.as_strategy(generation_mode=mode),
        keyed=st.integers(0, 9),
        aimed=st.booleans(),
        campaign=st.sampled_from(CAMPAIGN_IDS),
        ago_s=st.integers(0, 3600),
    )
    @settings(
        max_examples=examples_for(label, mode),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: schemathesis.Case, keyed: int, aimed: bool, campaign: str, ago_s: int) -> None:
        if aimed and label == "POST /v1/events":
            aim_events(case, campaign, ago_s)
        headers = {"X-API-Key": API_KEY} if keyed < KEYED_SHARE else None
        response = case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)
        cases[tag] += 1
        statuses[response.status_code] += 1

    run()


def test_api_conforms_to_its_schema(
    serving_store: tuple[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
    record_property: Callable[[str, object], None],
) -> None:
    uri, _ = serving_store
    workdir = tmp_path_factory.mktemp("fuzz")
    campaigns = workdir / "campaigns.toml"
    campaigns.write_text(CAMPAIGNS)
    with run_server(uri, workdir, args=("--campaigns", str(campaigns))) as server:
        schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
        failures: dict[str, str] = {}
        cases: Counter[str] = Counter()
        statuses: dict[str, Counter[int]] = {}
        for result in schema.get_all_operations():
            operation = result.ok()
            label = operation.label
            statuses[label] = Counter()
            modes = [GenerationMode.POSITIVE]
            if label in POSTS:  # /admin/reload has no body: nothing to make invalid
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                tag = f"{label} [{mode.value}]"
                try:
                    fuzz(operation, mode, server.base_url, cases, statuses[label], tag)
                except Exception as e:  # collect every operation's failure, then report them all
                    failures[tag] = f"{type(e).__name__}: {e}"

        lines = [
            f"{tag}: {n} cases" + (f", FAILED: {failures[tag][:200]}" if tag in failures else "")
            for tag, n in sorted(cases.items())
        ]
        lines += [f"{label} statuses: {dict(sorted(c.items()))}" for label, c in statuses.items()]
        summary = (
            f"schemathesis: {len(statuses)} operations, {sum(cases.values())} cases, "
            f"{len(failures)} failures\n" + "\n".join(lines)
        )
        print(summary)
        record_property("schemathesis", summary)

        assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
        assert set(POSTS) | set(EXAMPLES) <= set(statuses), sorted(statuses)
        for label in statuses:
            # every operation really ran, and every POST got its full count of cases
            assert cases[f"{label} [positive]"] >= 1, label
            if label in POSTS:
                assert cases[f"{label} [positive]"] >= POST_EXAMPLES, label
                assert cases[f"{label} [negative]"] >= NEGATIVE_EXAMPLES, label
        assert "Traceback" not in server.log()
        # the fuzz did real work, beyond validation errors
        assert statuses["POST /v1/bid"][200] >= 10, statuses["POST /v1/bid"]
        assert statuses["POST /v1/predict"][200] >= 10, statuses["POST /v1/predict"]
        assert statuses["POST /v1/events"][200] >= 5, statuses["POST /v1/events"]
        assert statuses["POST /openrtb2/bid"][200] + statuses["POST /openrtb2/bid"][204] >= 10
