from __future__ import annotations

import math

import numpy as np
import pytest

from bidding.goals import goal_value, impression_value


@pytest.mark.parametrize(
    ("goal", "target", "vpc", "pctr", "pcvr", "expected"),
    [
        ("cpc", 0.5, None, 0.002, 1.0, 0.002 * 0.5 * 1000),
        ("cpa", 20.0, None, 0.01, 0.05, 0.01 * 0.05 * 20.0 * 1000),
        ("roas", 4.0, 80.0, 0.01, 0.05, 0.01 * 0.05 * 80.0 / 4.0 * 1000),
        ("cpm", 3.5, None, 0.3, 0.2, 3.5),
    ],
)
def test_value_per_goal_scalar_and_array_agree(goal, target, vpc, pctr, pcvr, expected):
    gv = goal_value(goal, target, vpc)
    assert gv.value(pctr, pcvr) == pytest.approx(expected, rel=1e-12)
    arr = gv.values(np.array([pctr, pctr]), np.array([pcvr, pcvr]))
    np.testing.assert_allclose(arr, [expected, expected], rtol=1e-12)
    assert impression_value(goal, target, pctr, pcvr, vpc) == pytest.approx(expected, rel=1e-12)


def test_scalar_path_is_plain_python_float():
    v = goal_value("cpc", 1.0).value(0.01)
    assert type(v) is float


def test_nan_probability_stays_nan_so_strategies_no_bid():
    for goal in ("cpc", "cpm"):
        gv = goal_value(goal, 1.0)
        assert math.isnan(gv.value(math.nan))
        assert np.isnan(gv.values(np.array([math.nan]))[0])


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("cpx", 1.0), "goal"),
        (("cpc", 0.0), "target"),
        (("cpc", math.nan), "target"),
        (("roas", 2.0), "value_per_conversion"),
        (("roas", 2.0, -1.0), "value_per_conversion"),
    ],
)
def test_bad_goal_names_the_field(args, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        goal_value(*args)


def test_array_path_needs_pcvr_for_cpa():
    with pytest.raises(ValueError, match=r"^pcvr:"):
        goal_value("cpa", 10.0).values(np.array([0.1]))


def test_max_goals_value_is_the_probability_and_take_no_target():
    clicks = goal_value("max_clicks", None)
    conv = goal_value("max_conversions", None)
    assert clicks.value(0.003) == 0.003 and not clicks.has_target and not clicks.uses_pcvr
    assert conv.value(0.01, 0.2) == pytest.approx(0.002) and conv.uses_pcvr
    np.testing.assert_allclose(conv.values(np.array([0.01]), np.array([0.2])), [0.002])
    assert math.isnan(clicks.value(math.nan))
    with pytest.raises(ValueError, match=r"^target: goal 'max_clicks' maximises"):
        goal_value("max_clicks", 2.0)
    with pytest.raises(ValueError, match=r"^target: goal 'cpc' needs a target"):
        goal_value("cpc", None)
    with pytest.raises(ValueError, match=r"^goal: unknown goal 'max' \(known: .*max_clicks"):
        goal_value("max", None)
