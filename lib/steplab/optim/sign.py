r"""Updates that keep only a direction: sign descent, Lion, and the orthogonalized matrix update.

Each returns a :class:`~steplab.optim.GradientTransformation`; the named optimizers
:func:`signsgd` and :func:`lion` are chains of them, in the layout of the other aliases.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .base import EmptyState, GradientTransformation, chain
from .._checks import check_int, check_lr, check_nonnegative, check_unit_interval
from .._tree import Params, tree_map, tree_zeros_like
from .transforms import add_decayed_weights, add_l2, ema, scale_by_learning_rate


def scale_by_sign() -> GradientTransformation:
    r"""Keep the sign of every coordinate: :math:`u = \mathrm{sign}(g)`, with :math:`\mathrm{sign}(0) = 0`.

    Reference: Bernstein, Wang, Azizzadenesheli and Anandkumar, *signSGD: Compressed
    Optimisation for Non-Convex Problems*, ICML 2018.
    """

    def init(params):
        return EmptyState()

    def update(updates, state, params=None):
        return tree_map(np.sign, updates), state

    return GradientTransformation(init, update)


class ScaleByLionState(NamedTuple):
    """``m``: the momentum :math:`m_t` (an EMA of the gradients with :math:`\\beta_2`)."""

    m: Params


def scale_by_lion(beta1: float = 0.9, beta2: float = 0.99) -> GradientTransformation:
    r"""Lion's direction (Chen et al. 2023, Algorithm 2):

    .. math::

        c_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad u_t = \mathrm{sign}(c_t), \qquad
        m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t,

    with :math:`m_0 = 0`: the sign is taken of an interpolation that weighs the current
    gradient more (:math:`\beta_1 < \beta_2`) than the momentum that is stored.

    Args:
        beta1: :math:`\beta_1 \in [0, 1)`, the interpolation for the update.
        beta2: :math:`\beta_2 \in [0, 1)`, the decay of the stored momentum.

    Reference: Chen et al., *Symbolic Discovery of Optimization Algorithms*, NeurIPS 2023,
    Algorithm 2; optax ``scale_by_lion``.
    """
    beta1 = check_unit_interval("beta1", beta1)
    beta2 = check_unit_interval("beta2", beta2)

    def init(params):
        return ScaleByLionState(m=tree_zeros_like(params))

    def update(updates, state, params=None):
        direction = tree_map(lambda g, m: np.sign(beta1 * m + (1.0 - beta1) * g), updates, state.m)
        m = tree_map(lambda g, m: beta2 * m + (1.0 - beta2) * g, updates, state.m)
        return direction, ScaleByLionState(m=m)

    return GradientTransformation(init, update)


def signsgd(lr, momentum: float = 0.0, weight_decay: float = 0.0) -> GradientTransformation:
    r"""Sign descent, with optional momentum (signum):

    .. math::

        g_t \leftarrow g_t + \lambda\theta_{t-1}, \qquad
        m_t = \mu m_{t-1} + (1-\mu) g_t, \qquad
        \theta_t = \theta_{t-1} - \eta_t\, \mathrm{sign}(m_t)

    (:math:`m_t = g_t` when :math:`\mu = 0`). Every coordinate moves by exactly
    :math:`\eta_t` (or 0), whatever the gradient's size: the limit of Adam with
    :math:`\beta_1 = \beta_2 = 0` and :math:`\epsilon = 0`.

    ``chain(add_l2(weight_decay), ema(momentum), scale_by_sign(), scale_by_learning_rate(lr))``
    (the EMA is left out when :math:`\mu = 0`).

    Args:
        lr: learning rate :math:`\eta \ge 0`, a number or a schedule.
        momentum: :math:`\mu \in [0, 1)`.
        weight_decay: coupled (L2) weight decay :math:`\lambda \ge 0`, added before the sign.

    Reference: Bernstein et al., *signSGD: Compressed Optimisation for Non-Convex Problems*,
    ICML 2018 (Algorithms 1 and 3).
    """
    lr = check_lr(lr)
    momentum = check_unit_interval("momentum", momentum)
    parts = [add_l2(weight_decay)]
    if momentum > 0.0:
        parts.append(ema(momentum))
    parts += [scale_by_sign(), scale_by_learning_rate(lr)]
    return chain(*parts)


def lion(lr, beta1: float = 0.9, beta2: float = 0.99, weight_decay: float = 0.0) -> GradientTransformation:
    r"""Lion, evolved sign momentum:

    .. math::

        c_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        \theta_t = \theta_{t-1} - \eta_t\big(\mathrm{sign}(c_t) + \lambda\theta_{t-1}\big), \qquad
        m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t.

    The update has RMS :math:`\eta` exactly (every coordinate :math:`\pm\eta` before the
    decay), larger than Adam's, so the paper uses a learning rate 3-10x smaller than
    AdamW's and a :math:`\lambda` 3-10x larger. One state array (:math:`m`) against Adam's two.

    ``chain(scale_by_lion(beta1, beta2), add_decayed_weights(weight_decay),
    scale_by_learning_rate(lr))``.

    Args:
        lr: learning rate :math:`\eta \ge 0`, a number or a schedule.
        beta1: :math:`\beta_1 \in [0, 1)`.
        beta2: :math:`\beta_2 \in [0, 1)`.
        weight_decay: decoupled weight decay :math:`\lambda \ge 0` (multiplied by the learning rate).

    Reference: Chen et al., *Symbolic Discovery of Optimization Algorithms*, NeurIPS 2023,
    Algorithm 2; ``optax.lion``.
    """
    return chain(scale_by_lion(beta1, beta2), add_decayed_weights(weight_decay), scale_by_learning_rate(lr))


# Coefficients of Muon's quintic Newton-Schulz iteration (Jordan et al. 2024).
NEWTON_SCHULZ_COEFFS = (3.4445, -4.7750, 2.0315)


def newton_schulz(G: np.ndarray, steps: int = 5, eps: float = 1e-7) -> np.ndarray:
    r"""Approximate the orthogonal factor :math:`UV^\top` of :math:`G = U\Sigma V^\top` by Muon's iteration:

    .. math::

        X_0 = G / (\|G\|_F + \epsilon), \qquad
        X_{k+1} = a X_k + b (X_k X_k^\top) X_k + c (X_k X_k^\top)^2 X_k,

    :math:`(a, b, c) = (3.4445, -4.7750, 2.0315)`, on the wide orientation of :math:`G`
    (transposed when it has more rows than columns). Each step maps every singular value
    :math:`s \mapsto a s + b s^3 + c s^5` and keeps the singular vectors; the coefficients
    make small singular values grow fast, and after 5 steps the singular values lie
    roughly in :math:`[0.7, 1.2]` instead of exactly at 1.

    Args:
        G: a 2-D array.
        steps: number of iterations (>= 0).
        eps: :math:`\epsilon \ge 0`, guards a zero matrix.

    Reference: K. Jordan et al., *Muon: An optimizer for hidden layers in neural networks*,
    2024 (kellerjordan.github.io/posts/muon).
    """
    G = np.asarray(G)
    if G.ndim != 2:
        raise ValueError(f"G must be a 2-D array, got shape {G.shape}")
    steps = check_int("steps", steps, low=0)
    eps = check_nonnegative("eps", eps)
    a, b, c = NEWTON_SCHULZ_COEFFS
    tall = G.shape[0] > G.shape[1]
    X = G.T if tall else G
    X = X / (np.linalg.norm(X) + eps)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if tall else X


def scale_by_orthogonalized(steps: int = 5, eps: float = 1e-7) -> GradientTransformation:
    r"""Muon's matrix update: every 2-D array :math:`g` (shape :math:`n\times m`) becomes

    .. math::

        u = \sqrt{\max(1, n/m)}\;\mathrm{NS}_5(g) \approx \sqrt{\max(1, n/m)}\; U V^\top,

    (:func:`newton_schulz`), so all its singular directions move by about the same amount;
    other arrays pass unchanged (Muon is meant for hidden matrices, with embeddings, gains
    and biases left to another optimizer).

    Args:
        steps: Newton-Schulz iterations (>= 0).
        eps: :math:`\epsilon \ge 0` in the normalization.

    Reference: K. Jordan et al., *Muon: An optimizer for hidden layers in neural networks*, 2024.
    """
    steps = check_int("steps", steps, low=0)
    eps = check_nonnegative("eps", eps)

    def one(g):
        if np.ndim(g) != 2:
            return g
        n, m = np.shape(g)
        return (newton_schulz(g, steps, eps) * max(1.0, n / m) ** 0.5).astype(np.result_type(g), copy=False)

    def init(params):
        return EmptyState()

    def update(updates, state, params=None):
        return tree_map(one, updates), state

    return GradientTransformation(init, update)
