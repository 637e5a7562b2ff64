"""Property-based fuzzing of the live API from its own OpenAPI document.

Every operation of /openapi.json is driven with schema-generated requests. Positive mode (valid
per the schema): the server must answer a declared status with a body of the declared schema and
media type. Negative mode, for the four POSTs with a body: invalid bodies must still get a
declared 4xx, never a 500 (/admin/reload has no body to make invalid). Checks:
`not_a_server_error`, `status_code_conformance`, `response_schema_conformance`,
`content_type_conformance`. Seeded, no example database: the same cases every run.

The server runs with an API key and the campaigns file, so /v1/events, /openrtb2/bid and the
win notice do real work: most cases carry the key; half the generated event batches are pointed
at a campaign of the file with a time the service accepts, and half the win notices carry the
signed parameters of a real bid with only the price generated (else nearly every event would
stop at 404 or 422, and every win notice at 403).

Each operation is driven with plain Hypothesis (`operation.as_strategy()`): schemathesis'
pytest plugin (`from_fixture`) does not run under pytest 9 (AttributeError on `_nodeid`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
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

from tests.helpers.serving import API_KEY, run_server
from tests.serving.campaign_files import CAMPAIGNS

pytestmark = pytest.mark.integration

SEED = 20_261_201
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
POSTS = ("POST /v1/predict", "POST /v1/bid", "POST /v1/events", "POST /openrtb2/bid")
POST_EXAMPLES = 200  # positive cases per POST; plus NEGATIVE_EXAMPLES invalid ones
NEGATIVE_EXAMPLES = 100
EXAMPLES = {"POST /admin/reload": 100, "GET /v1/win": 150}
GET_EXAMPLES = 10  # the other GETs take no input: Hypothesis stops once it has tried it
KEYED_SHARE = 9  # of 10 cases carry the API key
AIMED_SHARE = 5  # of 10 event batches and win notices are aimed at real campaigns and bids
CAMPAIGN_IDS = ("web-cpm", "video-cpm", "native-cpc", "small-budget", "capped")
NOTICES = 20  # real signed win notices, fuzzed on their price
# a web banner the campaigns file bids on (web-cpm's 320x50 creative)
ORTB_REQUEST = {
    "imp": [{"id": "1", "banner": {"w": 320, "h": 50}}],
    "site": {"domain": "test.example", "page": "https://test.example/a"},
    "device": {"ua": "Mozilla/5.0"},
}


def examples_for(label: str, mode: GenerationMode) -> int:
    if mode is GenerationMode.NEGATIVE:
        return NEGATIVE_EXAMPLES
    return POST_EXAMPLES if label in POSTS else EXAMPLES.get(label, GET_EXAMPLES)


Aim = Callable[[schemathesis.Case, st.DataObject], None]


def aim_events(case: schemathesis.Case, data: st.DataObject) -> None:
    """Point every event at one campaign of the file, dated up to an hour ago (both still valid
    per the schema), so the batch gets past 404 and the time check."""
    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        return
    campaign = data.draw(st.sampled_from(CAMPAIGN_IDS))
    ago = timedelta(seconds=data.draw(st.integers(0, 3600)))
    for event in body["events"]:
        if isinstance(event, dict):
            event["campaign_id"] = campaign
            event["time"] = (datetime.now(UTC) - ago).isoformat()


def signed_notices(base_url: str, count: int) -> list[dict[str, str]]:
    """The query of `count` real win notices (nurls of bids the server made), price left out."""
    notices = []
    with httpx.Client(base_url=base_url, timeout=30) as c:
        for i in range(count):
            r = c.post("/openrtb2/bid", json={**ORTB_REQUEST, "id": f"fuzz-{i}"})
            assert r.status_code == 200, (r.status_code, r.text)
            nurl = r.json()["seatbid"][0]["bid"][0]["nurl"]
            query = dict(parse_qsl(urlsplit(nurl).query, keep_blank_values=True))
            assert query.pop("price") == "${AUCTION_PRICE}", nurl
            notices.append(query)
    return notices


def aim_wins(notices: list[dict[str, str]]) -> Aim:
    """Send a generated price (and nothing else generated) on a real signed notice: the win
    path then books spend, refuses prices above the bid and counts replays as duplicates."""

    def aim(case: schemathesis.Case, data: st.DataObject) -> None:
        if isinstance(case.query, dict):
            case.query.update(data.draw(st.sampled_from(notices)))

    return aim


def fuzz(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    aim: Aim | None,
    cases: Counter[str],
    statuses: Counter[int],
    tag: str,
) -> None:
    """Run one operation's cases in one generation mode; raises the first failure found."""

    @seed(SEED)
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @settings(
        max_examples=examples_for(operation.label, mode),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: schemathesis.Case, data: st.DataObject) -> None:
        if aim is not None and data.draw(st.integers(0, 9), label="aimed") < AIMED_SHARE:
            aim(case, data)
        keyed = data.draw(st.integers(0, 9), label="keyed") < KEYED_SHARE
        headers = {"X-API-Key": API_KEY} if keyed else None
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
        aims: dict[str, Aim] = {
            "POST /v1/events": aim_events,
            "GET /v1/win": aim_wins(signed_notices(server.base_url, NOTICES)),
        }
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
                    fuzz(
                        operation,
                        mode,
                        server.base_url,
                        aims.get(label),
                        cases,
                        statuses[label],
                        tag,
                    )
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
        assert statuses["GET /v1/win"][200] >= 5, statuses["GET /v1/win"]
