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

from collections import namedtuple
from typing import Any, Callable, NamedTuple

import numpy as np

from .._tree import Params, check_tree_match, tree_map

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


_CHAIN_STATES: dict = {}


def _chain_state_type(names: tuple):
    """One NamedTuple class per tuple of link names, so equal layouts give equal state types."""
    if names not in _CHAIN_STATES:
        _CHAIN_STATES[names] = namedtuple("ChainState", names)
    return _CHAIN_STATES[names]


def chain(*transforms: GradientTransformation, names=None) -> GradientTransformation:
    r"""Compose transformations: :math:`u = T_k(\cdots T_2(T_1(g)))`, each with its own state.

    The state is the tuple of the states of ``transforms``; with ``names`` it is a NamedTuple
    whose fields are those names, so a link's state is read by name (``state.lr``) and the
    layout does not move when a link is switched off (pass :func:`identity` in its place).
    When ``params`` is given the gradients are checked against it first (same keys and
    shapes), so a mismatch raises a ``ValueError`` naming the key.

    Args:
        *transforms: the transformations, applied left to right.
        names: one identifier per transformation, or ``None``.

    Reference: Babuschkin et al., *The DeepMind JAX Ecosystem* (Optax ``chain`` and
    ``named_chain``), 2020.
    """
    for i, t in enumerate(transforms):
        if not isinstance(t, GradientTransformation):
            raise ValueError(f"chain argument {i} must be a GradientTransformation, got {t!r}")
    if names is not None:
        names = tuple(names)
        if len(names) != len(transforms) or not all(isinstance(n, str) and n.isidentifier() for n in names):
            raise ValueError(f"names must be {len(transforms)} distinct identifiers, got {names!r}")
    make = tuple if names is None else (lambda states: _chain_state_type(names)(*states))

    def init(params):
        return make(t.init(params) for t in transforms)

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
        return updates, make(new_state)

    return GradientTransformation(init, update)
