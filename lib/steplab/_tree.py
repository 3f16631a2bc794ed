r"""The one set of pytree helpers: a tree is an ``ndarray`` or a flat ``dict[str, ndarray]``.

Every helper walks a dict in sorted key order, so two trees with the same keys give their
leaves, their flat vectors and their random draws in the same order whatever order their
dicts were built in.
"""
from __future__ import annotations

import math
from typing import Callable, Union

import numpy as np

Params = Union[np.ndarray, dict]

__all__ = [
    "Params", "tree_map", "tree_leaves", "tree_zeros_like", "tree_copy", "tree_norm",
    "tree_all_finite", "tree_flatten", "tree_unflatten", "tree_mean", "sgd_step", "check_tree_match",
    "initial_params",
]


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
        for key in sorted(params):
            if key not in tree:
                raise ValueError(f"{name} is missing key {key!r}")
        for key in sorted(tree):
            if key not in params:
                raise ValueError(f"{name} has unexpected key {key!r}")
        pairs = [(key, tree[key], params[key]) for key in sorted(params)]
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
        return {key: fn(tree[key], *(other[key] for other in rest)) for key in sorted(tree)}
    if any(isinstance(other, dict) for other in rest):
        raise ValueError("an array tree cannot be combined with a dict tree")
    return fn(tree, *rest)


def tree_leaves(tree: Params) -> list:
    """The arrays of a tree, in sorted key order for a dict."""
    return [tree[key] for key in sorted(tree)] if isinstance(tree, dict) else [tree]


def tree_zeros_like(tree: Params) -> Params:
    """Zeros with the shape and dtype of every leaf."""
    return tree_map(np.zeros_like, tree)


def tree_copy(tree: Params) -> Params:
    """A copy of every leaf (new arrays, same dtypes)."""
    return tree_map(lambda a: np.array(a, copy=True), tree)


def tree_norm(tree: Params) -> float:
    r"""The global Euclidean norm :math:`\sqrt{\sum_k \|x_k\|_2^2}` over all leaves, as a Python float."""
    return math.sqrt(sum(float(np.vdot(x, x).real) for x in map(np.asarray, tree_leaves(tree))))


def tree_all_finite(tree: Params) -> bool:
    """True when every entry of every leaf is finite."""
    return all(bool(np.isfinite(x).all()) for x in tree_leaves(tree))


def tree_flatten(tree: Params) -> np.ndarray:
    """One float64 vector of every entry, leaves in sorted key order."""
    return np.concatenate([np.ravel(np.asarray(a, dtype=np.float64)) for a in tree_leaves(tree)])


def tree_unflatten(vec: np.ndarray, like: Params) -> Params:
    """The inverse of :func:`tree_flatten`: ``vec`` cut into the shapes and dtypes of ``like``."""
    vec = np.asarray(vec)
    if not isinstance(like, dict):
        a = np.asarray(like)
        return vec.reshape(a.shape).astype(a.dtype, copy=False)
    out, start = {}, 0
    for key in sorted(like):
        a = np.asarray(like[key])
        out[key] = vec[start : start + a.size].reshape(a.shape).astype(a.dtype, copy=False)
        start += a.size
    return out


def tree_mean(trees: list, weights=None) -> Params:
    r"""The weighted mean :math:`\sum_k w_k x_k` of trees of one structure (uniform weights by default)."""
    k = len(trees)
    w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=np.float64)
    return tree_map(lambda *leaves: sum(wi * a for wi, a in zip(w, leaves)), *trees)


def sgd_step(theta: Params, g: Params, lr: float) -> Params:
    r"""The plain SGD step :math:`\theta - \eta g`, in the dtype of ``theta``."""
    return tree_map(lambda t, d: (t - lr * d).astype(t.dtype, copy=False), theta, g)


def initial_params(problem, theta0=None, seed=None) -> Params:
    """The starting point of a run: a floating copy of ``theta0``, checked finite.

    Args:
        problem: has ``init_params(seed)``.
        theta0: the start; ``None`` takes ``problem.init_params(seed)``, or
            ``problem.init_params()`` (the problem's own default, e.g. ``MLP(seed=...)``)
            when ``seed`` is ``None``.
        seed: the seed handed to ``problem.init_params``.
    """
    if theta0 is None:
        theta0 = problem.init_params() if seed is None else problem.init_params(seed)

    def copy(a):
        a = np.asarray(a)
        return np.array(a, dtype=np.result_type(a, np.float32), copy=True)

    theta = tree_map(copy, theta0)
    if not tree_all_finite(theta):
        raise ValueError("theta0 must be finite, got non-finite entries")
    return theta
