"""Where the service keeps state that bidding needs: spend, pacing, seen events, user profiles.

`bidding/` is pure, so budgets, pacing multipliers and DMP profiles live here, behind one
interface with two backends: in process (the default, bounded memory) and Redis (several workers
or replicas share budgets through atomic increments). `ResilientStore` keeps bidding on local state
when Redis becomes unreachable, and says so, rather than failing the auction.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from features.profiles import US_PER_WINDOW, counters_as_of

log = logging.getLogger("bidopt.state")

WEEK_US: Final = US_PER_WINDOW["7d"]
DAY_US: Final = US_PER_WINDOW["24h"]
EVENT_TTL_S: Final = 8 * 24 * 3600
TOTAL: Final = "total"  # the day key under which a campaign's flight total is kept
SPEND_TTL_S: Final = 3 * 24 * 3600  # a day's spend hash; flight totals never expire
HISTORY_PER_USER: Final = 2000  # recent events kept per user; beyond this the oldest are dropped


@dataclass(frozen=True)
class Profile:
    """A user as the DMP knows them now: segments, model counters, per-campaign frequency."""

    segments: tuple[str, ...]
    counters: dict[str, float | int | None]
    campaign_imps: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (24h, 7d)
    campaign_clicks: dict[str, tuple[int, int]] = field(default_factory=dict)


def build_profile(
    segments: tuple[str, ...],
    imps: list[tuple[int, str]],
    clicks: list[tuple[int, str]],
    now_us: int,
) -> Profile:
    """Counters from (time_us, campaign_id) histories, by the one definition in features/."""
    counters = counters_as_of([t for t, _ in imps], [t for t, _ in clicks], now_us)

    def per_campaign(events: list[tuple[int, str]]) -> dict[str, tuple[int, int]]:
        out: dict[str, list[int]] = {}
        for t, cid in events:
            if now_us - WEEK_US <= t < now_us:
                slot = out.setdefault(cid, [0, 0])
                slot[1] += 1
                if t >= now_us - DAY_US:
                    slot[0] += 1
        return {k: (v[0], v[1]) for k, v in out.items()}

    return Profile(segments, counters, per_campaign(imps), per_campaign(clicks))


class Store(Protocol):
    """What budgets, events and profiles are typed against; `InMemoryStore` and
    `ResilientStore` (Redis with a local fallback) implement it."""

    @property
    def backend(self) -> str: ...
    @property
    def degraded(self) -> bool: ...

    def claim_event(self, event_id: str) -> bool:
        """True the first time an event id is seen, False for a repeat (counted once)."""
        ...

    def release_event(self, event_id: str) -> None:
        """Forget a claim whose event could not be made durable (a retry then counts it)."""
        ...

    def book_event(self, record: Mapping[str, Any]) -> None:
        """Book one accepted event's effects (its ledger record, `events.ledger_records`): a
        win's spend under its day and flight total and the user's impression, a click the
        user's click. Once per event id wherever the store can know it (Redis: atomically,
        with the id marked applied), so a retry after an ambiguous failure counts nothing twice."""
        ...

    def add_spend(self, campaign_id: str, day: str, amount: float) -> float: ...
    def spend(self, campaign_id: str, day: str) -> float: ...
    def get_pacing(self, campaign_id: str) -> dict[str, Any] | None: ...
    def put_pacing(self, campaign_id: str, state: dict[str, Any]) -> None: ...
    def record_impression(
        self, user_id: str, campaign_id: str, t_us: int, event_id: str
    ) -> None: ...
    def record_click(self, user_id: str, campaign_id: str, t_us: int, event_id: str) -> None: ...
    def set_segments(self, user_id: str, segments: list[str]) -> None: ...
    def profile(self, user_id: str, now_us: int) -> Profile: ...


class _Bounded(OrderedDict[str, Any]):
    """An LRU dict: memory stays bounded however many users or events arrive."""

    def __init__(self, max_items: int) -> None:
        super().__init__()
        self.max_items = max_items

    def touch(self, key: str, default: Any) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        self[key] = default
        if len(self) > self.max_items:
            self.popitem(last=False)
        return default


class InMemoryStore:
    """Per-process state; correct for one worker (the serve command refuses more without Redis)."""

    backend = "memory"
    degraded = False

    def __init__(self, max_users: int = 200_000, max_events: int = 2_000_000) -> None:
        self._lock = threading.Lock()
        self._max_events, self._max_users = max_events, max_users
        self._events = _Bounded(max_events)
        self._spend: dict[tuple[str, str], float] = {}
        self._pacing: dict[str, dict[str, Any]] = {}
        self._users = _Bounded(max_users)

    def _user(self, user_id: str) -> dict[str, Any]:
        u = self._users.get(user_id)
        if u is not None:  # the common case: no new deques built only to be thrown away
            self._users.move_to_end(user_id)
            return u  # type: ignore[no-any-return]
        return self._users.touch(
            user_id,
            {
                "segments": (),
                "imps": deque(maxlen=HISTORY_PER_USER),
                "clicks": deque(maxlen=HISTORY_PER_USER),
            },
        )

    def claim_event(self, event_id: str) -> bool:
        with self._lock:
            if event_id in self._events:
                return False
            self._events.touch(event_id, time.time())
            return True

    def release_event(self, event_id: str) -> None:
        with self._lock:
            self._events.pop(event_id, None)

    def book_event(self, record: Mapping[str, Any]) -> None:
        kind, cid, uid = record["type"], record["cid"], record.get("uid")
        if kind == "win":
            self.add_spend(cid, record["day"], record["amount"])
            if record.get("total"):
                self.add_spend(cid, TOTAL, record["amount"])
            if uid is not None:
                self.record_impression(uid, cid, record["t"], record["id"])
        elif kind == "click" and uid is not None:
            self.record_click(uid, cid, record["t"], record["id"])

    def add_spend(self, campaign_id: str, day: str, amount: float) -> float:
        with self._lock:
            key = (campaign_id, day)
            self._spend[key] = self._spend.get(key, 0.0) + amount
            return self._spend[key]

    def spend(self, campaign_id: str, day: str) -> float:
        return self._spend.get((campaign_id, day), 0.0)

    def get_pacing(self, campaign_id: str) -> dict[str, Any] | None:
        state = self._pacing.get(campaign_id)
        return dict(state) if state is not None else None

    def put_pacing(self, campaign_id: str, state: dict[str, Any]) -> None:
        self._pacing[campaign_id] = dict(state)

    def record_impression(self, user_id: str, campaign_id: str, t_us: int, event_id: str) -> None:
        with self._lock:
            self._user(user_id)["imps"].append((t_us, campaign_id))

    def record_click(self, user_id: str, campaign_id: str, t_us: int, event_id: str) -> None:
        with self._lock:
            self._user(user_id)["clicks"].append((t_us, campaign_id))

    def set_segments(self, user_id: str, segments: list[str]) -> None:
        with self._lock:
            self._user(user_id)["segments"] = tuple(segments)

    def profile(self, user_id: str, now_us: int) -> Profile:
        with self._lock:
            u = self._users.get(user_id)
            if u is None:
                return build_profile((), [], [], now_us)
            return build_profile(u["segments"], list(u["imps"]), list(u["clicks"]), now_us)

    def export_state(self) -> dict[str, Any]:
        """What the ledger's snapshot keeps (serving.state.snapshot): event ids, spend, user
        histories, in their LRU order. Pacing is not derived from the ledger: left out."""
        with self._lock:
            users = [
                [uid, list(u["segments"]), [list(x) for x in u["imps"]],
                 [list(x) for x in u["clicks"]]]
                for uid, u in self._users.items()
            ]  # fmt: skip
            return {
                "events": list(self._events),
                "spend": [[c, d, v] for (c, d), v in self._spend.items()],
                "users": users,
            }

    def adopt(self, other: InMemoryStore) -> None:
        """Take `other`'s ledger-derived state (events, spend, users) as this store's: start-up
        loads a snapshot into a fresh store, then hands it over whole, so a snapshot that fails
        half-way leaves this store untouched."""
        with self._lock:
            self._events, self._spend, self._users = other._events, other._spend, other._users
            self._events.max_items, self._users.max_items = self._max_events, self._max_users

    def import_state(self, state: dict[str, Any]) -> None:
        """Restore `export_state`'s output (on top of nothing: at start-up)."""
        now = time.time()
        with self._lock:
            events = state["events"][-self._max_events :]
            if not all(isinstance(e, str) for e in events):
                raise TypeError("events: every id must be a string")
            self._events.update(dict.fromkeys(events, now))
            for c, d, v in state["spend"]:
                self._spend[(str(c), str(d))] = float(v)
            for uid, segments, imps, clicks in state["users"][-self._max_users :]:
                u = self._user(str(uid))
                u["segments"] = tuple(segments)
                u["imps"].extend(map(tuple, imps))
                u["clicks"].extend(map(tuple, clicks))


