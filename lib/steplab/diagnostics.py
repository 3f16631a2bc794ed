r"""The quantities a practitioner logs while training, and what their values mean.

Parameters, gradients and updates are an ndarray or a flat ``dict[str, ndarray]``;
norms are global (over every array of a dict), as in ``clip_by_global_norm``.
Problems follow the ``steplab.problems`` interface (``grad``, ``hvp``, and for
finite sums ``n``, ``grad_batch``, ``per_example_grads``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import optim
from ._checks import check_finite_sum, check_int
from ._tree import tree_flatten, tree_norm, tree_unflatten

__all__ = [
    "grad_norm",
    "update_ratio",
    "sharpness",
    "sharpness_metric",
    "hessian",
    "minibatch_variance",
    "OracleError",
    "oracle_mean_error",
    "NoiseScale",
    "noise_scale",
    "noise_scale_from_norms",
    "noise_scale_exact",
    "effective_step_size",
    "loss_ratio",
    "LRRangeTest",
    "lr_range_test",
]


def _check_batch_size(name: str, value, n: int, replace: bool) -> int:
    b = check_int(name, value, low=1)
    if not replace and b > n:
        raise ValueError(f"{name} must be <= n = {n} when sampling without replacement, got {b}")
    return b


def grad_norm(grads) -> float:
    r"""Global Euclidean norm $\|g\|_2 = \big(\sum_{\text{arrays } a} \sum_i a_i^2\big)^{1/2}$.

    Args:
        grads: an ndarray or a dict of ndarrays.

    Trouble: a norm that grows over several steps while the loss rises means
    the step size is above the stability limit; isolated spikes of 10x or more
    are what gradient clipping guards against; a norm that is not finite means
    the run has already diverged.
    """
    return tree_norm(grads)


def update_ratio(updates, params, per_array: bool = False):
    r"""Update-to-parameter ratio $\|\Delta\theta\|_2 / \|\theta\|_2$.

    Args:
        updates: the update $\Delta\theta$ applied this step (same structure as ``params``).
        params: the parameters the update is applied to.
        per_array: for a dict, return ``{key: ratio}`` per array instead of the global ratio.

    Returns:
        The ratio (0 when both norms are 0, ``inf`` when only the parameter norm is 0).

    Trouble: for neural networks a ratio around $10^{-3}$ per step is the
    usual healthy range (Karpathy's rule of thumb); above about $10^{-2}$ the
    learning rate is likely too large (parameters are rewritten each step),
    below about $10^{-4}$ it is likely too small. A layer whose ratio is far
    from the others is learning at a different speed (what LARS and LAMB fix).

    Reference: A. Karpathy, CS231n notes, "Babysitting the learning process".
    """

    def ratio(u, p) -> float:
        nu, np_ = tree_norm(u), tree_norm(p)
        if np_ == 0:
            return 0.0 if nu == 0 else float("inf")
        return float(nu / np_)

    if per_array:
        if not isinstance(params, dict):
            raise ValueError("per_array=True needs dict params, got an array")
        return {k: ratio(updates[k], params[k]) for k in params}
    return ratio(updates, params)


def sharpness(
    problem,
    theta,
    iters: int = 100,
    seed: int = 0,
    tol: float = 1e-10,
    v0=None,
    return_vector: bool = False,
):
    r"""Top Hessian eigenvalue by power iteration on Hessian-vector products.

    $v_{k+1} = H v_k / \|H v_k\|$, $\lambda_k = v_k^\top H v_k$, with $H = \nabla^2 f(\theta)$
    applied through ``problem.hvp(theta, v)``. Power iteration finds the
    eigenvalue of largest magnitude; for a convex problem (and near a minimum
    of any problem) that is the largest eigenvalue.

    Args:
        problem: has ``hvp(theta, v)``.
        theta: where to measure (ndarray or dict).
        iters: maximum number of Hessian-vector products.
        seed: seed of the random start vector (used only when ``v0`` is None).
        tol: stop when $|\lambda_k - \lambda_{k-1}| \le \text{tol}\,|\lambda_k|$.
        v0: start vector (same structure as ``theta``, nonzero), e.g. the vector returned by
            the previous measurement: the top eigenvector moves little between nearby
            iterates, so a warm start needs far fewer products than a random one.
        return_vector: also return the last iterate $v$ (unit norm, structure of ``theta``),
            the estimate of the top eigenvector.

    Returns:
        $\lambda$, or ``(lambda, v)`` when ``return_vector``.

    Trouble: gradient descent with step $\eta$ is stable on a quadratic only
    while sharpness $< 2/\eta$. Sharpness that rises to about $2/\eta$ and
    hovers there is the edge of stability; well above $2/\eta$ the loss blows up.

    Reference: Cohen et al., "Gradient Descent on Neural Networks Typically
    Occurs at the Edge of Stability", ICLR 2021.
    """
    iters = check_int("iters", iters, low=1)
    if not hasattr(problem, "hvp"):
        raise ValueError(f"sharpness needs problem.hvp; {type(problem).__name__} has none")
    dim = tree_flatten(theta).size
    if v0 is None:
        v = np.random.default_rng(seed).standard_normal(dim)
    else:
        if isinstance(v0, dict) != isinstance(theta, dict) or (
            isinstance(v0, dict) and sorted(v0) != sorted(theta)
        ):
            raise ValueError("v0 must have the structure of theta (the same dict keys, or an array)")
        v = tree_flatten(v0)
        if v.size != dim:
            raise ValueError(f"v0 must have {dim} entries like theta, got {v.size}")
        if not (np.all(np.isfinite(v)) and np.any(v != 0)):
            raise ValueError("v0 must be finite and nonzero")
    v = v / np.linalg.norm(v)
    lam_prev = np.inf
    lam = 0.0
    for _ in range(iters):
        hv = tree_flatten(problem.hvp(theta, tree_unflatten(v, theta)))
        lam = float(v @ hv)
        norm = np.linalg.norm(hv)
        if norm == 0:
            lam = 0.0
            break
        v = hv / norm
        if abs(lam - lam_prev) <= tol * abs(lam):
            break
        lam_prev = lam
    if return_vector:
        return lam, tree_unflatten(v, theta)
    return lam


def hessian(problem, theta) -> np.ndarray:
    r"""The dense Hessian from Hessian-vector products with the basis vectors, symmetrized:

    $H = \tfrac12(M + M^\top)$, $M = [\,\nabla^2 f(\theta) e_1, \dots, \nabla^2 f(\theta) e_d\,]$,
    with $\nabla^2 f(\theta) e_i$ = ``problem.hvp(theta, e_i)``.

    The exact Hessian is symmetric; symmetrizing removes the rounding (or finite-difference)
    asymmetry of the products so that ``np.linalg.eigvalsh`` applies. It costs $d$ products,
    so it is for small $d$: read $L$ and $\mu$ off its extreme eigenvalues, or check
    a problem's constants independently of the code that computes them.

    Args:
        problem: has ``hvp(theta, v)``.
        theta: where to evaluate, an ndarray (any shape; the matrix indexes its entries in
            row-major order) or a dict of arrays (keys in sorted order, then row-major).

    Returns:
        The symmetric $d \times d$ float64 matrix, $d$ the number of parameters.

    Reference: Pearlmutter, "Fast Exact Multiplication by the Hessian", Neural
    Computation 1994 (Hessian-vector products).
    """
    if not hasattr(problem, "hvp"):
        raise ValueError(f"hessian needs problem.hvp; {type(problem).__name__} has none")
    dim = tree_flatten(theta).size
    if dim == 0:
        raise ValueError("theta must have at least one entry, got an empty array")
    basis = np.eye(dim)
    M = np.column_stack([tree_flatten(problem.hvp(theta, tree_unflatten(e, theta))) for e in basis])
    return 0.5 * (M + M.T)


def sharpness_metric(problem, iters: int = 20, tol: float = 1e-3, seed: int = 0, warm_start: bool = True):
    r"""The sharpness $\lambda_{\max}(\nabla^2 f(\theta_t))$ as a metric for ``steplab.run.minimize``.

    Returns ``fn(theta, grad, update, state) -> float`` that calls :func:`sharpness` at
    $\theta_t$. With ``warm_start``, each call starts the power iteration from the vector the
    previous call ended on, so a few products per measurement suffice once the run has
    started; the function therefore keeps state: build one per run. Pair it with
    ``minimize(..., metrics_every=k)`` to pay for it only every ``k`` steps.

    Args:
        problem: has ``hvp(theta, v)``.
        iters, tol: as in :func:`sharpness`, per measurement.
        seed: seed of the first (random) start vector.
        warm_start: start each measurement from the previous eigenvector estimate.

    Trouble: see :func:`sharpness`; under full-batch GD a sharpness that climbs to $2/\eta$
    and hovers there is the edge of stability.
    """
    iters = check_int("iters", iters, low=1)
    if not hasattr(problem, "hvp"):
        raise ValueError(f"sharpness_metric needs problem.hvp; {type(problem).__name__} has none")
    last = {"v": None}

    def fn(theta, grad=None, update=None, state=None) -> float:
        lam, v = sharpness(problem, theta, iters=iters, seed=seed, tol=tol, v0=last["v"], return_vector=True)
        if warm_start:
            last["v"] = v
        return lam

    return fn


def minibatch_variance(
    problem, theta, batch_size: int, n_batches: int = 100, seed: int = 0, replace: bool = False
) -> float:
    r"""Monte Carlo estimate of $\mathbb{E}\,\|g_B - \nabla f(\theta)\|^2$.

    $g_B = \frac{1}{B}\sum_{i \in B} \nabla f_i(\theta)$ over a batch of size $B$
    drawn uniformly (without replacement inside the batch unless ``replace``).
    With $\sigma^2 = \frac1n \sum_i \|\nabla f_i - \nabla f\|^2$ the exact value is
    $\frac{\sigma^2}{B}$ with replacement and $\frac{\sigma^2}{B}\frac{n-B}{n-1}$ without.

    Args:
        problem: a finite sum (``n``, ``grad``, ``grad_batch``).
        theta: where to measure.
        batch_size: $B$.
        n_batches: number of independent batches averaged.
        seed: seed of ``np.random.default_rng``.
        replace: sample each batch with replacement.

    Trouble: when this variance is much larger than $\|\nabla f\|^2$ the
    gradient is mostly noise: a larger batch or a smaller step helps; when it
    is much smaller, a larger batch wastes computation.
    """
    n = check_finite_sum(problem, ("n", "grad_batch"), what="minibatch_variance")
    b = _check_batch_size("batch_size", batch_size, n, replace)
    n_batches = check_int("n_batches", n_batches, low=1)
    rng = np.random.default_rng(seed)
    g = tree_flatten(problem.grad(theta))
    total = 0.0
    for _ in range(n_batches):
        idx = rng.choice(n, size=b, replace=replace)
        total += float(np.sum((tree_flatten(problem.grad_batch(theta, idx)) - g) ** 2))
    return total / n_batches


class OracleError(NamedTuple):
    """What :func:`oracle_mean_error` measured, one entry per requested $M$."""

    Ms: np.ndarray
    """The numbers $M$ of oracle calls averaged, as requested."""
    mse: np.ndarray
    """Mean over the runs of $\\|\\bar g_M - \\nabla f(\\theta)\\|^2$."""
    se: np.ndarray
    """Standard error of ``mse``: the standard deviation over the runs (``ddof=1``) over $\\sqrt R$."""
    predicted: np.ndarray
    """The exact expectation $\\|\\beta\\|^2 + \\sigma^2/(BM)$."""
    sigma2: float
    """$\\sigma^2 = \\frac1n\\sum_i \\|T(\\nabla f_i) - \\overline{T}\\|^2$, the per-example variance of the oracle."""
    bias2: float
    """$\\|\\beta\\|^2 = \\|\\overline{T} - \\nabla f\\|^2$ (zero up to rounding without ``transform``)."""


def oracle_mean_error(problem, theta, batch_size: int, Ms, n_runs: int, seed: int = 0, transform=None) -> OracleError:
    r"""Monte Carlo estimate of $\mathbb{E}\,\|\bar g_M - \nabla f(\theta)\|^2$ for an average of $M$ oracle calls.

    $$\bar g_M = \frac1M \sum_{m=1}^{M} g^{(m)}, \qquad
    g^{(m)} = \frac1B \sum_{b=1}^{B} T\big(\nabla f_{i_{m,b}}(\theta)\big), \qquad
    \mathbb{E}\,\|\bar g_M - \nabla f(\theta)\|^2 = \|\beta\|^2 + \frac{\sigma^2}{BM},$$

    where the indices $i_{m,b}$ are i.i.d. uniform on $\{0, \dots, n-1\}$ (sampling with
    replacement, inside a batch and across calls), $T$ is ``transform`` (the identity by
    default), $\overline{T} = \frac1n\sum_i T(\nabla f_i(\theta))$,
    $\beta = \overline{T} - \nabla f(\theta)$ and
    $\sigma^2 = \frac1n\sum_i \|T(\nabla f_i(\theta)) - \overline{T}\|^2$. The equality holds
    because $\bar g_M$ is the mean of $BM$ i.i.d. vectors with mean $\nabla f + \beta$ and total
    variance $\sigma^2$. Without ``transform``, $\beta = 0$ and the oracle is the unbiased minibatch
    gradient: $\mathbb{E}\|\bar g_M - \nabla f\|^2 = \sigma^2/(BM)$, so averaging drives the error
    to zero; a biased oracle (clipped per-example gradients, say) levels off at $\|\beta\|^2$.
    (Were each batch drawn without replacement, the variance term would carry the
    finite-population factor, $\frac{\sigma^2}{BM}\frac{n-B}{n-1}$; this function does not do that.)

    The runs are independent and each $\bar g_M$ is a running average, so the values for
    different $M$ share their first calls. Draws: one ``np.random.default_rng(seed)``; call
    $m = 1, \dots, \max M$ takes ``integers(n, size=(n_runs, batch_size))``, row $r$ being the
    batch of run $r$. With ``transform=None``, $g^{(m)}$ of run $r$ equals
    ``problem.grad_batch(theta, idx[r])``; it is computed from ``problem.per_example_grads(theta)``
    evaluated once.

    Args:
        problem: a finite sum with ``n``, ``grad`` and ``per_example_grads``.
        theta: where to measure.
        batch_size: $B \ge 1$ (any size: the draws are with replacement).
        Ms: a non-empty 1-D sequence of positive integers $M$.
        n_runs: number $R \ge 2$ of independent runs averaged.
        seed: seed of ``np.random.default_rng``.
        transform: ``None`` or a per-example map $T$ applied to the output of
            ``problem.per_example_grads(theta)`` (e.g.
            ``lambda G: steplab.distributed.clip_per_example(G, 1.0)``); it must return the
            same structure and shapes.

    Returns:
        ``OracleError(Ms, mse, se, predicted, sigma2, bias2)``.

    Trouble: when the measured error stops falling like $1/M$ the oracle is biased (clipping,
    quantization without dithering, stale gradients), and no batch size or step-size
    schedule removes an $O(\|\beta\|)$ error in what SGD converges to.

    Reference: Bottou, Curtis and Nocedal, "Optimization Methods for Large-Scale Machine
    Learning", SIAM Review 60(2), 2018, Section 5.2 (unbiased estimates and their variance).
    """
    n = check_finite_sum(problem, ("n", "grad", "per_example_grads"), what="oracle_mean_error")
    b = check_int("batch_size", batch_size, low=1)
    n_runs = check_int("n_runs", n_runs, low=2)  # the standard error needs two runs
    Ms_arr = np.asarray(Ms)
    if (
        Ms_arr.ndim != 1
        or Ms_arr.size == 0
        or not (np.issubdtype(Ms_arr.dtype, np.integer) and np.all(Ms_arr >= 1))
    ):
        raise ValueError(f"Ms must be a non-empty 1-D sequence of positive integers, got {Ms!r}")
    if transform is not None and not callable(transform):
        raise ValueError(f"transform must be None or callable, got {transform!r}")

    g_full = tree_flatten(problem.grad(theta))
    G_i = _oracle_examples(problem, theta, transform, (n, g_full.size))
    mean_T = G_i.mean(axis=0)
    sigma2 = float(np.mean(np.sum((G_i - mean_T) ** 2, axis=1)))
    bias2 = float(np.sum((mean_T - g_full) ** 2))

    wanted = set(int(m) for m in Ms_arr)
    rng = np.random.default_rng(seed)
    sums = np.zeros((n_runs, g_full.size))
    err = {}
    for k in range(1, int(Ms_arr.max()) + 1):
        idx = rng.integers(n, size=(n_runs, b))
        sums += G_i[idx].mean(axis=1)
        if k in wanted:
            err[k] = np.sum((sums / k - g_full) ** 2, axis=1)
    mse = np.array([np.mean(err[int(m)]) for m in Ms_arr])
    se = np.array([np.std(err[int(m)], ddof=1) / np.sqrt(n_runs) for m in Ms_arr])
    predicted = bias2 + sigma2 / (b * Ms_arr.astype(np.float64))
    return OracleError(Ms_arr.copy(), mse, se, predicted, sigma2, bias2)


def _oracle_examples(problem, theta, transform, shape) -> np.ndarray:
    """The ``(n, dim)`` matrix of per-example gradients, passed through ``transform`` when given."""
    pe = problem.per_example_grads(theta)
    G_i = _flatten_examples(pe, "per_example_grads")
    if G_i.shape != shape:
        raise ValueError(f"per_example_grads must have {shape[0]} rows of {shape[1]} entries, got shape {G_i.shape}")
    if transform is not None:
        G_i = _flatten_examples(transform(pe), "the output of transform")
        if G_i.shape != shape:
            raise ValueError(f"transform must return per-example gradients of shape {shape}, got {G_i.shape}")
    return G_i


def _flatten_examples(pe, what: str) -> np.ndarray:
    """Per-example gradients (an array with a leading example axis, or a dict of them) as ``(m, dim)`` float64."""
    leaves = [np.asarray(pe[k]) for k in sorted(pe)] if isinstance(pe, dict) else [np.asarray(pe)]
    rows = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
    if len(rows) != 1 or None in rows:
        shapes = [leaf.shape for leaf in leaves]
        raise ValueError(f"{what} must have one leading example axis shared by every array, got shapes {shapes}")
    m = rows.pop()
    return np.concatenate([leaf.reshape(m, -1) for leaf in leaves], axis=1).astype(np.float64)


class NoiseScale(NamedTuple):
    """The simple noise scale and the two quantities it is the ratio of."""

    b_simple: float
    """$\\mathcal{B}_{\\text{simple}} = \\operatorname{tr}(\\Sigma) / \\|G\\|^2$."""
    trace_sigma: float
    """$\\operatorname{tr}(\\Sigma)$, trace of the per-example gradient covariance."""
    grad_sq: float
    """$\\|G\\|^2$, squared norm of the full gradient."""


def noise_scale(
    problem,
    theta,
    batch_small: int,
    batch_big: int,
    n_batches: int = 1,
    seed: int = 0,
    replace: bool = True,
) -> NoiseScale:
    r"""Gradient noise scale $\mathcal{B}_{\text{simple}} = \operatorname{tr}(\Sigma)/\|G\|^2$ from two batch sizes.

    With replacement, $\mathbb{E}\|g_B\|^2 = \|G\|^2 + \operatorname{tr}(\Sigma)/B$, so the
    measured $\|g_{\text{small}}\|^2$ and $\|g_{\text{big}}\|^2$ give the unbiased estimates

    $$\widehat{\|G\|^2} = \frac{B_{\text{big}}\|g_{\text{big}}\|^2 - B_{\text{small}}\|g_{\text{small}}\|^2}{B_{\text{big}} - B_{\text{small}}},\qquad
    \widehat{\operatorname{tr}\Sigma} = \frac{\|g_{\text{small}}\|^2 - \|g_{\text{big}}\|^2}{1/B_{\text{small}} - 1/B_{\text{big}}}.$$

    Without replacement $1/B$ becomes $c_B = \frac{1}{B}\frac{n-B}{n-1}$ (finite-population
    correction) and the same two equations are solved with $c_B$, which keeps
    both estimates unbiased. $\Sigma$ is the covariance of the per-example
    gradients, $\frac1n\sum_i (\nabla f_i - G)(\nabla f_i - G)^\top$.

    Each squared norm is averaged over ``n_batches`` independent batches before the
    estimates are formed; the ratio is then taken of the averages (a ratio of
    unbiased estimates is not unbiased, but it is consistent). With few batches
    $\widehat{\|G\|^2}$ can be negative near a minimum; the ratio is then meaningless.

    Args:
        problem: a finite sum (``n``, ``grad_batch``).
        theta: where to measure.
        batch_small, batch_big: the two batch sizes, ``batch_small < batch_big``.
        n_batches: batches drawn at each size.
        seed: seed of ``np.random.default_rng``.
        replace: sample batches with replacement (the i.i.d. setting of the paper).

    Returns:
        ``NoiseScale(b_simple, trace_sigma, grad_sq)``.

    Trouble: $\mathcal{B}_{\text{simple}}$ approximates the critical batch size.
    Training with batches much larger than it wastes computation (steps stop
    getting fewer); much smaller, steps are dominated by noise. It grows as the
    loss falls, so the useful batch size grows during training.

    Reference: McCandlish, Kaplan, Amodei et al., "An Empirical Model of
    Large-Batch Training", 2018, Appendix A.
    """
    n = check_finite_sum(problem, ("n", "grad_batch"), what="noise_scale")
    bs = _check_batch_size("batch_small", batch_small, n, replace)
    bb = _check_batch_size("batch_big", batch_big, n, replace)
    if not bs < bb:
        raise ValueError(f"batch_small must be < batch_big, got {bs} and {bb}")
    n_batches = check_int("n_batches", n_batches, low=1)
    rng = np.random.default_rng(seed)

    def mean_sqnorm(b: int) -> float:
        return float(
            np.mean(
                [
                    tree_norm(problem.grad_batch(theta, rng.choice(n, size=b, replace=replace))) ** 2
                    for _ in range(n_batches)
                ]
            )
        )

    sq_small, sq_big = mean_sqnorm(bs), mean_sqnorm(bb)
    return noise_scale_from_norms(sq_small, sq_big, bs, bb, n=None if replace else n)


def noise_scale_from_norms(
    sq_small: float, sq_big: float, batch_small: int, batch_big: int, n: int | None = None
) -> NoiseScale:
    r"""The two-batch-size estimators of :func:`noise_scale`, from measured squared norms.

    Given $\|g_{\text{small}}\|^2$ and $\|g_{\text{big}}\|^2$ (single measurements or
    averages, e.g. the per-worker and the all-reduced gradient in data-parallel
    training) and $c_B = 1/B$ (or $\frac{1}{B}\frac{n-B}{n-1}$ when batches are drawn
    without replacement from $n$ examples),

    $$\widehat{\|G\|^2} = \frac{c_{\text{small}}\|g_{\text{big}}\|^2 - c_{\text{big}}\|g_{\text{small}}\|^2}{c_{\text{small}} - c_{\text{big}}},\qquad
    \widehat{\operatorname{tr}\Sigma} = \frac{\|g_{\text{small}}\|^2 - \|g_{\text{big}}\|^2}{c_{\text{small}} - c_{\text{big}}}.$$

    Both are linear in the measured norms, hence unbiased whenever
    $\mathbb{E}\|g_B\|^2 = \|G\|^2 + c_B \operatorname{tr}\Sigma$.

    Args:
        sq_small, sq_big: measured $\|g_B\|^2$ at the two batch sizes.
        batch_small, batch_big: the batch sizes, ``batch_small < batch_big``.
        n: number of examples when batches were drawn without replacement; None for
            sampling with replacement (or from an infinite stream).

    Returns:
        ``NoiseScale(b_simple, trace_sigma, grad_sq)``.

    Trouble: a negative ``grad_sq`` (or ``trace_sigma``) means the measurements are too noisy
    for the two batch sizes: average more batches or move the sizes further apart. For the
    meaning of the value itself see :func:`noise_scale`.

    Reference: McCandlish et al., "An Empirical Model of Large-Batch Training", 2018, Appendix A.
    """
    bs = check_int("batch_small", batch_small, low=1)
    bb = check_int("batch_big", batch_big, low=1)
    if not bs < bb:
        raise ValueError(f"batch_small must be < batch_big, got {bs} and {bb}")
    if n is not None:
        n = check_int("n", n, low=1)
        if bb > n or n < 2:
            raise ValueError(f"n must be >= batch_big = {bb} and >= 2, got {n}")

    def c(b: int) -> float:
        return 1.0 / b if n is None else (n - b) / (b * (n - 1))

    cs, cb = c(bs), c(bb)
    trace_sigma = (sq_small - sq_big) / (cs - cb)
    grad_sq = (cs * sq_big - cb * sq_small) / (cs - cb)
    b_simple = trace_sigma / grad_sq if grad_sq != 0 else float("inf")
    return NoiseScale(float(b_simple), float(trace_sigma), float(grad_sq))


def noise_scale_exact(problem, theta) -> NoiseScale:
    r"""$\mathcal{B}_{\text{simple}} = \operatorname{tr}(\Sigma)/\|G\|^2$ from all per-example gradients.

    $G = \frac1n \sum_i \nabla f_i(\theta)$ and
    $\operatorname{tr}(\Sigma) = \frac1n \sum_i \|\nabla f_i(\theta) - G\|^2$.
    Costs $n$ gradients; use it to check :func:`noise_scale` on small problems.

    Args:
        problem: has ``per_example_grads(theta)`` (array ``(n, dim)`` or dict of arrays
            with a leading example axis).
        theta: where to measure.

    Trouble: see :func:`noise_scale`.
    """
    if not hasattr(problem, "per_example_grads"):
        raise ValueError(
            f"noise_scale_exact needs problem.per_example_grads; {type(problem).__name__} has none"
        )
    pe = problem.per_example_grads(theta)
    if isinstance(pe, dict):
        n = next(iter(pe.values())).shape[0]
        G_i = np.concatenate([np.asarray(pe[k]).reshape(n, -1) for k in sorted(pe)], axis=1)
    else:
        pe = np.asarray(pe)
        G_i = pe.reshape(pe.shape[0], -1)
    G_i = G_i.astype(np.float64)
    G = G_i.mean(axis=0)
    trace_sigma = float(np.mean(np.sum((G_i - G) ** 2, axis=1)))
    grad_sq = float(G @ G)
    b_simple = trace_sigma / grad_sq if grad_sq != 0 else float("inf")
    return NoiseScale(b_simple, trace_sigma, grad_sq)


def effective_step_size(lr: float, v_hat, eps: float = 1e-8):
    r"""Per-coordinate step size of an adaptive method, $\eta / (\sqrt{\hat v} + \epsilon)$.

    Adam's update is $-\eta\, \hat m / (\sqrt{\hat v} + \epsilon)$: plain SGD on
    $\hat m$ with this step size in each coordinate (Adagrad and RMSprop alike,
    with their accumulators as $\hat v$).

    Args:
        lr: the learning rate $\eta$.
        v_hat: the (bias-corrected) second-moment estimate, ndarray or dict, >= 0.
        eps: the stabilizer $\epsilon$ (outside the square root, as in torch).

    Returns:
        An array (or dict of arrays) of the same shape as ``v_hat``.

    Trouble: a spread over many orders of magnitude means some coordinates
    barely move while others take huge steps; values near $\eta/\epsilon$ mean
    $\epsilon$ dominates (those coordinates do SGD with step $\eta/\epsilon$);
    a sudden jump after a quiet stretch (second moment collapsed to ~0) is the
    precursor of a loss spike.
    """
    if not lr >= 0:
        raise ValueError(f"lr must be >= 0, got {lr}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")

    def one(v, key=None):
        v = np.asarray(v)
        if np.any(~(v >= 0)):
            where = "v_hat" if key is None else f"v_hat[{key!r}]"
            raise ValueError(f"{where} must be >= 0 everywhere, got min {np.min(v)}")
        with np.errstate(divide="ignore"):
            return lr / (np.sqrt(v) + eps)

    if isinstance(v_hat, dict):
        return {k: one(v, k) for k, v in v_hat.items()}
    return one(v_hat)


def loss_ratio(losses, window: int = 1, f_star: float = 0.0) -> np.ndarray:
    r"""Ratio of suboptimality across a window, $r_t = \dfrac{L_{t+w} - f^*}{L_t - f^*}$.

    For gradient descent converging linearly with contraction $q$ per step,
    $r_t \to q^{w}$ (on a quadratic with step $\eta$, $q = \max_i (1 - \eta\lambda_i)^2$).

    Args:
        losses: a sequence of losses $L_0, L_1, \dots$ (e.g. ``History.loss``).
        window: $w$, steps between the two losses compared.
        f_star: the optimal value if known (else 0, the usual lower bound of a loss).

    Returns:
        Array of length ``len(losses) - window``.

    Trouble: $r > 1$ (loss rising) means the learning rate is too large;
    $r$ stuck just below 1 means it is too small or the run has reached its
    noise floor; a steady $r$ well below 1 is healthy linear progress.
    """
    w = check_int("window", window, low=1)
    L = np.asarray(losses, dtype=np.float64) - f_star
    if L.ndim != 1 or L.size <= w:
        raise ValueError(f"losses must be 1-D and longer than window = {w}, got shape {L.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return L[w:] / L[:-w]


class LRRangeTest(NamedTuple):
    """The outcome of :func:`lr_range_test`."""

    lrs: np.ndarray
    """$\\eta_k$, the learning rate of step $k$ (geometric from ``lr_min``; trimmed if the run diverged)."""
    losses: np.ndarray
    """$f(\\theta_{k+1})$, the loss after the step taken with ``lrs[k]``."""
    suggested_lr: float
    """The learning rate at the steepest descent of the smoothed loss (see :func:`lr_range_test`)."""
    history: object
    """The full ``steplab.run.History`` of the run (``loss[0]`` is $f(\\theta_0)$)."""


def _check_range_test(lr_min, lr_max, steps, smooth, make_optimizer):
    lr_min = optim.check_positive("lr_min", lr_min)
    lr_max = optim.check_number("lr_max", lr_max)
    if not lr_max > lr_min:
        raise ValueError(f"lr_max must be > lr_min = {lr_min!r}, got {lr_max!r}")
    steps = optim.check_int("steps", steps, low=2)
    w = check_int("smooth", smooth, low=1, high=steps)
    if make_optimizer is None:
        make_optimizer = lambda lr: optim.sgd(lr=lr)  # noqa: E731
    elif not callable(make_optimizer):
        raise ValueError(f"make_optimizer must be callable (schedule -> optimizer), got {make_optimizer!r}")
    return lr_min, lr_max, steps, w, make_optimizer


def lr_range_test(
    problem,
    lr_min: float,
    lr_max: float,
    steps: int,
    batch_size: int | None = None,
    seed: int = 0,
    theta0=None,
    smooth: int = 5,
    diverge_factor: float = 10.0,
    make_optimizer=None,
) -> LRRangeTest:
    r"""Learning-rate range test: one run with a geometrically growing learning rate.

    $$\eta_k = \eta_{\min}\,(\eta_{\max}/\eta_{\min})^{k/(K-1)}, \quad k = 0, \dots, K-1, \qquad
    \theta_{k+1} = \theta_k - \eta_k g_k,$$

    recording $f_k = f(\theta_k)$. The loss first barely moves (steps too small), then falls
    fast, then blows up (steps beyond the stability limit), and the run stops when it diverges
    ($|f| >$ ``diverge_factor`` $\cdot \max(|f_0|, 1)$). **Rule:** with the window $w$ =
    ``smooth``, the mean change per step over steps $j, \dots, j+w-1$ is
    $D_j = (f_{j+w} - f_j)/w$; with $j^\star$ the first index of the most negative $D_j$, the
    suggestion is the learning rate at the window's centre, $\eta_{j^\star + \lfloor (w-1)/2 \rfloor}$.
    Since $\eta$ grows by the same factor every step, this is the steepest fall per unit of
    $\log\eta$; smoothing keeps the step-to-step oscillation at large $\eta$ from deciding.

    Args:
        problem: as for ``steplab.run.minimize``.
        lr_min, lr_max: the first and the last learning rate, ``0 < lr_min < lr_max``.
        steps: $K \ge 2$, the number of steps (and of learning rates tried).
        batch_size: ``None`` for full-batch steps, else minibatches as in ``minimize``; the
            recorded loss is always the full objective.
        seed: seeds the minibatches and, when ``theta0`` is None, ``problem.init_params``.
        theta0: the starting point.
        smooth: the window $w$, an integer in ``[1, steps]``.
        diverge_factor: as in ``minimize``; the test stops soon after the blow-up.
        make_optimizer: ``schedule -> GradientTransformation`` (default
            ``lambda lr: steplab.optim.sgd(lr=lr)``), e.g. ``lambda lr: optim.adam(lr=lr)``.

    Returns:
        ``LRRangeTest(lrs, losses, suggested_lr, history)``.

    Trouble: it is a heuristic. The loss at step $k$ depends on every smaller learning rate
    used before, and an instability needs several steps to grow, so the loss can keep falling
    past the stability limit; the suggestion is an order of magnitude to start a small search
    from, not a tuned value. Rerun it when the batch size or the model changes.

    Reference: L. N. Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017,
    Section 3.3.
    """
    from . import run

    lr_min, lr_max, steps, w, make_optimizer = _check_range_test(lr_min, lr_max, steps, smooth, make_optimizer)

    ratio = lr_max / lr_min
    schedule = optim.Schedule(
        lambda t: lr_min * ratio ** (t / (steps - 1)), f"geometric(lr_min={lr_min!r}, lr_max={lr_max!r}, steps={steps})"
    )
    hist = run.minimize(
        problem, make_optimizer(schedule), steps, batch_size=batch_size, seed=seed, theta0=theta0,
        diverge_factor=diverge_factor,
    )
    m = hist.n_steps
    lrs = np.array([schedule(k) for k in range(m)])
    if m < w:
        raise ValueError(
            f"the run diverged after {m} steps, before one window of smooth = {w} steps; "
            f"lower lr_min (got {lr_min!r}) or lr_max"
        )
    f = hist.loss
    change = (f[w:] - f[:-w]) / w
    j = int(np.argmin(change))
    if not change[j] < 0:
        raise ValueError(f"the loss never fell over {w} consecutive steps; lower lr_min (got {lr_min!r})")
    return LRRangeTest(lrs=lrs, losses=f[1:].copy(), suggested_lr=float(lrs[j + (w - 1) // 2]), history=hist)


# ------------------------------------------------------------------ adaptive optimizers
# Per-array views of an adaptive optimizer's updates and state, the spike alarm, and the
# memory an optimizer's state takes. Uses only the public tree helpers of steplab.optim.

__all__ += [
    "update_rms",
    "trust_ratio",
    "find_adam_state",
    "SecondMomentSummary",
    "second_moment_summary",
    "SpikeAlarm",
    "spike_alarm",
    "optimizer_state_bytes",
    "STATE_COPIES",
    "optimizer_state_formula",
]


def _per_array(fn, tree, *rest):
    """``fn`` applied per array: a dict of results for a dict tree, one result for an array."""
    return optim.tree_map(fn, tree, *rest)


def update_rms(updates):
    r"""Root mean square of the update, per array: $\mathrm{RMS}(u) = \sqrt{\frac1n\sum_i u_i^2}$.

    Args:
        updates: the update $u_t = \theta_{t+1} - \theta_t$ (an ndarray or a dict of them).

    Returns:
        A float, or a dict ``{key: float}``.

    Trouble: Adam's update per coordinate is $\eta\,\hat m/(\sqrt{\hat v}+\epsilon)$; with
    noisy gradients $|\hat m| < \sqrt{\hat v}$ and the RMS sits below $\eta$ (often
    $0.2\eta$ to $0.5\eta$). An RMS above $\eta$ means $\hat v$ is too small for the current
    gradient, the precursor of a loss spike (see :func:`spike_alarm`). An RMS far below
    $\eta$ for an array means $\epsilon$ dominates its denominator.
    """
    def one(u):
        u = np.asarray(u)
        return float(np.sqrt(np.mean(np.square(u)))) if u.size else 0.0

    return _per_array(one, updates)


def trust_ratio(direction, params, trust_coefficient: float = 1.0, eps: float = 0.0):
    r"""The layerwise trust ratio per array, $r = \kappa\|\theta\|_2 / (\|d\|_2 + \epsilon)$ (1 when a norm is 0).

    The factor LARS ($d$ = gradient plus weight decay) and LAMB ($d$ = Adam's direction plus
    weight decay) multiply each array's step by, the convention of
    :func:`steplab.optim.scale_by_trust_ratio`.

    Args:
        direction: the per-array direction $d$ before the trust ratio.
        params: the parameters $\theta$.
        trust_coefficient: $\kappa \ge 0$.
        eps: $\epsilon \ge 0$.

    Returns:
        A float, or a dict ``{key: float}``.

    Trouble: ratios that differ by orders of magnitude across arrays are what a single
    global learning rate cannot serve; a ratio that collapses toward 0 for one array means
    its direction has grown far beyond its weights (a gradient blow-up in that layer).
    """
    trust_coefficient = optim.check_nonnegative("trust_coefficient", trust_coefficient)
    eps = optim.check_nonnegative("eps", eps)
    optim.check_tree_match(direction, params, name="direction")

    def one(d, p):
        pn, dn = float(np.linalg.norm(np.ravel(p))), float(np.linalg.norm(np.ravel(d)))
        return 1.0 if pn == 0.0 or dn == 0.0 else trust_coefficient * pn / (dn + eps)

    return _per_array(one, direction, params)


def find_adam_state(state):
    """The :class:`steplab.optim.ScaleByAdamState` inside an optimizer state (a chain's nested
    tuples), or ``None`` when the optimizer keeps no Adam moments (SGD, Adafactor)."""
    if isinstance(state, optim.ScaleByAdamState):
        return state
    if isinstance(state, tuple):
        for sub in state:
            found = find_adam_state(sub)
            if found is not None:
                return found
    return None


class SecondMomentSummary(NamedTuple):
    r"""Summary of $\sqrt{\hat v}$ for one array: ``min``, ``median``, ``max``, and
    ``eps_fraction``, the fraction of coordinates with $\sqrt{\hat v_i} < \epsilon$ (where
    $\epsilon$ is more than half of the denominator $\sqrt{\hat v_i} + \epsilon$)."""

    min: float
    median: float
    max: float
    eps_fraction: float


def second_moment_summary(v_hat, eps: float = 1e-8):
    r"""Summarize the second moment $\hat v$ of Adam-type optimizers per array.

    Adam divides by $\sqrt{\hat v_i} + \epsilon$; $\sqrt{\hat v_i}$ is the coordinate's
    gradient scale (an RMS over about $1/(1-\beta_2)$ steps), in gradient units.

    Args:
        v_hat: the bias-corrected second moment, $v_t / (1 - \beta_2^t)$ (read ``v`` and
            ``count`` from :func:`find_adam_state`), an ndarray or a dict; entries >= 0.
        eps: the optimizer's $\epsilon \ge 0$.

    Returns:
        A :class:`SecondMomentSummary`, or a dict of them.

    Trouble: ``eps_fraction`` near 1 means those coordinates do SGD with momentum at step
    $\eta/\epsilon$ rather than Adam; a ``min`` that falls over a quiet stretch by orders of
    magnitude is the first half of the loss-spike mechanism (a later large gradient then
    meets a tiny denominator).
    """
    eps = optim.check_nonnegative("eps", eps)

    def one(v):
        v = np.asarray(v, dtype=np.float64)
        if np.any(~(v >= 0)):
            raise ValueError(f"v_hat must be >= 0 everywhere, got min {np.min(v)}")
        r = np.sqrt(v)
        return SecondMomentSummary(float(r.min()), float(np.median(r)), float(r.max()), float(np.mean(r < eps)))

    return _per_array(one, v_hat)


class SpikeAlarm(NamedTuple):
    """``ratio``: update RMS over learning rate per step; ``steps``: the steps where it exceeds
    the threshold; ``first``: the first of them, or ``None``."""

    ratio: np.ndarray
    steps: np.ndarray
    first: int | None


def spike_alarm(update_rms_series, lr, threshold: float = 1.0) -> SpikeAlarm:
    r"""Flag the steps whose update RMS exceeds ``threshold`` times the learning rate.

    Adam's per-coordinate update is $\eta\,\hat m_i/(\sqrt{\hat v_i}+\epsilon)$, and while the
    gradient's scale is steady $|\hat m_i| \lesssim \sqrt{\hat v_i}$, so $\mathrm{RMS}(u) \le \eta$.
    After a quiet stretch $v$ has decayed; a gradient $g$ far above $\sqrt{v}$ then gives, at
    that first step, $\hat m_i/\sqrt{\hat v_i} \approx (1-\beta_1)\,g_i/\sqrt{(1-\beta_2)g_i^2}
    = (1-\beta_1)/\sqrt{1-\beta_2}$ (3.16 for $\beta_1 = 0.9$, $\beta_2 = 0.999$), and the
    steps after it stay above $\eta$ until $v$ catches up (of the order of $1/(1-\beta_2)$
    steps; a gradient that keeps its sign makes them grow, since $m$ averages over fewer
    steps than $v$): an update RMS above $\eta$ is the signature the alarm watches for.

    Args:
        update_rms_series: the logged update RMS per step (global or of one array), shape ``(T,)``.
        lr: the learning rate per step, a number or an array of shape ``(T,)`` (> 0).
        threshold: the ratio above which a step is flagged (> 0).

    Returns:
        A :class:`SpikeAlarm`.

    Reference: M. Wortsman et al., "Small-scale proxies for large-scale Transformer training
    instabilities", 2023; I. Molybog et al., "A theory on Adam instability in large-scale
    machine learning", 2023.
    """
    threshold = optim.check_positive("threshold", threshold)
    rms = np.asarray(update_rms_series, dtype=np.float64)
    if rms.ndim != 1:
        raise ValueError(f"update_rms_series must be 1-D, got shape {rms.shape}")
    lr = np.broadcast_to(np.asarray(lr, dtype=np.float64), rms.shape)
    if np.any(~(lr > 0)):
        raise ValueError(f"lr must be > 0 at every step, got min {np.min(lr)!r}")
    ratio = rms / lr
    steps = np.flatnonzero(~(ratio <= threshold))  # a NaN update is flagged too
    return SpikeAlarm(ratio, steps, int(steps[0]) if steps.size else None)


def _state_arrays(state):
    if isinstance(state, np.ndarray):
        yield state
    elif isinstance(state, dict):
        for v in state.values():
            yield from _state_arrays(v)
    elif isinstance(state, (tuple, list)):
        for v in state:
            yield from _state_arrays(v)


def optimizer_state_bytes(opt, params) -> int:
    """Bytes held in the arrays of ``opt.init(params)``: the optimizer's memory beyond the
    parameters (step counters and learning rates, Python numbers, are not counted).

    Args:
        opt: a :class:`steplab.optim.GradientTransformation`.
        params: the parameters (their dtype sets the state's).
    """
    if not isinstance(opt, optim.GradientTransformation):
        raise ValueError(f"opt must be a steplab.optim.GradientTransformation, got {opt!r}")
    return int(sum(a.nbytes for a in _state_arrays(opt.init(params))))


# Full-size copies of the parameters each optimizer keeps (Adafactor and 8-bit Adam are special).
STATE_COPIES = {"sgd": 0, "signsgd": 0, "sgd_momentum": 1, "lars": 1, "lion": 1, "muon": 1,
                "adagrad": 1, "rmsprop": 1, "adam": 2, "adamw": 2, "lamb": 2}


def optimizer_state_formula(optimizer: str, shapes, bytes_per_number: int = 4,
                            min_dim_size_to_factor: int = 128, block_size: int = 2048) -> float:
    r"""Optimizer-state memory in bytes from the parameter shapes alone.

    With $P = \sum_a |a|$ parameters stored in $b$ bytes per number:

    * ``STATE_COPIES[name]`` $\times P b$ for SGD (0), momentum, LARS, Lion, Muon (1), Adam,
      AdamW, LAMB (2);
    * ``"adafactor"`` (no momentum): a matrix $n\times m$ (its two largest axes, both at least
      ``min_dim_size_to_factor``) keeps $n + m$ numbers, any other array all of its entries;
      ``"adafactor_momentum"`` adds one full copy;
    * ``"adam_8bit"``: two states of one byte per number plus one float32 scale per block of
      ``block_size`` numbers, $2P(1 + 4/\text{block\_size})$ (``bytes_per_number`` unused).

    Args:
        optimizer: one of ``STATE_COPIES``, ``"adafactor"``, ``"adafactor_momentum"``, ``"adam_8bit"``.
        shapes: the shapes of the parameter arrays (a dict of shapes, or a list of them).
        bytes_per_number: bytes of one state entry (4 for float32, 8 for float64).
        min_dim_size_to_factor: Adafactor's rule for which arrays are factored.
        block_size: 8-bit Adam's quantization block.

    Reference: N. Shazeer and M. Stern, "Adafactor", ICML 2018; T. Dettmers et al., "8-bit
    optimizers via block-wise quantization", ICLR 2022.
    """
    shapes = list(shapes.values()) if isinstance(shapes, dict) else list(shapes)
    bytes_per_number = optim.check_int("bytes_per_number", bytes_per_number, low=1)
    min_dim_size_to_factor = optim.check_int("min_dim_size_to_factor", min_dim_size_to_factor, low=1)
    block_size = optim.check_int("block_size", block_size, low=1)
    sizes = [int(np.prod(s)) for s in shapes]
    total = sum(sizes)
    if optimizer in STATE_COPIES:
        return float(STATE_COPIES[optimizer] * total * bytes_per_number)
    if optimizer in ("adafactor", "adafactor_momentum"):
        numbers = 0
        for shape, size in zip(shapes, sizes):
            axes = sorted(shape)
            if len(shape) >= 2 and axes[-2] >= min_dim_size_to_factor:
                numbers += size // axes[-1] + size // axes[-2]
            else:
                numbers += size
        if optimizer == "adafactor_momentum":
            numbers += total
        return float(numbers * bytes_per_number)
    if optimizer == "adam_8bit":
        return float(2 * total * (1 + 4 / block_size))
    known = sorted(STATE_COPIES) + ["adafactor", "adafactor_momentum", "adam_8bit"]
    raise ValueError(f"optimizer must be one of {known}, got {optimizer!r}")
