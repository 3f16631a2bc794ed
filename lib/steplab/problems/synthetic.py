r"""Deterministic synthetic data sets for the problems."""

from __future__ import annotations

import numpy as np

from .._checks import check_int, check_number

__all__ = ["make_least_squares", "make_classification"]


def make_least_squares(n, d, noise=0.1, seed=0, overparameterized=False, return_coef=False):
    r"""A random linear regression data set.

    .. math::

        A_{ij} \sim \mathcal N(0, 1), \qquad
        x^\dagger \sim \mathcal N(0, I_d/d), \qquad
        b = A x^\dagger + \sigma\,\varepsilon,\; \varepsilon \sim \mathcal N(0, I_n),

    all drawn from ``np.random.default_rng(seed)``. With ``d < n`` the
    problem :math:`\min_x \tfrac1{2n}\|Ax - b\|^2` is strongly convex; with
    ``overparameterized=True`` (which requires ``d > n``) :math:`A` has full
    row rank almost surely, so some :math:`x` fits :math:`b` exactly,
    :math:`f^\star = 0`, and the Polyak-Lojasiewicz inequality holds with
    the smallest nonzero eigenvalue of :math:`A^\top A/n` although
    :math:`\mu = 0`.

    Arguments:
        n: number of examples.
        d: number of features.
        noise: standard deviation :math:`\sigma \ge 0` of the label noise.
        seed: seed of ``np.random.default_rng``.
        overparameterized: assert the interpolation regime ``d > n``.
        return_coef: also return :math:`x^\dagger`.

    Returns ``(A, b)``, or ``(A, b, x_true)`` with ``return_coef=True``.

    Reference: H. Karimi, J. Nutini and M. Schmidt, "Linear convergence of
    gradient and proximal-gradient methods under the Polyak-Lojasiewicz
    condition", ECML PKDD 2016.
    """
    n = check_int("n", n, low=1)
    d = check_int("d", d, low=1)
    noise = check_number("noise", noise, low=0.0)
    if overparameterized and d <= n:
        raise ValueError(f"overparameterized=True needs d > n, got d={d}, n={n}")
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d))
    x_true = rng.standard_normal(d) / np.sqrt(d)
    b = A @ x_true + noise * rng.standard_normal(n)
    return (A, b, x_true) if return_coef else (A, b)


def make_classification(n, d, n_classes=2, seed=0, separation=2.0):
    r"""A Gaussian-mixture classification data set with balanced classes.

    .. math::

        y_i = \pi(i) \bmod K, \qquad
        m_c \sim \mathcal N\!\big(0, \tfrac{s^2}{d} I_d\big), \qquad
        x_i = m_{y_i} + \varepsilon_i,\; \varepsilon_i \sim \mathcal N(0, I_d),

    with :math:`\pi` a random permutation, all drawn from
    ``np.random.default_rng(seed)``. The class means are about :math:`s`
    apart, so ``separation`` controls how much the classes overlap (the
    data are not linearly separable for moderate :math:`s`, so logistic
    regression without L2 still has a minimizer as long as
    :math:`n \gg d`).

    Arguments:
        n: number of examples (at least ``n_classes``).
        d: number of features.
        n_classes: number of classes :math:`K \ge 2`.
        seed: seed of ``np.random.default_rng``.
        separation: scale :math:`s > 0` of the class means.

    Returns ``(X, y)`` with ``X`` of shape ``(n, d)`` (float64) and integer
    labels ``y`` in ``{0, ..., n_classes - 1}``.

    Reference: T. Hastie, R. Tibshirani and J. Friedman, *The Elements of
    Statistical Learning*, 2nd ed., Springer, 2009, Section 4.3 (Gaussian
    classes).
    """
    n = check_int("n", n, low=1)
    d = check_int("d", d, low=1)
    n_classes = check_int("n_classes", n_classes, low=2)
    if n < n_classes:
        raise ValueError(f"n must be >= n_classes={n_classes}, got n={n}")
    separation = check_number("separation", separation, low=0.0, low_open=True)
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % n_classes)
    means = rng.standard_normal((n_classes, d)) * separation / np.sqrt(d)
    X = means[y] + rng.standard_normal((n, d))
    return X, y.astype(np.int64)