# KEYS: event id, day spend hash, flight total hash ("" = none), user history zset ("" = none)
# ARGV: mode (claimed | claim), campaign, amount, day ttl, history member, its score, the score
#       below which history is cut, the rank above which it is cut, event id ttl
BOOK_EVENT: Final = """
local state = redis.call('GET', KEYS[1])
if state == 'a' or (ARGV[1] == 'claim' and state) then return 0 end
redis.call('SET', KEYS[1], 'a', 'EX', ARGV[9])
local amount = tonumber(ARGV[3])
if KEYS[2] ~= '' and amount ~= 0 then
  redis.call('HINCRBYFLOAT', KEYS[2], ARGV[2], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
if KEYS[3] ~= '' and amount ~= 0 then redis.call('HINCRBYFLOAT', KEYS[3], ARGV[2], ARGV[3]) end
if KEYS[4] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[7])
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, ARGV[8])
  redis.call('EXPIRE', KEYS[4], ARGV[9])
end
return 1
"""


class RedisStore:
    """Shared state in Redis: spend by HINCRBYFLOAT, event ids by SET NX, histories as ZSETs."""

    backend = "redis"

    def __init__(self, url: str, prefix: str = "bidopt:", timeout_s: float = 0.05) -> None:
        import redis  # only when Redis is configured

        self._r = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
        )
        self._p = prefix
        self._book = self._r.register_script(BOOK_EVENT)

    def ping(self) -> bool:
        return bool(self._r.ping())

    def claim_event(self, event_id: str) -> bool:
        """SET NX to "p" (claimed, pending); `book_event` turns it to "a" (applied)."""
        return bool(self._r.set(f"{self._p}ev:{event_id}", "p", nx=True, ex=EVENT_TTL_S))

    def book_event(self, record: Mapping[str, Any], *, claimed: bool = True) -> bool:
        """Apply the event atomically (one Lua script) unless its id is marked applied; with
        `claimed=False` (a claim made only locally, during an outage) also unless anyone
        holds its id. True if applied here, False if it was a duplicate."""
        kind, cid, uid, t = record["type"], record["cid"], record.get("uid"), int(record["t"])
        keys = [f"{self._p}ev:{record['id']}", "", "", ""]
        amount = 0.0
        if kind == "win":
            amount = float(record["amount"])
            keys[1] = f"{self._p}spend:{record['day']}"
            if record.get("total"):
                keys[2] = f"{self._p}spend:{TOTAL}"
        if uid is not None and kind in ("win", "click"):
            keys[3] = f"{self._p}{'imp' if kind == 'win' else 'clk'}:{uid}"
        member = f"{t}|{cid}|{record['id']}"
        args = ["claimed" if claimed else "claim", cid, repr(amount), SPEND_TTL_S, member, t,
                t - WEEK_US - DAY_US, -HISTORY_PER_USER - 1, EVENT_TTL_S]  # fmt: skip
        return bool(self._book(keys=keys, args=args))

    def release_event(self, event_id: str) -> None:
        self._r.delete(f"{self._p}ev:{event_id}")

    def add_spend(self, campaign_id: str, day: str, amount: float) -> float:
        key = f"{self._p}spend:{day}"
        pipe = self._r.pipeline()
        pipe.hincrbyfloat(key, campaign_id, amount)
        if day != TOTAL:  # a flight total lives as long as the flight, however long no win comes
            pipe.expire(key, SPEND_TTL_S)
        return float(pipe.execute()[0])

    def spend(self, campaign_id: str, day: str) -> float:
        value = self._r.hget(f"{self._p}spend:{day}", campaign_id)
        return float(value) if value is not None else 0.0

    def get_pacing(self, campaign_id: str) -> dict[str, Any] | None:
        raw = self._r.get(f"{self._p}pacing:{campaign_id}")
        return json.loads(raw) if raw else None

    def put_pacing(self, campaign_id: str, state: dict[str, Any]) -> None:
        self._r.set(f"{self._p}pacing:{campaign_id}", json.dumps(state))

    def _record(self, kind: str, user_id: str, campaign_id: str, t_us: int, event_id: str) -> None:
        key = f"{self._p}{kind}:{user_id}"
        pipe = self._r.pipeline()
        pipe.zadd(key, {f"{t_us}|{campaign_id}|{event_id}": t_us})
        pipe.zremrangebyscore(key, "-inf", t_us - WEEK_US - DAY_US)
        pipe.zremrangebyrank(key, 0, -HISTORY_PER_USER - 1)
        pipe.expire(key, EVENT_TTL_S)
        pipe.execute()

    def record_impression(self, user_id: str, campaign_id: str, t_us: int, event_id: str) -> None:
        self._record("imp", user_id, campaign_id, t_us, event_id)

    def record_click(self, user_id: str, campaign_id: str, t_us: int, event_id: str) -> None:
        self._record("clk", user_id, campaign_id, t_us, event_id)

    def set_segments(self, user_id: str, segments: list[str]) -> None:
        self._r.set(f"{self._p}seg:{user_id}", json.dumps(list(segments)), ex=30 * 24 * 3600)

    def profile(self, user_id: str, now_us: int) -> Profile:
        pipe = self._r.pipeline()
        pipe.get(f"{self._p}seg:{user_id}")
        for kind in ("imp", "clk"):
            pipe.zrangebyscore(f"{self._p}{kind}:{user_id}", now_us - WEEK_US, f"({now_us}")
        seg, imps, clicks = pipe.execute()

        def parse(members: list[str]) -> list[tuple[int, str]]:
            out = []
            for m in members:
                t, cid, _ = m.split("|", 2)
                out.append((int(t), cid))
            return out

        segments = tuple(json.loads(seg)) if seg else ()
        return build_profile(segments, parse(imps), parse(clicks), now_us)


