"""The promotion gate: the challenger replaces the champion only when it is at least as good.

Both versions are re-scored on the same, newest test window (the challenger's data, or logs
given by the caller) instead of comparing the metrics each run logged: those came from
different windows and say nothing about which model is better on today's traffic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from features.logset import Batches
from training.config import Target, load_config

GATE_METRICS = ("logloss", "ece_rel", "auc", "ne", "calibration_ratio", "oracle_gap")


class PromoteError(ValueError):
    """Promotion cannot be decided (no challenger, no usable data); the message says why."""


@dataclass
class Decision:
    target: Target
    promoted: bool
    reason: str
    challenger_version: str
    champion_version: str | None  # the champion before this decision
    challenger: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def gate(
    challenger: dict[str, float], champion: dict[str, float], max_ece_rel: float
) -> tuple[bool, str]:
    """Pure rule: logloss no worse than the champion's and ece_rel within the bound."""
    c_ll, k_ll = challenger.get("logloss", math.nan), champion.get("logloss", math.nan)
    c_ece = challenger.get("ece_rel", math.nan)
    if not math.isfinite(c_ece):
        return False, "ece_rel is undefined on the test window (no positives): cannot judge"
    if not (math.isfinite(c_ll) and math.isfinite(k_ll)):
        return False, "logloss is undefined on the test window"
    if c_ll > k_ll:
        return False, f"challenger logloss {c_ll:.6f} > champion logloss {k_ll:.6f}"
    if c_ece > max_ece_rel:
        return False, f"challenger ece_rel {c_ece:.4f} > bound {max_ece_rel:g}"
    return True, (
        f"challenger logloss {c_ll:.6f} <= champion {k_ll:.6f} and ece_rel {c_ece:.4f} "
        f"<= {max_ece_rel:g}"
    )


def _window_config(target: Target, params: dict[str, str]) -> Any:
    keys = ("split.train_frac", "split.valid_frac", "split.max_test_rows", "cvr.attribution_days")
    return load_config(target, overrides=[f"{k}={params[k]}" for k in keys if k in params])


def promote(
    target: Target,
    *,
    max_ece_rel: float = 0.1,
    frame: pl.DataFrame | Batches | None = None,
    logs: Path | None = None,
) -> Decision:
    """Move `champion` to the `challenger` version when it passes the gate.

    The first version is promoted directly (there is nothing to compare with). The test window
    is the challenger run's own: its data are re-created from the source recorded in the run
    (same synthetic rows and seed, or the same log file) unless `frame` or `logs` is given.
    """
    from training import pipeline, tracking

    tracking.connect()
    chal = tracking.alias_version(target, tracking.CHALLENGER)
    if chal is None:
        raise PromoteError(f"{tracking.MODEL_NAMES[target]} has no challenger: train one first")
    champ = tracking.alias_version(target, tracking.CHAMPION)
    if champ is None:
        tracking.set_alias(target, tracking.CHAMPION, chal.version)
        return Decision(target, True, "first version: promoted directly", chal.version, None)
    if champ.version == chal.version:
        return Decision(
            target, False, "the challenger is already the champion", chal.version, champ.version
        )
    params = tracking.run_params(chal.run_id)
    notes: list[str] = []
    data: Any = frame
    if data is None:
        if logs is not None:
            src = pipeline.DataSource(kind="logs", path=str(logs))
        else:
            src = pipeline.DataSource.from_fingerprint(tracking.run_fingerprint(chal.run_id))
        data, fp = pipeline.load_data(src)
        recorded = params.get("data.content_sha256")
        if logs is None and recorded and recorded != fp.get("content_sha256"):
            notes.append("re-created data differ from the challenger run's (content hash)")
    cfg = _window_config(target, params)
    split = pipeline.windows_for(data, cfg, count=False).split  # the test window, bounded
    scores = {}
    for label, version in (("challenger", chal), ("champion", champ)):
        bundle = tracking.load_bundle(version.model_uri)
        evaluation, _ = pipeline.score_window(bundle, split.test, target, cfg.attribution_days)
        scores[label] = evaluation.metrics
    ok, reason = gate(scores["challenger"], scores["champion"], max_ece_rel)
    if ok:
        tracking.set_alias(target, tracking.CHAMPION, chal.version)
    return Decision(
        target,
        ok,
        reason,
        chal.version,
        champ.version,
        challenger=scores["challenger"],
        champion=scores["champion"],
        notes=notes,
    )
