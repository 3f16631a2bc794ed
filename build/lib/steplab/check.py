r"""Named checks that tie a measurement to the theory.

Every check prints one line, ``PASS  name: <numbers>``, and returns the measured
value so a notebook can reuse it; when the check fails it raises
``AssertionError("FAIL  name: <numbers>")`` instead. A NaN never passes: a
comparison with NaN is false, and an optimizer that produced NaN has failed
whatever the bound says.

Example::

    rate = check.close("GD rate on a quadratic", measured_rate, (kappa - 1) / (kappa + 1))
    check.bound("f(theta_T) - f* <= ||theta_0 - theta*||^2 / (2 eta T)", gap, bound)
"""

from __future__ import annotations

import numpy as np

__all__ = ["close", "holds", "bound", "slope"]


def _fmt(x) -> str:
    """Short text for a number or an array (at most a few entries)."""
    a = np.asarray(x)
    if a.ndim == 0:
        v = a.item()
        if isinstance(v, (bool, np.bool_)):
            return str(bool(v))
        if isinstance(v, (int, np.integer)):
            return str(v)
        return f"{float(v):.4g}"
    if a.size <= 4:
        return "[" + ", ".join(_fmt(v) for v in a.ravel()) + "]"
    return f"array(shape={a.shape}, min={np.nanmin(a):.4g}, max={np.nanmax(a):.4g})"


def _as_float_array(name: str, arg: str, x) -> np.ndarray:
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{arg} of check {name!r} must be numeric, got {x!r}") from exc


def _broadcast(name: str, a_name: str, a: np.ndarray, b_name: str, b: np.ndarray):
    try:
        return np.broadcast_arrays(a, b)
    except ValueError:
        raise ValueError(
            f"{a_name} of check {name!r} has shape {a.shape} and {b_name} has shape {b.shape}: "
            "they do not broadcast"
        ) from None


def _report(name: str, ok: bool, text: str) -> None:
    line = f"{name}: {text}"
    if not ok:
        raise AssertionError("FAIL  " + line)
    print("PASS  " + line)


def close(name: str, value, target, rtol: float = 1e-2, atol: float = 0.0):
    r"""Check $|\text{value} - \text{target}| \le \text{atol} + \text{rtol}\,|\text{target}|$.

    Elementwise for arrays (every element must pass). NaN or infinity in
    ``value`` fails.

    Args:
        name: what is being checked, in the words of the text.
        value: the measured number or array.
        target: the value the theory predicts (broadcastable to ``value``).
        rtol: relative tolerance, >= 0.
        atol: absolute tolerance, >= 0.

    Returns:
        ``value``, unchanged.
    """
    if not rtol >= 0:
        raise ValueError(f"rtol must be >= 0, got {rtol}")
    if not atol >= 0:
        raise ValueError(f"atol must be >= 0, got {atol}")
    v = _as_float_array(name, "value", value)
    t = _as_float_array(name, "target", target)
    _broadcast(name, "value", v, "target", t)
    with np.errstate(invalid="ignore"):
        err = np.abs(v - t)
        allowed = atol + rtol * np.abs(t)
        excess = np.broadcast_to(err - allowed, err.shape).ravel()
    ok = bool(err.size > 0 and np.all(np.isfinite(v)) and np.all(err <= allowed))
    nan = np.isnan(excess)
    worst = int(np.argmax(nan)) if nan.any() else int(np.argmax(excess))
    t_b = np.broadcast_to(t, err.shape).ravel()
    text = f"value={_fmt(v)}, target={_fmt(t)}, |error|={_fmt(err.ravel()[worst])}"
    if t_b[worst] != 0:
        text += f", relative error={_fmt(err.ravel()[worst] / abs(t_b[worst]))}"
    text += f" (rtol={rtol:g}, atol={atol:g})"
    _report(name, ok, text)
    return value


def holds(name: str, condition, detail: str = ""):
    r"""Check that ``condition`` is true (for an array: every element is true).

    Args:
        name: the statement being checked.
        condition: a bool, or an array of bools.
        detail: the numbers behind the condition, printed after the name.

    Returns:
        ``condition``, unchanged.
    """
    c = np.asarray(condition)
    if c.dtype != np.bool_:
        raise ValueError(
            f"condition of check {name!r} must be a bool or an array of bools, got {condition!r}"
        )
    ok = bool(c.size > 0 and np.all(c))
    _report(name, ok, detail if detail else str(ok))
    return condition


def bound(name: str, measured, bound):
    r"""Check $\text{measured} \le \text{bound}$ (elementwise for arrays).

    The line reports the worst margin, $\min(\text{bound} - \text{measured})$,
    and the largest ratio measured / bound. NaN in either argument fails.

    Args:
        name: the inequality being checked.
        measured: the measured number or array.
        bound: the theoretical upper bound (broadcastable to ``measured``).

    Returns:
        ``measured``, unchanged.
    """
    m = _as_float_array(name, "measured", measured)
    b = _as_float_array(name, "bound", bound)
    m_b, b_b = _broadcast(name, "measured", m, "bound", b)
    with np.errstate(invalid="ignore"):
        margin = b_b - m_b
    ok = bool(margin.size > 0 and np.all(margin >= 0) and not np.any(np.isnan(margin)))
    if np.any(np.isnan(margin)):
        worst = int(np.argmax(np.isnan(margin.ravel())))
    else:
        worst = int(np.argmin(margin.ravel()))
    mw, bw = m_b.ravel()[worst], b_b.ravel()[worst]
    text = f"measured={_fmt(m)} <= bound={_fmt(b)}; worst margin={_fmt(bw - mw)}"
    if m_b.size > 1:
        text += f" at index {tuple(int(i) for i in np.unravel_index(worst, m_b.shape))}"
    if bw != 0 and np.isfinite(bw):
        text += f" (measured/bound={_fmt(mw / bw)})"
    _report(name, ok, text)
    return measured


def slope(name: str, x, y, target: float, tol: float):
    r"""Check the log-log slope of ``y`` against ``x``: $|\hat s - s| \le \text{tol}$.

    $\hat s$ is the least-squares slope of $\log y$ on $\log x$, e.g. $-1$ for a
    variance that scales as $\sigma^2 / B$.

    Args:
        name: what the slope means.
        x, y: positive arrays of the same length (at least 2 points).
        target: the predicted slope.
        tol: allowed absolute deviation, >= 0.

    Returns:
        The fitted slope.
    """
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    xa = _as_float_array(name, "x", x).ravel()
    ya = _as_float_array(name, "y", y).ravel()
    if xa.shape != ya.shape or xa.size < 2:
        raise ValueError(
            f"x and y must have the same length >= 2, got {xa.size} and {ya.size}"
        )
    if np.any(~(xa > 0)):
        raise ValueError(f"x must be positive for a log-log slope, got {_fmt(xa)}")
    if np.any(~(ya > 0)):
        _report(name, False, f"y must be positive for a log-log slope, got {_fmt(ya)}")
    s = float(np.polyfit(np.log(xa), np.log(ya), 1)[0])
    ok = bool(np.isfinite(s) and abs(s - target) <= tol)
    _report(name, ok, f"log-log slope={s:.4g}, target={target:.4g} (tol={tol:g})")
    return s