class ResilientStore:
    """Redis first; on a connection failure keep bidding on local state, say so, and put Redis
    right when it returns.

    Losing Redis must not stop the auction, nor let it overspend:
    - While degraded, a campaign's spend is the last shared value this worker read from Redis
      plus what it booked itself since (never 0: a campaign already over budget stays over), and
      `BudgetKeeper` lets each of `workers` workers spend at most its share of what was left (a
      pre-authorised slice per bidder, as RTBkit's banker does).
    - Every event whose booking did not reach Redis is kept by id, with its record and whether
      its claim did (a claim may reach Redis and the booking not: the connection can drop
      between the two, or a reply time out after Redis applied it). When Redis answers again
      they are replayed, before anything else is read from it, by the same atomic script a live
      booking uses (`RedisStore.book_event`): an event whose id Redis holds as applied is not
      booked again, and one claimed only here is booked only if nobody else holds its id, so an
      event is counted once across an outage, never twice, and a timeout never double counts.
    Redis is tried again after `retry_s`.
    """

    def __init__(self, primary: RedisStore, local: InMemoryStore, retry_s: float = 5.0) -> None:
        self.primary, self.local, self.retry_s = primary, local, retry_s
        self.degraded = False
        self.last_error: str | None = None
        self._down_until = 0.0
        self._lock = threading.RLock()
        self._seen: dict[tuple[str, str], float] = {}  # last shared spend read, per (id, day)
        self._since: dict[tuple[str, str], float] = {}  # booked locally while degraded
        # event id -> [claimed in Redis, its record once booked locally (None until then)],
        # in order; replayed on return, so a replay cut short resumes where it stopped
        self._unsynced: dict[str, list[Any]] = {}
        self.resynced_events = 0
        self.resync_duplicates = 0

    @property
    def backend(self) -> str:
        return "memory (redis unreachable)" if self.degraded else "redis"

    @property
    def unsynced(self) -> int:
        return len(self._unsynced)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        import redis

        with self._lock:
            if time.monotonic() >= self._down_until:
                try:
                    if self._unsynced:
                        self._resync()
                    result = getattr(self.primary, name)(*args, **kwargs)
                except (redis.ConnectionError, redis.TimeoutError) as e:
                    self._down_until = time.monotonic() + self.retry_s
                    if not self.degraded:
                        log.error("redis unreachable (%s): bidding on local state", e)
                    self.degraded, self.last_error = True, str(e)
                else:
                    if self.degraded:
                        log.warning("redis reachable again: shared state restored")
                    self.degraded, self.last_error = False, None
                    return result
            return self._local(name, args, kwargs)

    def _local(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if name == "book_event":
            record = args[0]
            self._unsynced[record["id"]] = [kwargs.get("claimed", True), record]
            self.local.book_event(record)
            for key in _spend_keys(record):
                self._since[key] = self._since.get(key, 0.0) + record["amount"]
            return None
        result = getattr(self.local, name)(*args)
        if name == "claim_event" and result:
            self._unsynced[args[0]] = [False, None]
        elif name == "release_event":
            self._unsynced.pop(args[0], None)
        elif name == "add_spend":
            key = (args[0], args[1])
            self._since[key] = self._since.get(key, 0.0) + args[2]
            return self._seen.get(key, 0.0) + self._since[key]
        if name == "spend":
            key = (args[0], args[1])
            return self._seen.get(key, 0.0) + self._since.get(key, 0.0)
        return result

    def _resync(self) -> None:
        """Replay what was booked while degraded (see the class); raises, keeping the rest, if
        Redis drops again halfway. A claim whose booking has not come yet (its request is
        still writing the ledger) is left for that booking."""
        replayed = 0
        for event_id, (claimed, record) in list(self._unsynced.items()):
            if record is None:
                continue
            if self.primary.book_event(record, claimed=claimed):
                self.resynced_events += 1
                replayed += 1
            else:
                self.resync_duplicates += 1  # already counted in Redis: once, not twice
            del self._unsynced[event_id]
            for key in _spend_keys(record):
                self._since[key] = self._since.get(key, 0.0) - record["amount"]
        if replayed:
            log.warning("redis: %d events booked during the outage replayed", replayed)

    def book_event(self, record: Mapping[str, Any]) -> None:
        """A claim made here while Redis was down is booked in Redis only if nobody else holds
        its id (`claimed=False`); any other, as claimed."""
        with self._lock:
            pending = self._unsynced.get(record["id"])
            self._call("book_event", record, claimed=pending is None or pending[0])
            pending = self._unsynced.get(record["id"])
            if pending is not None and pending[1] is None:
                del self._unsynced[record["id"]]  # booked in Redis, not here

    def spend_split(self, campaign_id: str, day: str) -> tuple[float, float]:
        """(last shared spend seen, booked here since) while degraded; (spend, 0) otherwise."""
        total = self.spend(campaign_id, day)
        if not self.degraded:
            return total, 0.0
        key = (campaign_id, day)
        return self._seen.get(key, 0.0), self._since.get(key, 0.0)

    def claim_event(self, event_id: str) -> bool:
        return bool(self._call("claim_event", event_id))

    def release_event(self, event_id: str) -> None:
        self._call("release_event", event_id)

    def add_spend(self, campaign_id: str, day: str, amount: float) -> float:
        return float(self._call("add_spend", campaign_id, day, amount))

    def spend(self, campaign_id: str, day: str) -> float:
        value = float(self._call("spend", campaign_id, day))
        if not self.degraded:
            self._seen[(campaign_id, day)] = value
        return value

    def get_pacing(self, campaign_id: str) -> dict[str, Any] | None:
        return self._call("get_pacing", campaign_id)  # type: ignore[no-any-return]

    def put_pacing(self, campaign_id: str, state: dict[str, Any]) -> None:
        self._call("put_pacing", campaign_id, state)

    def record_impression(self, user_id: str, campaign_id: str, t_us: int, event_id: str) -> None:
        self._call("record_impression", user_id, campaign_id, t_us, event_id)

    def record_click(self, user_id: str, campaign_id: str, t_us: int, event_id: str) -> None:
        self._call("record_click", user_id, campaign_id, t_us, event_id)

    def set_segments(self, user_id: str, segments: list[str]) -> None:
        self._call("set_segments", user_id, segments)

    def profile(self, user_id: str, now_us: int) -> Profile:
        return self._call("profile", user_id, now_us)  # type: ignore[no-any-return]


def _spend_keys(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    if record["type"] != "win":
        return []
    keys = [(record["cid"], record["day"])]
    return [*keys, (record["cid"], TOTAL)] if record.get("total") else keys


def make_store(redis_url: str | None) -> Store:
    return (
        InMemoryStore() if not redis_url else ResilientStore(RedisStore(redis_url), InMemoryStore())
    )
