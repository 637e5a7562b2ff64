"""The FX reference rates the service converts with: loaded at start, re-read when the file
changes, exactly like the campaigns file (state/campaigns.py).

The file is parsed and validated by `bidding.fx.parse_fx` (pure); this module owns the I/O. An
invalid file at start stops the service before it listens; a changed file that fails validation
is refused, the previous table keeps converting, and the errors show in the log and in
/v1/campaigns (`fx.last_error`). The table is one immutable object replaced by a single
assignment, so a request converts with the table it started with.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bidding.fx import FxError, FxTable, parse_fx
from serving.state.campaigns import file_stamp

log = logging.getLogger("bidopt.fx")


def read_fx(path: Path) -> FxTable:
    """Read and validate an FX file; FxError (one line per problem) when invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise FxError([f"{path}: cannot read: {e}"]) from None
    return parse_fx(text, str(path))


class FxBook:
    """The loaded table (`table`, None without a file) and how its last reload went."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.table: FxTable | None = None
        self.loaded_at: str | None = None
        self.last_error: list[str] | None = None
        self.reloads_succeeded = 0
        self.reloads_failed = 0
        self._stamp: tuple[int, int] | None = None
        if path is not None:
            self._stamp = file_stamp(path)
            self._install(read_fx(path))  # invalid: raise, the service must not start

    def _install(self, table: FxTable) -> None:
        self.table = table
        self.loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.last_error = None

    def poll(self) -> bool | None:
        """Reload if the file changed: True = new table, False = refused, None = unchanged."""
        if self.path is None:
            return None
        stamp = file_stamp(self.path)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            table = read_fx(self.path)
        except FxError as e:
            self.last_error = e.errors
            self.reloads_failed += 1
            log.error(
                "FX file %s refused, still converting with the previous table:\n%s",
                self.path,
                "\n".join(e.errors),
            )
            return False
        self._install(table)
        self.reloads_succeeded += 1
        log.info("FX rates reloaded from %s: %s to %s", self.path, table.first, table.last)
        return True

    def status(self) -> dict[str, Any]:
        t = self.table
        return {
            "file": str(self.path) if self.path is not None else None,
            "base": t.base if t is not None else None,
            "first_date": t.first.isoformat() if t is not None else None,
            "last_date": t.last.isoformat() if t is not None else None,
            "currencies": sorted(t.currencies) if t is not None else [],
            "loaded_at": self.loaded_at,
            "last_error": self.last_error,
            "reloads_succeeded": self.reloads_succeeded,
            "reloads_failed": self.reloads_failed,
        }
