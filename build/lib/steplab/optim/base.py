r"""Transformations, their composition, and the helpers they share.

A *gradient transformation* is a pair of pure functions

.. math::

    s_0 = \mathrm{init}(\theta_0), \qquad (u_t, s_{t+1}) = \mathrm{update}(g_t, s_t, \theta_t),

and an optimizer step is :math:`\theta_{t+1} = \theta_t + u_t`. Parameters, gradients and
updates are an ``ndarray`` or a flat ``dict[str, ndarray]`` (a *tree*); states are
NamedTuples of trees and Python numbers. ``update`` never mutates its arguments.

Non-finite gradients are passed through: the arithmetic is plain numpy, so an ``inf`` or
``nan`` in a gradient gives a non-finite update (numpy prints a ``RuntimeWarning``) and, in
the accumulators, a non-finite state. Nothing here raises on them or hides them;
:func:`steplab.run.minimize` watches the loss and reports the step at which a run diverged,
and :func:`tree_all_finite` tells whether a tree is finite.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, NamedTuple, Union

import numpy as np

Params = Union[np.ndarray, dict]
Updates = Params
State = Any


class GradientTransformation(NamedTuple):
    r"""A pair of pure functions ``init(params) -> state`` and
    ``update(updates, state, params=None) -> (updates, state)``.

    Reference: Babuschkin et al., *The DeepMind JAX Ecosystem* (Optax), 2020.
    """

    init: Callable[[Params], State]
    update: Callable[..., tuple]


class EmptyState(NamedTuple):
    """The state of a transformation that keeps nothing between steps."""


# --------------------------------------------------------------------------- trees


def _where(name: str, key) -> str:
    return name if key is None else f"{name}[{key!r}]"


def check_tree_match(tree: Params, params: Params, name: str = "grads") -> None:
    """Raise ``ValueError`` naming the key unless ``tree`` has the structure and shapes of ``params``.

    Args:
        tree: the tree to check (gradients, updates).
        params: the reference tree.
        name: what ``tree`` is called in the message.
    """
    if isinstance(params, dict):
        if not isinstance(tree, dict):
            raise ValueError(
                f"{name} must be a dict with keys {sorted(params)} like params, "
                f"got {type(tree).__name__}"
            )
        for key in params:
            if key not in tree:
                raise ValueError(f"{name} is missing key {key!r}")
        for key in tree:
            if key not in params:
                raise ValueError(f"{name} has unexpected key {key!r}")
        pairs = [(key, tree[key], params[key]) for key in params]
    else:
        if isinstance(tree, dict):
            raise ValueError(f"{name} is a dict with keys {sorted(tree)} but params is an array")
        pairs = [(None, tree, params)]
    for key, t, p in pairs:
        t_shape, p_shape = np.shape(t), np.shape(p)
        if t_shape != p_shape:
            raise ValueError(
                f"{_where(name, key)} has shape {t_shape} but "
                f"{_where('params', key)} has shape {p_shape}"
            )


def tree_map(fn: Callable, tree: Params, *rest) -> Params:
    """Apply ``fn`` leaf by leaf: ``fn(tree[k], rest[0][k], ...)`` for a dict, ``fn(tree, *rest)`` for an array.

    Args:
        fn: a function of as many arrays as there are trees.
        tree: an ndarray or a flat dict of them; fixes the structure of the result.
        *rest: trees with the same keys as ``tree`` (a leaf may be ``None``).
    """
    if isinstance(tree, dict):
        for other in rest:
            if not isinstance(other, dict) or other.keys() != tree.keys():
                other_keys = sorted(other) if isinstance(other, dict) else type(other).__name__
                raise ValueError(f"tree keys {sorted(tree)} do not match {other_keys}")
        return {key: fn(tree[key], *(other[key] for other in rest)) for key in tree}
    if any(isinstance(other, dict) for other in rest):
        raise ValueError("an array tree cannot be combined with a dict tree")
    return fn(tree, *rest)


def tree_leaves(tree: Params) -> list:
    """The arrays of a tree, in key order for a dict."""
    return list(tree.values()) if isinstance(tree, dict) else [tree]


def tree_zeros_like(tree: Params) -> Params:
    """Zeros with the shape and dtype of every leaf."""
    return tree_map(np.zeros_like, tree)


def tree_norm(tree: Params) -> float:
    r"""The global Euclidean norm :math:`\sqrt{\sum_k \|x_k\|_2^2}` over all leaves, as a Python float."""
    return math.sqrt(sum(float(np.vdot(x, x).real) for x in map(np.asarray, tree_leaves(tree))))


def tree_all_finite(tree: Params) -> bool:
    """True when every entry of every leaf is finite."""
    return all(bool(np.isfinite(x).all()) for x in tree_leaves(tree))


def apply_updates(params: Params, updates: Updates, inplace: bool = False) -> Params:
    r"""Apply an update: :math:`\theta_{t+1} = \theta_t + u_t`, keeping the dtype of the parameters.

    Args:
        params: the current parameters (floating dtype).
        updates: an update with the same structure and shapes.
        inplace: if True, add into the parameter arrays and return them (no new arrays). The
            default returns new arrays and leaves ``params`` untouched.
    """
    check_tree_match(updates, params, name="updates")

    def add(p, u):
        p = np.asarray(p)
        if not np.issubdtype(p.dtype, np.floating):
            raise ValueError(f"params must have a floating dtype, got {p.dtype}")
        if inplace:
            return np.add(p, u, out=p, casting="same_kind")
        return np.add(p, u, dtype=p.dtype, casting="same_kind")

    return tree_map(add, params, updates)


# --------------------------------------------------------------------------- composition


def identity() -> GradientTransformation:
    r"""The identity :math:`u = g`."""

    def init(params):
        return EmptyState()

    def update(updates, state, params=None):
        return updates, state

    return GradientTransformation(init, update)


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    r"""Compose transformations: :math:`u = T_k(\cdots T_2(T_1(g)))`, each with its own state.

    The state is the tuple of the states of ``transforms``. When ``params`` is given the
    gradients are checked against it first (same keys and shapes), so a mismatch raises a
    ``ValueError`` naming the key.

    Args:
        *transforms: the transformations, applied left to right.

    Reference: Babuschkin et al., *The DeepMind JAX Ecosystem* (Optax ``chain``), 2020.
    """
    for i, t in enumerate(transforms):
        if not isinstance(t, GradientTransformation):
            raise ValueError(f"chain argument {i} must be a GradientTransformation, got {t!r}")

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None):
        if params is not None:
            check_tree_match(updates, params, name="grads")
        if not isinstance(state, tuple) or len(state) != len(transforms):
            raise ValueError(
                f"state must be the tuple of {len(transforms)} states returned by init, got {type(state).__name__}"
            )
        new_state = []
        for t, s in zip(transforms, state):
            updates, s = t.update(updates, s, params)
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------- validation


def _is_real_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(name: str, value, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """Return ``float(value)`` after checking it is a finite real in the given interval.

    Args:
        name: the argument's name for the message.
        value: the value to check.
        low, high: the bounds (None for unbounded).
        low_open, high_open: whether the bound itself is excluded.
    """
    if not _is_real_number(value) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        if low is not None and high is not None:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise ValueError(f"{name} must be in {interval}, got {value!r}")
        if low is not None:
            raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {value!r}")
    return value


def check_nonnegative(name: str, value) -> float:
    """``value >= 0``, finite."""
    return check_number(name, value, low=0.0)


def check_positive(name: str, value) -> float:
    """``value > 0``, finite."""
    return check_number(name, value, low=0.0, low_open=True)


def check_unit_interval(name: str, value) -> float:
    """``0 <= value < 1`` (betas, momentum, decay rates)."""
    return check_number(name, value, low=0.0, high=1.0, high_open=True)


def check_int(name: str, value, *, low: int = 0) -> int:
    """An integer (not a bool, not a float) with ``value >= low``."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_bool(name: str, value) -> bool:
    """A bool (numpy bools accepted)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_lr(value, name: str = "lr"):
    """A learning rate: a finite number >= 0 or a schedule (a callable of the step count)."""
    if callable(value):
        return value
    return check_nonnegative(name, value)
