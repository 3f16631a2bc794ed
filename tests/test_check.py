"""steplab.check: each check passes when the relation holds, fails when it does not, and never on NaN."""

import numpy as np
import pytest

from steplab import check


def test_close_passes_within_relative_tolerance(capsys):
    out = check.close("rate", 0.995, 1.0, rtol=1e-2)
    assert out == 0.995
    line = capsys.readouterr().out.strip()
    assert line.startswith("PASS  rate: ")
    assert "\n" not in line


def test_close_fails_outside_tolerance():
    with pytest.raises(AssertionError, match=r"^FAIL  rate: value=0\.98"):
        check.close("rate", 0.98, 1.0, rtol=1e-2)


def test_close_atol_and_arrays():
    check.close("zero", 1e-9, 0.0, rtol=0.0, atol=1e-8)
    with pytest.raises(AssertionError):
        check.close("zero", 1e-7, 0.0, rtol=0.0, atol=1e-8)
    check.close("vec", [1.0, 2.0, 3.0], [1.0, 2.0, 3.001], rtol=1e-3)
    # one bad element fails the whole array
    with pytest.raises(AssertionError, match="FAIL  vec"):
        check.close("vec", [1.0, 2.5, 3.0], [1.0, 2.0, 3.0], rtol=1e-3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_close_rejects_non_finite(bad):
    with pytest.raises(AssertionError, match="FAIL"):
        check.close("x", bad, 1.0, rtol=np.inf)
    with pytest.raises(AssertionError, match="FAIL"):
        check.close("x", [1.0, bad], [1.0, 1.0], rtol=1.0)


def test_close_validates_tolerances():
    with pytest.raises(ValueError, match="rtol must be >= 0, got -1"):
        check.close("x", 1.0, 1.0, rtol=-1)
    with pytest.raises(ValueError, match="atol must be >= 0"):
        check.close("x", 1.0, 1.0, atol=np.nan)


def test_holds(capsys):
    assert check.holds("monotone", True, detail="losses decrease") is True
    assert capsys.readouterr().out == "PASS  monotone: losses decrease\n"
    with pytest.raises(AssertionError, match="^FAIL  monotone: 3 > 2$"):
        check.holds("monotone", False, detail="3 > 2")
    check.holds("all", np.array([True, True]))
    with pytest.raises(AssertionError):
        check.holds("all", np.array([True, False]))
    # NaN compares false, so a condition computed from NaN fails
    with pytest.raises(AssertionError):
        check.holds("nan", np.nan < 1.0)
    with pytest.raises(ValueError, match="must be a bool"):
        check.holds("not a bool", 1.0)


def test_bound_elementwise_and_margin(capsys):
    m = np.array([0.1, 0.5, 0.2])
    b = np.array([1.0, 0.6, 1.0])
    assert check.bound("gap", m, b) is m
    line = capsys.readouterr().out
    assert line.startswith("PASS  gap: ")
    assert "worst margin=0.1 at index (1,)" in line
    check.bound("equal is allowed", 1.0, 1.0)
    with pytest.raises(AssertionError, match=r"FAIL  gap: .*worst margin=-0\.1"):
        check.bound("gap", [0.1, 0.7], [1.0, 0.6])


@pytest.mark.parametrize("m,b", [(np.nan, 1.0), (0.5, np.nan), ([0.1, np.nan], 1.0)])
def test_bound_rejects_nan(m, b):
    with pytest.raises(AssertionError, match="FAIL"):
        check.bound("nan", m, b)


def test_slope_of_power_law(capsys):
    B = np.array([1, 2, 4, 8, 16, 32])
    var = 3.0 / B
    s = check.slope("variance ~ 1/B", B, var, target=-1.0, tol=1e-9)
    assert s == pytest.approx(-1.0)
    with pytest.raises(AssertionError, match="FAIL"):
        check.slope("variance ~ 1/B^2", B, var, target=-2.0, tol=0.1)
    with pytest.raises(AssertionError, match="FAIL"):
        check.slope("nan", B, np.where(B == 4, np.nan, var), target=-1.0, tol=0.1)
    with pytest.raises(ValueError, match="x must be positive"):
        check.slope("bad x", [0, 1], [1, 2], target=1.0, tol=0.1)


def test_shapes_that_do_not_broadcast_are_named():
    with pytest.raises(ValueError, match=r"value of check 'c' has shape \(3,\) and target has shape \(2,\)"):
        check.close("c", np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match=r"measured of check 'b' has shape \(3,\) and bound has shape \(2,\)"):
        check.bound("b", np.ones(3), np.ones(2))
