"""Parity: `/v1/bid` on the live service and the replay simulator price an impression the same.

Inline campaigns always bid by value, so the strategies come from a campaigns file: one
campaign per strategy (value, linear, ortb1, lagrangian) with fixed parameters, each asked for
alone (`campaign_ids`), so the price on the wire is that strategy's price. The service's
pCTR/pCVR come back in the response; the replay side turns them into values with the same goal
(`bidding.replay.log_values`) and prices the whole set in one call of the replay's own bid
path (`bidding.replay.replay_bids`: `bid_array`, then first-price auctions shaded on their segment's
win curve), with the same floors and max bid.

Making the state equal:
- Win-rate model: the service loads the same JSON file (BIDOPT_WINRATE_FILE, which overrides a
  winrate.json in the bundle) that the replay side uses, so first-price impressions are shaded
  on the same curve (segment: channel|exchange on both sides) and second-price ones are not.
- Pacing: no win notices are sent, so nothing is spent; the service only throttles
  (multiplier <= 1). The multiplier is read from /v1/campaigns before and after and passed
  to the replay side (it is 1.0 unless the controller moved it, which it must not between
  the two reads).
- Budget: daily budgets far above any spend, i.e. unlimited on the replay side.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers.serving import Server, run_server

pytestmark = pytest.mark.integration

GOAL, TARGET, MAX_BID = "cpc", 2.0, 12.0
STRATEGIES: dict[str, dict[str, float]] = {
    "value": {},
    "linear": {"base_bid": 5.0, "avg_value": 8.0},
    "ortb1": {"c": 30.0, "lam": 0.5},
    "lagrangian": {"lam": 0.3},
}
N_IMPRESSIONS = 80


def campaigns_toml() -> str:
    blocks = []
    for name, params in STRATEGIES.items():
        inline = ", ".join(f"{k} = {v}" for k, v in params.items())
        blocks.append(
            f'[[campaigns]]\nid = "parity-{name}"\ngoal = "{GOAL}"\ntarget = {TARGET}\n'
            f"max_bid = {MAX_BID}\ndaily_budget = 1000000000.0\n"
            f'strategy = "{name}"\nstrategy_params = {{ {inline} }}\n'
            f'creatives = ["cr-{name}"]\n'
        )
    return "\n".join(blocks)


@pytest.fixture(scope="module")
def synth() -> Any:
    from features.synth import generate

    return generate(20_000, seed=21)


@pytest.fixture(scope="module")
def win_model_file(synth: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.simulate import fit_win_model

    model = fit_win_model(synth)
    assert model is not None, "synthetic logs should carry lost (censored) auctions"
    path = tmp_path_factory.mktemp("winrate") / "winrate.json"
    path.write_text(json.dumps(model.to_dict()))
    return path


@pytest.fixture(scope="module")
def server(
    serving_store: tuple[str, Path],
    win_model_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    uri, _ = serving_store
    workdir = tmp_path_factory.mktemp("parity-server")
    campaigns = workdir / "campaigns.toml"
    campaigns.write_text(campaigns_toml())
    with run_server(
        uri,
        workdir,
        env={"BIDOPT_WINRATE_FILE": str(win_model_file)},
        args=("--campaigns", str(campaigns)),
    ) as s:
        yield s


def impressions(synth: Any) -> list[dict[str, Any]]:
    """Varied rows of the synthetic logs (channels, exchanges, publishers, devices, segments),
    alternately first and second price, floors from none to above most prices."""
    from serving.api.schemas import BidImpression

    fields = set(BidImpression.model_fields) - {"impression_id", "event_time"}
    rows = synth.sample(N_IMPRESSIONS, seed=3).to_dicts()
    now = datetime.now(UTC).isoformat()
    floors = [0.0, 0.0, 0.5, 1.5, 3.0, 6.0, 11.0, 40.0]
    out = []
    for i, row in enumerate(rows):
        imp = {k: v for k, v in row.items() if k in fields and v is not None}
        imp.update(
            impression_id=f"p{i}",
            event_time=now,
            auction_type="first" if i % 2 else "second",
            floor_price=floors[i % len(floors)],
        )
        out.append(imp)
    return out


def multipliers(server: Server) -> dict[str, float]:
    r = server.client.get("/v1/campaigns")
    assert r.status_code == 200, r.text
    return {c["id"]: float(c["pacing_multiplier"]) for c in r.json()["campaigns"]}


def test_bid_matches_replay_prices(server: Server, synth: Any, win_model_file: Path) -> None:
    from bidding.goals import goal_value
    from bidding.replay import log_values, make_log, replay_bids
    from bidding.strategies import make_strategy
    from bidding.winrate import segment_key
    from serving.models.registry import read_winrate

    imps = impressions(synth)
    win_model = read_winrate(win_model_file)
    goal = goal_value(GOAL, TARGET)
    before = multipliers(server)
    answers: dict[str, list[dict[str, Any]]] = {}
    for name in STRATEGIES:
        r = server.client.post(
            "/v1/bid", json={"impressions": imps, "campaign_ids": [f"parity-{name}"]}
        )
        assert r.status_code == 200, r.text
        answers[name] = r.json()["bids"]
    assert multipliers(server) == before

    pctrs = [b["pctr"] for b in answers["value"]]
    assert all(p is not None for p in pctrs), answers["value"]
    assert len(set(pctrs)) > N_IMPRESSIONS // 2, "pCTR should vary across impressions"
    checked = {"bid": 0, "no_bid": 0, "first_bid": 0, "capped": 0}
    for name, params in STRATEGIES.items():
        bids = answers[name]
        assert [b["impression_id"] for b in bids] == [i["impression_id"] for i in imps]
        # the model's scores do not depend on the campaign's strategy
        assert [b["pctr"] for b in bids] == pctrs
        log = make_log(
            pctr=np.array([b["pctr"] for b in bids]),
            pcvr=np.array([b["pcvr"] for b in bids]),
            market_price=np.zeros(len(bids)),
            click=np.zeros(len(bids)),
            auction_type=np.array([i["auction_type"] for i in imps]),
            floor=np.array([i["floor_price"] for i in imps]),
            segment=np.array([segment_key(i["channel"], i.get("exchange")) for i in imps]),
        )
        values = log_values(log, goal)
        np.testing.assert_allclose(
            [b["expected_value"] for b in bids], values, rtol=1e-12, atol=1e-12
        )
        offline = replay_bids(
            make_strategy(name, **params),
            values,
            log,
            slice(None),
            MAX_BID,
            win_model,
            multiplier=before[f"parity-{name}"],
        )
        served = np.array([b["price"] if b["bid"] else 0.0 for b in bids])
        for i, (s, o) in enumerate(zip(served, offline, strict=True)):
            assert s == pytest.approx(o, rel=1e-9, abs=1e-9), (name, imps[i], bids[i], o)
        checked["bid"] += int((served > 0).sum())
        checked["no_bid"] += int((served == 0).sum())
        checked["first_bid"] += int(((served > 0) & log.first_price).sum())
        checked["capped"] += int(np.isclose(served, MAX_BID).sum())
        for b in bids:
            assert b["bid"] == (b["price"] is not None)
            if not b["bid"]:
                assert b["reason"] in ("below_floor", "zero_bid", "no_surplus"), b
    # the set exercised bids and no-bids, shaded first-price bids, and the max-bid cap
    assert all(v > 0 for v in checked.values()), checked
