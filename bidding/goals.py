"""What one impression is worth to a campaign, in CPM, for each goal.

Every strategy prices an impression from this value, so serving and replay must compute it
identically. The formulas are plain arithmetic on `float | ndarray`, which makes one definition
serve both callers: Python floats on the per-request path (no numpy overhead, ~100 ns) and numpy
arrays in replay. A `GoalValue` folds the campaign constants (target, value per conversion,
the x1000 to CPM) into one multiplier once, at campaign load, so the hot path is one or two
multiplications.

`max_clicks` and `max_conversions` ("maximise within the budget", as the big DSPs call it) have
no target: the value is pCTR (or pCTR x pCVR) itself, in expected clicks (conversions) per
impression, and each strategy's fit supplies the scale (linear's base bid, ORTB's lambda, the
Lagrangian's multiplier; rlb is scale-free). Campaigns (serving) take the target goals only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

import numpy as np

Goal = Literal["cpc", "cpa", "roas", "cpm"]
GOALS: Final[tuple[Goal, ...]] = ("cpc", "cpa", "roas", "cpm")
MaxGoal = Literal["max_clicks", "max_conversions"]
MAX_GOALS: Final[tuple[MaxGoal, ...]] = ("max_clicks", "max_conversions")
ALL_GOALS: Final[tuple[str, ...]] = (*GOALS, *MAX_GOALS)

# float or ndarray: the same expression works on both.
Num = TypeVar("Num", float, np.ndarray)


def cpc_value(pctr: Num, target_cpc: float) -> Num:
    """Expected clicks x what a click is worth, per thousand impressions."""
    return pctr * (target_cpc * 1000.0)


def cpa_value(pctr: Num, pcvr: Num, target_cpa: float) -> Num:
    """pCVR is P(conversion | click), so pCTR x pCVR is conversions per impression."""
    return pctr * pcvr * (target_cpa * 1000.0)


def roas_value(pctr: Num, pcvr: Num, value_per_conversion: float, target_roas: float) -> Num:
    """Revenue per impression divided by the return the advertiser wants on each unit spent."""
    return pctr * pcvr * (value_per_conversion / target_roas * 1000.0)


@dataclass(frozen=True, slots=True)
class GoalValue:
    """A campaign's goal reduced to `value = scale x pCTR [x pCVR]` (or a constant for CPM)."""

    goal: Goal | MaxGoal
    # CPM per unit of pCTR (cpc) or of pCTR x pCVR (cpa, roas); the CPM for cpm; 1 for max_*
    scale: float

    @property
    def uses_pcvr(self) -> bool:
        return self.goal in ("cpa", "roas", "max_conversions")

    @property
    def has_target(self) -> bool:
        """False for max_*: the value is not money, so a strategy must fit its scale."""
        return self.goal not in MAX_GOALS

    def value(self, pctr: float, pcvr: float = 1.0) -> float:
        """Scalar path for serving. NaN in gives NaN out; strategies turn that into a no-bid."""
        if self.goal == "cpc" or self.goal == "max_clicks":
            return pctr * self.scale
        if self.goal == "cpm":
            return self.scale if pctr == pctr else math.nan  # NaN pCTR stays a no-bid
        return pctr * pcvr * self.scale

    def values(self, pctr: np.ndarray, pcvr: np.ndarray | None = None) -> np.ndarray:
        """Vectorised path for replay and batch scoring; same formula as `value`."""
        p = np.asarray(pctr, dtype=np.float64)
        if self.goal == "cpc" or self.goal == "max_clicks":
            return p * self.scale
        if self.goal == "cpm":
            return np.where(np.isnan(p), np.nan, self.scale)
        if pcvr is None:
            raise ValueError(f"pcvr: goal {self.goal!r} needs pCVR values")
        return p * np.asarray(pcvr, dtype=np.float64) * self.scale


def goal_value(
    goal: str, target: float | None, value_per_conversion: float | None = None
) -> GoalValue:
    """Validate a goal once (at campaign load) and fold its constants into one scale."""
    if goal not in ALL_GOALS:
        raise ValueError(f"goal: unknown goal {goal!r} (known: {', '.join(ALL_GOALS)})")
    if goal in MAX_GOALS:
        if target is not None:
            raise ValueError(f"target: goal {goal!r} maximises within the budget; no target")
        return GoalValue(goal, 1.0)
    if target is None:
        raise ValueError(f"target: goal {goal!r} needs a target")
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"target: must be a finite number > 0, got {target!r}")
    if goal == "cpc":
        return GoalValue("cpc", cpc_value(1.0, target))
    if goal == "cpa":
        return GoalValue("cpa", cpa_value(1.0, 1.0, target))
    if goal == "cpm":
        return GoalValue("cpm", float(target))
    if value_per_conversion is None:
        raise ValueError("value_per_conversion: required for goal 'roas'")
    if not (math.isfinite(value_per_conversion) and value_per_conversion > 0):
        raise ValueError(
            f"value_per_conversion: must be a finite number > 0, got {value_per_conversion!r}"
        )
    return GoalValue("roas", roas_value(1.0, 1.0, value_per_conversion, target))


def impression_value(
    goal: str,
    target: float,
    pctr: Num,
    pcvr: Num | float = 1.0,
    value_per_conversion: float | None = None,
) -> Num:
    """One-off convenience (validates every call); hot paths keep a `GoalValue` instead."""
    gv = goal_value(goal, target, value_per_conversion)
    if isinstance(pctr, np.ndarray):
        return gv.values(pctr, np.broadcast_to(np.asarray(pcvr, dtype=np.float64), pctr.shape))
    return gv.value(float(pctr), float(pcvr))  # type: ignore[arg-type,return-value]
