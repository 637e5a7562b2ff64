from __future__ import annotations

import numpy as np
import pytest

from features.calibrator import EPS, Calibrator, NotFittedError


def _miscalibrated(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    true = rng.beta(1, 30, size=n)
    y = (rng.random(n) < true).astype(float)
    raw = np.clip(true * 2.5, 0, 1)  # over-confident scores, well ranked
    return raw, y


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibration_fixes_the_mean(method: str) -> None:
    p, y = _miscalibrated()
    cal = Calibrator(method).fit(p, y)
    q = cal.transform(p)
    assert abs(q.sum() / y.sum() - 1) < 0.03
    assert abs(p.sum() / y.sum() - 1) > 1.0  # it was badly off before
    assert np.all((q >= EPS) & (q <= 1 - EPS))


@pytest.mark.parametrize("method", ["isotonic", "platt", "identity"])
def test_json_round_trip_and_scalar_path_agree(method: str) -> None:
    p, y = _miscalibrated(5000, seed=1)
    cal = Calibrator(method).fit(p, y)
    back = Calibrator.from_json(cal.to_json())
    grid = np.concatenate([[0.0, 1.0, -0.5, 2.0], np.linspace(0, 1, 997), p[:200]])
    np.testing.assert_array_equal(cal.transform(grid), back.transform(grid))
    scalar = np.array([back.transform_one(float(x)) for x in grid])
    np.testing.assert_allclose(scalar, back.transform(grid), rtol=0, atol=1e-12)


def test_isotonic_is_monotone() -> None:
    p, y = _miscalibrated(5000, seed=2)
    q = Calibrator("isotonic").fit(p, y).transform(np.linspace(0, 1, 1000))
    assert np.all(np.diff(q) >= 0)


def test_use_before_fit_names_the_problem() -> None:
    with pytest.raises(NotFittedError, match="before fit"):
        Calibrator("isotonic").transform(np.array([0.1]))


@pytest.mark.parametrize(
    ("p", "y", "match"),
    [
        (np.array([0.1, np.nan]), np.array([0.0, 1.0]), "non-finite"),
        (np.array([0.1, 0.2]), np.array([0.0]), "equal-length"),
        (np.array([]), np.array([]), "equal-length"),
    ],
)
def test_bad_fit_input(p: np.ndarray, y: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Calibrator("platt").fit(p, y)


def test_unknown_method_and_bad_json() -> None:
    with pytest.raises(ValueError, match="isotonic, platt or identity"):
        Calibrator("spline")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="knots"):
        Calibrator.from_json('{"method": "isotonic", "x_knots": [0.2, 0.1], "y_knots": [0, 1]}')
