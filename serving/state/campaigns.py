"""The campaigns the service bids for: loaded from the TOML file at start, hot-reloaded on change.

The file is validated by `bidding.campaigns.load_campaigns` (pure) and campaigns in their own
currency converted into the account currency at the FX table's latest rate
(`bidding.campaign_fx`; the table is the one loaded when the campaigns file is read); this
module owns the I/O: the initial load (an invalid file stops the service before it listens),
and the polling of the file's modification time. A changed file that fails validation is
refused: the previous campaigns keep bidding and the errors show in the log, /v1/campaigns and
/metrics. Like the model pair, the
loaded campaigns are one immutable mapping replaced by a single assignment.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bidding.campaign_fx import load_in_account_currency
from bidding.campaigns import Campaign, CampaignError
from bidding.fx import FxTable

log = logging.getLogger("bidopt.campaigns")


def read_campaigns(
    path: Path, account_currency: str = "USD", fx: FxTable | None = None
) -> dict[str, Campaign]:
    """Read and validate a campaigns file, amounts in `account_currency`; CampaignError (one
    line per problem) when invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CampaignError([f"{path}: cannot read: {e}"]) from None
    return load_in_account_currency(text, str(path), account_currency, fx)


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
        self._stamp: tuple[int, int] | None = None
        if path is not None:
            self._stamp = file_stamp(path)
            # invalid: raise, the service must not start
            self._install(read_campaigns(path, account_currency, fx()))

    def _install(self, campaigns: dict[str, Campaign]) -> None:
        self.campaigns = MappingProxyType(campaigns)
        self.loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.last_error = None

    def poll(self) -> bool | None:
        """Reload if the file changed: True = new campaigns, False = refused, None = unchanged."""
        if self.path is None:
            return None
        stamp = file_stamp(self.path)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            campaigns = read_campaigns(self.path, self.account_currency, self._fx())
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
        }
