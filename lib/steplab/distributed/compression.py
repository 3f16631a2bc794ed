r"""Gradient compression for communication: top-k sparsification, QSGD quantization, error feedback."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .._checks import check_int

__all__ = ["top_k", "stochastic_quantize", "quantization_variance_bound", "error_feedback_step",
           "top_k_compressor", "quantize_compressor"]


def top_k(x, k: int) -> np.ndarray:
    r"""Top-:math:`k` sparsification: keep the :math:`k` entries of largest magnitude.

    .. math::

        \mathrm{top}_k(x)_i = \begin{cases} x_i & i \in \text{the } k \text{ largest } |x_i| \\
        0 & \text{otherwise,} \end{cases}
        \qquad \|x - \mathrm{top}_k(x)\|^2 \le (1 - k/d)\,\|x\|^2 .

    Biased; used with error feedback (:func:`error_feedback_step`). Ties are broken by position.

    Args:
        x: array of :math:`d` entries (any shape; the selection is over all entries).
        k: entries kept, :math:`1 \le k \le d`.

    Reference: D. Alistarh et al., "The convergence of sparsified gradient methods",
    NeurIPS 2018; S. U. Stich et al., "Sparsified SGD with memory", NeurIPS 2018.
    """
    x = np.asarray(x)
    d = x.size
    k = check_int("k", k, low=1, high=d)
    flat = x.ravel()
    keep = np.argpartition(-np.abs(flat), k - 1, kind="introselect")[:k]
    out = np.zeros_like(flat)
    out[keep] = flat[keep]
    return out.reshape(x.shape)


def stochastic_quantize(x, s: int, rng) -> np.ndarray:
    r"""Unbiased stochastic quantization to :math:`s` levels (QSGD).

    With :math:`\ell_i = \lfloor s |x_i| / \|x\| \rfloor` and :math:`p_i = s|x_i|/\|x\| - \ell_i`,

    .. math::

        Q_s(x)_i = \|x\|\, \mathrm{sign}(x_i)\, \frac{\ell_i + \xi_i}{s}, \qquad
        \xi_i \sim \mathrm{Bernoulli}(p_i),

    so :math:`\mathbb E[Q_s(x)] = x`, coordinate variance :math:`\|x\|^2 p_i(1-p_i)/s^2`, and
    :math:`\mathbb E\|Q_s(x) - x\|^2 \le \min(d/s^2, \sqrt d / s)\,\|x\|^2`
    (:func:`quantization_variance_bound`). A message is the norm, the signs and integers in
    :math:`\{0, \dots, s\}`.

    Args:
        x: array to quantize.
        s: number of levels, an integer :math:`\ge 1`.
        rng: a ``np.random.Generator``.

    Reference: D. Alistarh, D. Grubic, J. Li, R. Tomioka and M. Vojnovic, "QSGD:
    Communication-efficient SGD via gradient quantization and encoding", NeurIPS 2017, Lemma 3.1.
    """
    s = check_int("s", s, low=1)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a np.random.Generator, got {type(rng).__name__}")
    x = np.asarray(x)
    norm = float(np.linalg.norm(x.ravel()))
    if norm == 0.0:
        return np.zeros_like(x)
    scaled = s * np.abs(x) / norm
    level = np.floor(scaled)
    xi = rng.random(x.shape) < (scaled - level)
    return (norm * np.sign(x) * (level + xi) / s).astype(x.dtype, copy=False)


def quantization_variance_bound(d: int, s: int) -> float:
    r"""QSGD's bound on the relative variance, :math:`\mathbb E\|Q_s(x)-x\|^2 / \|x\|^2 \le
    \min(d/s^2, \sqrt d/s)`.

    Args:
        d: dimension.
        s: number of levels.

    Reference: Alistarh et al., NeurIPS 2017, Lemma 3.1.
    """
    d = check_int("d", d, low=1)
    s = check_int("s", s, low=1)
    return float(min(d / s**2, np.sqrt(d) / s))


def error_feedback_step(g, residual, compress: Callable, rng=None):
    r"""One step of error feedback: compress the gradient plus what earlier steps failed to send.

    .. math::

        p = g + e, \qquad \text{sent} = C(p), \qquad e \leftarrow p - C(p),

    so after :math:`T` steps :math:`\sum_t \text{sent}_t + e_T = \sum_t g_t` exactly: nothing
    is lost, only delayed.

    Args:
        g: the new gradient (flat array).
        residual: the accumulated error :math:`e` (same shape; zeros at the start).
        compress: ``fn(vector, rng) -> vector``, e.g. from :func:`top_k_compressor`.
        rng: generator passed to ``compress``.

    Returns:
        ``(sent, new_residual)``.

    Reference: F. Seide et al., "1-bit stochastic gradient descent and its application to
    data-parallel distributed training of speech DNNs", Interspeech 2014; S. U. Stich,
    J.-B. Cordonnier and M. Jaggi, "Sparsified SGD with memory", NeurIPS 2018.
    """
    g = np.asarray(g)
    residual = np.asarray(residual)
    if g.shape != residual.shape:
        raise ValueError(f"residual has shape {residual.shape} but g has shape {g.shape}")
    p = g + residual
    sent = compress(p, rng)
    return sent, p - sent


def top_k_compressor(k: int) -> Callable:
    """A compressor ``fn(vector, rng)`` keeping the ``k`` largest-magnitude entries (see :func:`top_k`)."""
    k = check_int("k", k, low=1)

    def compress(x, rng=None):
        return top_k(x, min(k, np.size(x)))

    compress.__name__ = f"top_{k}"
    return compress


def quantize_compressor(s: int) -> Callable:
    """A compressor ``fn(vector, rng)`` applying :func:`stochastic_quantize` with ``s`` levels."""
    s = check_int("s", s, low=1)

    def compress(x, rng):
        return stochastic_quantize(x, s, rng)

    compress.__name__ = f"qsgd_{s}"
    return compress
