"""Microbenchmark: compiled if-then-else rules per campaign per impression (bar: 5 µs).

Baseline measured in the same run: building the RuleContext (done once per impression anyway)
and a call of an empty function, so the ratio shows what the rules themselves cost.
"""

from __future__ import annotations

import random
import time
import tomllib

from pydantic import TypeAdapter

from bidding.rules import Rule, RuleContext, compile_rules, parse_ip

RULES = """
[[rules]]
when = { channel = "ctv", hour = "18..23" }
then = { multiply = 1.3 }
[[rules]]
when = { segment = "cart_abandoners" }
then = { multiply = 2.0 }
[[rules]]
when = { ip = ["203.0.113.0/24", "198.51.100.0/24", "2001:db8:1::/48"] }
then = { no_bid = true }
[[rules]]
when = { country = ["FR", "DE"], device_type = "mobile", user_frequency = { max = 5 } }
then = { cap = 3.0 }
[[rules]]
then = { multiply = 1.0 }
"""


def _contexts(n: int) -> list[RuleContext]:
    rng = random.Random(0)
    out = []
    for _ in range(n):
        req = {
            "channel": rng.choice(["web", "app", "ctv", "video"]),
            "country": rng.choice(["FR", "DE", "US"]),
            "device_type": rng.choice(["mobile", "desktop"]),
            "user_imps_24h": rng.randint(0, 9),
        }
        segs = frozenset(rng.sample(["a", "b", "cart_abandoners", "d", "e"], rng.randint(0, 3)))
        ip = parse_ip(f"{rng.choice([203, 10, 192])}.0.113.0")
        out.append(RuleContext(req, rng.randint(0, 23), rng.randint(0, 6), segs, ip, 0.01, 0.02))
    return out


def _per_call(fn, items, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for it in items:
            fn(it)
        best = min(best, (time.perf_counter() - t) / len(items))
    return best


def main() -> None:
    compiled = compile_rules(TypeAdapter(list[Rule]).validate_python(tomllib.loads(RULES)["rules"]))
    ctxs = _contexts(50_000)
    base = _per_call(lambda c: None, ctxs)
    rules = _per_call(compiled.evaluate, ctxs)
    print(f"baseline (empty call):       {base * 1e6:7.3f} µs")
    print(f"5 rules, evaluate:           {rules * 1e6:7.3f} µs per campaign per impression")
    print(f"ratio to baseline:           {rules / base:7.1f}x")
    print(f"bar 5 µs:                    {'PASS' if rules < 5e-6 else 'FAIL'}")


if __name__ == "__main__":
    main()
