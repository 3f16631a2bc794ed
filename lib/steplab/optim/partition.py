r"""Different transformations for different arrays of a dict of parameters."""
from __future__ import annotations

from typing import Callable

from .base import GradientTransformation
from .._tree import check_tree_match


def partition(transforms: dict, label_fn: Callable[[str], str]) -> GradientTransformation:
    r"""Apply ``transforms[label_fn(key)]`` to the arrays whose key gets that label:

    .. math::

        u_k = T_{\ell(k)}\bigl(g_{\{j : \ell(j) = \ell(k)\}}\bigr)_k,

    each transformation seeing (and keeping state for) only the sub-dict of its arrays, as
    optax's ``multi_transform``. Used to give hidden matrices one optimizer (Muon) and
    embeddings, gains and biases another (AdamW).

    Args:
        transforms: label -> :class:`GradientTransformation`.
        label_fn: key -> label; every key's label must be in ``transforms``.

    Reference: optax ``multi_transform``.
    """
    for label, t in transforms.items():
        if not isinstance(t, GradientTransformation):
            raise ValueError(f"transforms[{label!r}] must be a GradientTransformation, got {t!r}")
    if not callable(label_fn):
        raise ValueError(f"label_fn must be a function of the key, got {label_fn!r}")

    def groups(tree):
        if not isinstance(tree, dict):
            raise ValueError(f"partition needs dict parameters, got {type(tree).__name__}")
        out = {label: {} for label in transforms}
        for key, value in tree.items():
            label = label_fn(key)
            if label not in transforms:
                raise ValueError(f"label_fn({key!r}) = {label!r} is not one of {sorted(transforms)}")
            out[label][key] = value
        return out

    def init(params):
        return {label: transforms[label].init(sub) for label, sub in groups(params).items()}

    def update(updates, state, params=None):
        if params is not None:
            check_tree_match(updates, params, name="grads")
        parts = groups(updates)
        sub_params = groups(params) if params is not None else {label: None for label in transforms}
        new_state, merged = {}, {}
        for label, t in transforms.items():
            u, new_state[label] = t.update(parts[label], state[label], sub_params[label])
            merged.update(u)
        return {key: merged[key] for key in updates}, new_state

    return GradientTransformation(init, update)
