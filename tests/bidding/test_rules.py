from __future__ import annotations

import tomllib
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from bidding.rules import NO_RULE, Outcome, Rule, RuleContext, compile_rules, parse_ip

EXAMPLE = """
[[rules]]
name = "ctv prime time"
when = { channel = "ctv", hour = "18..23" }
then = { multiply = 1.3 }

[[rules]]
when = { segment = "cart_abandoners" }
then = { multiply = 2.0 }

[[rules]]
when = { ip = "203.0.113.0/24" }
then = { no_bid = true }

[[rules]]
then = { cap = 5.0 }
"""

RULES = TypeAdapter(list[Rule])


def _ctx(
    hour: int = 12, segments: tuple[str, ...] = (), ip: str | None = "198.51.100.0", **req: Any
) -> RuleContext:
    request = {"channel": "web", **req}
    return RuleContext(
        request=request,
        hour=hour,
        weekday=2,
        segments=frozenset(segments),
        ip=parse_ip(ip),
        pctr=req.pop("pctr", 0.01),
        pcvr=0.05,
    )


def _compiled(text: str = EXAMPLE):
    return compile_rules(RULES.validate_python(tomllib.loads(text)["rules"]))


@pytest.mark.parametrize(
    ("ctx", "rule", "bid_after"),
    [
        (_ctx(hour=18, channel="ctv"), "ctv prime time", 13.0),
        (_ctx(hour=23, channel="ctv"), "ctv prime time", 13.0),  # inclusive upper bound
        (_ctx(hour=17, channel="ctv"), "rule 4", 5.0),  # falls through to the else
        (_ctx(hour=20, channel="ctv", segments=("cart_abandoners",)), "ctv prime time", 13.0),
        (_ctx(segments=("x", "cart_abandoners")), "rule 2", 20.0),
        (_ctx(ip="203.0.113.0"), "rule 3", 0.0),
        (_ctx(ip=None), "rule 4", 5.0),
    ],
)
def test_first_matching_rule_fires(ctx: RuleContext, rule: str, bid_after: float) -> None:
    out = _compiled().evaluate(ctx)
    assert out.rule == rule
    assert out.apply(10.0) == pytest.approx(bid_after)


def test_no_rule_fires_without_else() -> None:
    compiled = _compiled(EXAMPLE.rsplit("[[rules]]", 1)[0])
    assert compiled.evaluate(_ctx()) is NO_RULE
    assert NO_RULE.apply(7.0) == 7.0


def test_every_condition_kind() -> None:
    rule = {
        "when": {
            "channel": ["app", "web"],
            "country": "FR",
            "device_type": "mobile",
            "weekday": [1, 2],
            "not_segment": "churned",
            "user_frequency": {"max": 3},
            "floor": [0, 2.5],
            "pctr": {"min": 0.005},
            "publisher": ["a.com"],
        },
        "then": {"set": 4.0, "creatives": ["cr1"]},
    }
    compiled = compile_rules(RULES.validate_python([rule]))
    base = {"country": "FR", "device_type": "mobile", "publisher": "a.com", "floor_price": 1.0}
    hit = compiled.evaluate(_ctx(**base, user_imps_24h=3))
    assert hit == Outcome(rule="rule 1", set=4.0, creatives=frozenset({"cr1"}))
    assert hit.apply(99.0) == 4.0
    for change in (
        {"country": "DE"},
        {"user_imps_24h": 4},
        {"floor_price": 2.6},
        {"publisher": "b.com"},
        {"pctr": 0.001},
    ):
        assert compiled.evaluate(_ctx(**{**base, "user_imps_24h": 0, **change})) is NO_RULE
    assert compiled.evaluate(_ctx(**base, segments=("churned",))) is NO_RULE


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"when": {"ip": "203.0.113.7/32"}, "then": {"no_bid": True}}, "narrower than /24"),
        ({"when": {"ip": "2001:db8::/64"}, "then": {"no_bid": True}}, "narrower than /48"),
        ({"when": {"ip": "not-an-ip"}, "then": {"no_bid": True}}, "not an IP range"),
        ({"when": {"hour": "20..30"}, "then": {"no_bid": True}}, "hours are 0..23"),
        ({"when": {"hour": "20..18"}, "then": {"no_bid": True}}, "above max"),
        ({"when": {"weekday": 7}, "then": {"no_bid": True}}, "weekdays"),
        ({"when": {"channel": "ctv"}, "then": {}}, "needs an action"),
        ({"when": {"channel": "ctv"}, "then": {"multiply": -1}}, "greater than 0"),
        ({"when": {"colour": "red"}, "then": {"no_bid": True}}, "colour"),
    ],
)
def test_invalid_rules_name_the_problem(rule: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RULES.validate_python([rule])


def test_else_must_be_last() -> None:
    rules = RULES.validate_python(
        [{"then": {"multiply": 2}}, {"when": {"channel": "web"}, "then": {"no_bid": True}}]
    )
    with pytest.raises(ValueError, match="else rule"):
        compile_rules(rules)
