"""The campaigns the service bids for: loaded from the TOML file at start, hot-reloaded on change.

The file is validated by `bidding.campaigns.load_campaigns` (pure) and campaigns in their own
currency converted into the account currency at the FX table's latest rate
(`bidding.campaign_fx`; the table is the one loaded when the campaigns file is read); this
module owns the I/O: the initial load (an invalid file stops the service before it listens),
and the polling of the file's modification time. A changed file that fails validation is
refused: the previous campaigns keep bidding and the errors show in the log, /v1/campaigns and
/metrics. Like the model pair, the
loaded campaigns are one immutable mapping replaced by a single assignment.

rlb campaigns (serving/state/rlb_tables.py): their market-price files are read and checked with
the campaigns file (so `check_startup` and a refused reload name them too), and their tables
solved before the new campaigns are installed. `poll` therefore may take seconds when a table
must be solved: the state loop runs it in a worker thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bidding.campaign_fx import load_in_account_currency
from bidding.campaigns import Campaign, CampaignError
from bidding.fx import FxTable
from bidding.rlb import MarketModel
from serving.state.rlb_tables import RlbTables, market_path, read_markets

log = logging.getLogger("bidopt.campaigns")


def read_campaigns(
    path: Path, account_currency: str = "USD", fx: FxTable | None = None
) -> dict[str, Campaign]:
    """Read and validate a campaigns file, amounts in `account_currency`, and its rlb
    campaigns' market files; CampaignError (one line per problem) when invalid."""
    return read_with_markets(path, account_currency, fx)[0]


def read_with_markets(
    path: Path, account_currency: str = "USD", fx: FxTable | None = None
) -> tuple[dict[str, Campaign], dict[str, MarketModel]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CampaignError([f"{path}: cannot read: {e}"]) from None
    campaigns = load_in_account_currency(text, str(path), account_currency, fx)
    return campaigns, read_markets(campaigns, path)


def file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class CampaignBook:
    """The loaded campaigns (`campaigns`, in file order) and how their last reload went."""

    def __init__(
        self,
        path: Path | None,
        account_currency: str = "USD",
        fx: Callable[[], FxTable | None] = lambda: None,
    ) -> None:
        self.path = path
        self.account_currency = account_currency
        self._fx = fx  # the FX table in force, read at each load
        self.campaigns: Mapping[str, Campaign] = MappingProxyType({})
        self.loaded_at: str | None = None
        self.last_error: list[str] | None = None
        self.reloads_succeeded = 0
        self.reloads_failed = 0
        self._stamp: tuple[tuple[int, int] | None, ...] | None = None
        self.tables = RlbTables()
        self._lock = threading.Lock()  # the state loop's thread and /admin/reload may both poll
        if path is not None:
            first = file_stamp(path)
            # invalid: raise, the service must not start
            self._install(self._load(path))
            self._stamp = (first, *self._stamps(path)[1:])

    def _load(self, path: Path) -> dict[str, Campaign]:
        """Read, validate, solve the rlb tables (CampaignError on any problem)."""
        campaigns, markets = read_with_markets(path, self.account_currency, self._fx())
        self.tables.attach(campaigns, markets, str(path))
        return campaigns

    def _install(self, campaigns: dict[str, Campaign]) -> None:
        self.campaigns = MappingProxyType(campaigns)
        self.loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.last_error = None

    def poll(self) -> bool | None:
        """Reload if the file changed: True = new campaigns, False = refused, None = unchanged."""
        if self.path is None:
            return None
        with self._lock:
            return self._poll(self.path)

    def _stamps(self, path: Path) -> tuple[tuple[int, int] | None, ...]:
        """The campaigns file's stamp and its rlb market files': editing a histogram reloads."""
        markets = (market_path(path, c) for c in self.campaigns.values() if c.rlb is not None)
        return (file_stamp(path), *(file_stamp(m) for m in markets))

    def _poll(self, path: Path) -> bool | None:
        stamp = self._stamps(path)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            campaigns = self._load(path)
        except CampaignError as e:
            self.last_error = e.errors
            self.reloads_failed += 1
            log.error(
                "campaigns file %s refused, still bidding for the %d previous campaigns:\n%s",
                self.path,
                len(self.campaigns),
                "\n".join(e.errors),
            )
            return False
        self._install(campaigns)
        self._stamp = (stamp[0], *self._stamps(path)[1:])  # the new campaigns' market files
        self.reloads_succeeded += 1
        log.info("campaigns reloaded from %s: %s", self.path, ", ".join(campaigns) or "none")
        return True

    def status(self) -> dict[str, Any]:
        return {
            "file": str(self.path) if self.path is not None else None,
            "loaded_at": self.loaded_at,
            "last_error": self.last_error,
            "reloads_succeeded": self.reloads_succeeded,
            "reloads_failed": self.reloads_failed,
            "rlb_tables": self.tables.last,
        }
