r"""Distributed and private SGD, simulated in one process.

Nothing here talks to a network: "workers" and "clients" are index sets into one finite-sum
problem (``n``, ``value``, ``grad_batch(theta, idx)``, ``per_example_grads(theta, idx)``), and
the communication a real system performs (an all-reduce of gradients, a round of model
averaging, a compressed message) is replaced by the arithmetic it computes. The simulations
therefore show what each scheme does to the *iterates*, exactly; what it costs in wall-clock
time is modelled separately in :mod:`steplab.batching`.

Simulations (return a :class:`SimulationHistory`):
    :func:`simulate_data_parallel`  synchronous data-parallel SGD over K workers, with gradient
                                    accumulation and optional gradient compression
    :func:`simulate_local_sgd`      H local steps per round, then model averaging
    :func:`simulate_fedavg`         federated averaging over client data sets
    :func:`simulate_fedprox`        FedAvg with the proximal term (mu/2)||theta - theta_global||^2
    :func:`simulate_dp_sgd`         DP-SGD: per-example clipping and Gaussian noise
One-step building blocks (usable on their own):
    :func:`accumulated_grad`, :func:`data_parallel_grad`, :func:`iid_shards`,
    :func:`client_drift`, :func:`top_k`, :func:`stochastic_quantize`,
    :func:`quantization_variance_bound`, :func:`error_feedback_step`, :func:`top_k_compressor`,
    :func:`quantize_compressor`, :func:`clip_per_example`, :func:`dp_sgd_gradient`.

Where an optimizer makes sense (the update applied to the averaged gradient, the server step
of federated averaging) any :mod:`steplab.optim` transformation may be passed; otherwise the
step is plain SGD with ``lr``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ._checks import (
    DIVERGE_FACTOR,
    check_diverge_factor,
    check_finite_sum,
    check_int,
    check_lr,
    check_nonnegative,
    check_number,
    check_positive,
    divergence_limit,
    is_diverged,
    lr_at,
    make_rng,
)
from ._tree import (
    initial_params,
    sgd_step,
    tree_all_finite,
    tree_copy,
    tree_flatten,
    tree_leaves,
    tree_map,
    tree_mean,
    tree_norm,
    tree_unflatten,
)
from .finite_sum import EvalHistory

__all__ = [
    "SimulationHistory",
    "iid_shards",
    "accumulated_grad",
    "data_parallel_grad",
    "simulate_data_parallel",
    "simulate_local_sgd",
    "simulate_fedavg",
    "simulate_fedprox",
    "client_drift",
    "top_k",
    "stochastic_quantize",
    "quantization_variance_bound",
    "error_feedback_step",
    "top_k_compressor",
    "quantize_compressor",
    "clip_per_example",
    "dp_sgd_gradient",
    "simulate_dp_sgd",
]


# ---------------------------------------------------------------------------
# the record


@dataclass
class SimulationHistory(EvalHistory):
    """An :class:`~steplab.finite_sum.EvalHistory` indexed by step (or round).

    Extra attributes: ``batches`` (the index arrays each step or round used, when
    ``keep_batches=True``), and in ``metrics`` whatever the simulation measures (for federated
    runs ``client_drift`` and ``client_shift``; ``dist_to_minimizer`` when the problem knows its
    minimizer).
    """

    batches: list | None = None

    def _plot_x(self, key: str, size: int) -> tuple[np.ndarray, str]:
        return self.step, "step"

    def plot(self, ax=None, key: str = "loss", log: bool = True, label=None, **kw):
        """Plot ``key`` ('loss', 'suboptimality' or a metric) against the step or round.

        Returns the Axes.
        """
        return super().plot(ax=ax, key=key, log=log, label=label, **kw)


class _StepLogger:
    def __init__(self, problem, method, log_every, diverge_factor=DIVERGE_FACTOR):
        self.problem, self.method = problem, method
        self.log_every = check_int("log_every", log_every, low=1)
        self.diverge_factor = diverge_factor
        self.steps, self.evals, self.loss = [], [], []
        self.metrics: dict[str, list] = {}
        self.limit = None
        self.diverged_at = None
        minimizer = getattr(problem, "minimizer", None)
        self.minimizer = minimizer

    def __call__(self, theta, step, evals, force=False, **metrics) -> bool:
        if not tree_all_finite(theta):
            self.diverged_at = step
            return False
        if not force and step % self.log_every:
            return True
        if self.steps and self.steps[-1] == step:
            return True
        loss = float(self.problem.value(theta))
        self.steps.append(step)
        self.evals.append(evals)
        self.loss.append(loss)
        if self.minimizer is not None:
            metrics["dist_to_minimizer"] = tree_norm(tree_map(lambda a, b: a - b, theta, self.minimizer))
        for key, value in metrics.items():
            self.metrics.setdefault(key, []).append(value)
        if self.limit is None:
            self.limit = divergence_limit(loss, self.diverge_factor)
        if is_diverged(loss, self.limit):
            self.diverged_at = step
            return False
        return True

    def history(self, theta, batches=None) -> SimulationHistory:
        f_star = getattr(self.problem, "f_star", None)
        n_logged = len(self.steps)
        metrics = {
            k: np.asarray(v, dtype=np.float64) for k, v in self.metrics.items() if len(v) == n_logged
        }
        return SimulationHistory(
            method=self.method,
            grad_evals=np.asarray(self.evals, dtype=np.int64),
            step=np.asarray(self.steps, dtype=np.int64),
            loss=np.asarray(self.loss, dtype=np.float64),
            params=theta,
            n=int(self.problem.n),
            f_star=None if f_star is None else float(f_star),
            diverged=self.diverged_at is not None,
            diverged_at=self.diverged_at,
            metrics=metrics,
            batches=batches,
        )


# ---------------------------------------------------------------------------
# validation helpers


def _check_index_sets(name, sets, n):
    if isinstance(sets, np.ndarray) and sets.ndim == 2:
        sets = list(sets)
    if not isinstance(sets, (list, tuple)) or len(sets) == 0:
        raise ValueError(f"{name} must be a non-empty list of index arrays, got {type(sets).__name__}")
    out = []
    for k, s in enumerate(sets):
        s = np.asarray(s)
        if s.ndim != 1 or s.size == 0 or not np.issubdtype(s.dtype, np.integer):
            raise ValueError(f"{name}[{k}] must be a non-empty 1-D integer array, got {s!r:.60}")
        if s.min() < 0 or s.max() >= n:
            raise ValueError(f"{name}[{k}] has indices outside [0, {n}) (problem.n = {n})")
        out.append(s)
    return out


def _check_step_rule(lr, optimizer):
    if (lr is None) == (optimizer is None):
        raise ValueError("give exactly one of lr and optimizer, got "
                         f"lr={lr!r}, optimizer={'None' if optimizer is None else 'given'}")
    if optimizer is not None and not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ValueError(f"optimizer must have init and update, got {type(optimizer).__name__}")
    return None if lr is None else check_lr(lr)


class _Stepper:
    """theta <- theta - lr * g, or an optimizer's update applied to g."""

    def __init__(self, theta, lr, optimizer):
        self.lr, self.optimizer = lr, optimizer
        self.state = optimizer.init(theta) if optimizer is not None else None
        self.count = 0

    def __call__(self, theta, g):
        if self.optimizer is None:
            theta = sgd_step(theta, g, lr_at(self.lr, self.count))
        else:
            updates, self.state = self.optimizer.update(g, self.state, theta)
            theta = tree_map(lambda t, u: (t + u).astype(t.dtype, copy=False), theta, updates)
        self.count += 1
        return theta


class _ShardSampler:
    """Each call draws ``batch_size`` distinct indices from every shard (one rng, shard order)."""

    def __init__(self, shards, batch_size, rng):
        self.shards, self.batch_size, self.rng = shards, batch_size, rng

    def __call__(self):
        if self.batch_size is None:
            return [s for s in self.shards]
        return [s[self.rng.choice(s.size, size=self.batch_size, replace=False)] for s in self.shards]


def _check_batch_vs_shards(batch_size, shards, name="shards"):
    smallest = min(s.size for s in shards)
    if batch_size > smallest:
        raise ValueError(
            f"batch_size must be <= the smallest of the {name} ({smallest} examples), got {batch_size}"
        )


# ---------------------------------------------------------------------------
# data parallelism and gradient accumulation


def iid_shards(n: int, n_workers: int, seed: int | None = None) -> list[np.ndarray]:
    r"""Split :math:`\{0, \dots, n-1\}` into ``n_workers`` random shards of (nearly) equal size.

    .. math::

        S_k = \{\pi(i) : c_k \le i < c_{k+1}\}, \qquad
        c_k = k\lfloor n/K \rfloor + \min(k, n \bmod K),

    for a uniformly random permutation :math:`\pi` from ``np.random.default_rng(seed)`` (``seed=None``: 0);
    each shard is returned sorted.

    Args:
        n: number of examples.
        n_workers: number of shards :math:`K`; sizes differ by at most one.
        seed: seed of the permutation.

    Reference: J. Dean et al., "Large scale distributed deep networks", NeurIPS 2012.
    """
    n = check_int("n", n, low=1)
    n_workers = check_int("n_workers", n_workers, low=1)
    if n_workers > n:
        raise ValueError(f"n_workers must be <= n = {n}, got {n_workers}")
    perm = make_rng(seed).permutation(n)
    return [np.sort(s) for s in np.array_split(perm, n_workers)]


def accumulated_grad(problem, theta, batch, n_micro: int):
    r"""Gradient accumulation: the batch gradient computed as the mean of microbatch gradients.

    .. math::

        g = \frac{1}{k} \sum_{j=1}^{k} \frac{1}{|M_j|} \sum_{i \in M_j} \nabla f_i(\theta)
          = \frac{1}{|B|} \sum_{i \in B} \nabla f_i(\theta),

    where :math:`B = M_1 \cup \dots \cup M_k` is split into :math:`k` microbatches of equal size
    :math:`|B|/k`. Only one microbatch's activations are in memory at a time, and the result is
    the large-batch gradient, exactly (up to rounding).

    Args:
        problem: a finite sum (``grad_batch``).
        theta: parameters.
        batch: indices of the batch :math:`B`.
        n_micro: number of microbatches :math:`k`; must divide ``len(batch)``.

    Reference: P. Goyal et al., "Accurate, large minibatch SGD: training ImageNet in 1 hour",
    arXiv:1706.02677, 2017 (Section 2 and Appendix on gradient aggregation).
    """
    batch = np.asarray(batch)
    n_micro = check_int("n_micro", n_micro, low=1)
    if batch.ndim != 1 or batch.size % n_micro:
        raise ValueError(
            f"n_micro must divide the batch size {batch.size} into equal microbatches, got {n_micro}"
        )
    acc = None
    for micro in np.split(batch, n_micro):
        g = problem.grad_batch(theta, micro)
        acc = tree_map(lambda a: np.array(a, dtype=np.float64), g) if acc is None else tree_map(
            lambda a, b: a + b, acc, g
        )
    return tree_map(lambda a: a / n_micro, acc)


def data_parallel_grad(problem, theta, worker_batches, n_micro: int = 1):
    r"""The all-reduced gradient of synchronous data parallelism.

    .. math::

        g = \frac{1}{K} \sum_{k=1}^{K} \frac{1}{b} \sum_{i \in B_k} \nabla f_i(\theta),

    the mean of the :math:`K` workers' minibatch gradients (each worker's batch :math:`B_k`
    of size :math:`b`, possibly accumulated over ``n_micro`` microbatches). With equal batch
    sizes this is the gradient of the union batch of size :math:`Kb`.

    Args:
        problem: a finite sum.
        theta: parameters (every worker holds the same copy).
        worker_batches: sequence of :math:`K` index arrays of equal length.
        n_micro: microbatches per worker (see :func:`accumulated_grad`).

    Reference: J. Dean et al., "Large scale distributed deep networks", NeurIPS 2012;
    P. Goyal et al., arXiv:1706.02677, 2017.
    """
    if len(worker_batches) == 0:
        raise ValueError("worker_batches must hold at least one index array, got none")
    sizes = {len(b) for b in worker_batches}
    if len(sizes) != 1:
        raise ValueError(f"worker_batches must have equal lengths, got {sorted(sizes)}")
    grads = [accumulated_grad(problem, theta, b, n_micro) for b in worker_batches]
    return tree_mean(grads)


def simulate_data_parallel(
    problem,
    steps: int,
    *,
    n_workers: int,
    batch_size: int,
    lr=None,
    optimizer=None,
    n_micro: int = 1,
    shards: Sequence[np.ndarray] | None = None,
    compressor: Callable | None = None,
    error_feedback: bool = False,
    batches=None,
    keep_batches: bool = False,
    seed: int | None = None,
    theta0=None,
    log_every: int = 1,
    diverge_factor: float = DIVERGE_FACTOR,
) -> SimulationHistory:
    r"""Synchronous data-parallel SGD over :math:`K` simulated workers.

    At step :math:`t` every worker :math:`k` draws :math:`b` examples :math:`B_{t,k}` from its
    shard, computes its minibatch gradient (accumulated over ``n_micro`` microbatches), optionally
    compresses it (:math:`C`, with error feedback :math:`e_k`), and the mean is applied:

    .. math::

        g_{t,k} = \frac{1}{b}\sum_{i \in B_{t,k}} \nabla f_i(\theta_t), \qquad
        \theta_{t+1} = \theta_t - \eta\, \frac{1}{K} \sum_{k=1}^{K} C(g_{t,k} + e_{t,k}),
        \qquad e_{t+1,k} = g_{t,k} + e_{t,k} - C(g_{t,k} + e_{t,k})

    (:math:`e \equiv 0` without error feedback; :math:`C = \mathrm{id}` without a compressor;
    an ``optimizer`` replaces the :math:`-\eta\,\cdot` step). Without compression this is SGD
    with batch size :math:`Kb`.

    Args:
        problem: a finite sum (``n``, ``value``, ``grad_batch``).
        steps: number of synchronous steps.
        n_workers: :math:`K`.
        batch_size: per-worker batch size :math:`b` (the global batch is :math:`Kb`).
        lr: SGD step size (a number or a schedule); exactly one of ``lr`` and ``optimizer``.
        optimizer: a :mod:`steplab.optim` transformation applied to the averaged gradient.
        n_micro: microbatches per worker (gradient accumulation).
        shards: list of :math:`K` index arrays (default :func:`iid_shards` with ``seed``).
        compressor: ``fn(vector, rng) -> vector`` applied to each worker's flattened gradient,
            e.g. :func:`top_k_compressor` or :func:`quantize_compressor`.
        error_feedback: keep each worker's compression residual and add it to its next gradient.
        batches: explicit per-step index arrays, shape ``(steps, K, b)``, replacing the sampler.
        keep_batches: store the index arrays used in ``history.batches``.
        seed: seed of ``np.random.default_rng`` (shards, draws, compression; ``None``: 0) and of
            ``problem.init_params`` (``None``: the problem's own).
        theta0: starting point (default ``problem.init_params(seed)``, as in :func:`steplab.run.minimize`).
        log_every: log the full loss every this many steps.
        diverge_factor: stop when the loss exceeds this times ``max(initial loss, 1)``.

    Reference: J. Dean et al., "Large scale distributed deep networks", NeurIPS 2012;
    S. U. Stich, J.-B. Cordonnier and M. Jaggi, "Sparsified SGD with memory", NeurIPS 2018
    (error feedback).
    """
    n = check_finite_sum(problem, ("n", "value", "grad_batch"))
    steps = check_int("steps", steps, low=1)
    n_workers = check_int("n_workers", n_workers, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    lr = _check_step_rule(lr, optimizer)
    if compressor is not None and not callable(compressor):
        raise ValueError(f"compressor must be callable fn(vector, rng), got {compressor!r}")
    if error_feedback and compressor is None:
        raise ValueError("error_feedback=True needs a compressor, got compressor=None")
    rng = make_rng(seed)
    shards = iid_shards(n, n_workers, seed) if shards is None else _check_index_sets("shards", shards, n)
    if len(shards) != n_workers:
        raise ValueError(f"shards must hold n_workers = {n_workers} index arrays, got {len(shards)}")
    if batches is None:
        _check_batch_vs_shards(batch_size, shards)
        sampler = _ShardSampler(shards, batch_size, rng)
    else:
        batches = np.asarray(batches)
        if batches.shape != (steps, n_workers, batch_size):
            raise ValueError(
                f"batches must have shape (steps, n_workers, batch_size) = "
                f"{(steps, n_workers, batch_size)}, got {batches.shape}"
            )
    theta = initial_params(problem, theta0, seed)
    step_fn = _Stepper(theta, lr, optimizer)
    residuals = [np.zeros(tree_flatten(theta).size) for _ in range(n_workers)] if error_feedback else None
    log = _StepLogger(problem, f"data-parallel SGD (K={n_workers}, b={batch_size})", log_every,
                      diverge_factor)
    used = [] if keep_batches else None
    evals = 0
    log(theta, 0, evals, force=True)
    for t in range(steps):
        worker_batches = sampler() if batches is None else list(batches[t])
        if used is not None:
            used.append(np.stack(worker_batches))
        grads = [accumulated_grad(problem, theta, b, n_micro) for b in worker_batches]
        evals += n_workers * batch_size
        if compressor is not None:
            sent = []
            for k, g in enumerate(grads):
                v = tree_flatten(g)
                if error_feedback:
                    c, residuals[k] = error_feedback_step(v, residuals[k], compressor, rng)
                else:
                    c = compressor(v, rng)
                sent.append(tree_unflatten(c, g))
            grads = sent
        theta = step_fn(theta, tree_mean(grads))
        if not log(theta, t + 1, evals):
            break
    log(theta, step_fn.count, evals, force=True)
    return log.history(theta, used)


# ---------------------------------------------------------------------------
# local SGD and federated averaging


def client_drift(client_params, reference, weights=None) -> float:
    r"""Weighted mean distance of client models from a reference model.

    .. math::

        \mathrm{drift} = \sum_{k} p_k \,\|\theta_k - \theta_{\mathrm{ref}}\|, \qquad
        \sum_k p_k = 1

    (uniform :math:`p_k` by default). With the clients' average as reference it measures how
    far local training pulled the clients apart; with the global model they started from, how
    far they moved.

    Args:
        client_params: list of client parameter vectors (or dicts).
        reference: the reference model.
        weights: nonnegative client weights (normalized here).
    """
    k = len(client_params)
    if k == 0:
        raise ValueError("client_params must hold at least one model, got 0")
    w = _check_weights(weights, k)
    return float(sum(wi * tree_norm(tree_map(lambda a, b: a - b, th, reference))
                     for wi, th in zip(w, client_params)))


def _check_weights(weights, k):
    if weights is None:
        return np.full(k, 1.0 / k)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (k,) or np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"weights must be {k} nonnegative numbers with a positive sum, got {weights!r}")
    return w / w.sum()


def _local_rounds(problem, clients, rounds, *, local_steps, lr, batch_size, mu, client_fraction,
                  server_optimizer, server_lr, keep_batches, seed, theta0, log_every, weighted,
                  method, diverge_factor, rng=None):
    check_finite_sum(problem, ("n", "value", "grad_batch"))
    rounds = check_int("rounds", rounds, low=1)
    local_steps = check_int("local_steps", local_steps, low=1)
    lr = check_lr(lr)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, low=1)
        _check_batch_vs_shards(batch_size, clients, "clients")
    mu = check_nonnegative("mu", mu)
    client_fraction = check_number("client_fraction", client_fraction, low=0.0, high=1.0, low_open=True)
    if server_optimizer is not None and not (hasattr(server_optimizer, "init")
                                             and hasattr(server_optimizer, "update")):
        raise ValueError(f"server_optimizer must have init and update, got {server_optimizer!r}")
    if server_optimizer is not None and server_lr is not None:
        raise ValueError("give at most one of server_optimizer and server_lr")
    server_lr = 1.0 if server_lr is None else check_lr(server_lr, "server_lr")
    rng = make_rng(seed) if rng is None else rng
    sizes = np.array([c.size for c in clients], dtype=np.float64)
    theta = initial_params(problem, theta0, seed)
    server_state = server_optimizer.init(theta) if server_optimizer is not None else None
    n_active = max(1, int(round(client_fraction * len(clients))))
    log = _StepLogger(problem, method, log_every, diverge_factor)
    used = [] if keep_batches else None
    evals = 0
    drift = shift = float("nan")  # no local training has happened at round 0
    log(theta, 0, evals, force=True, client_drift=drift, client_shift=shift)
    step_count = 0
    for r in range(rounds):
        if n_active < len(clients):
            active = np.sort(rng.choice(len(clients), size=n_active, replace=False))
        else:
            active = np.arange(len(clients))
        sampler = _ShardSampler([clients[k] for k in active], batch_size, rng)
        locals_ = [tree_copy(theta) for _ in active]
        round_batches = []
        for h in range(local_steps):
            draws = sampler()
            round_batches.append(draws)
            eta = lr_at(lr, step_count)
            for j, idx in enumerate(draws):
                g = problem.grad_batch(locals_[j], idx)
                evals += idx.size
                if mu > 0:
                    g = tree_map(lambda gi, t, t0: gi + mu * (t - t0), g, locals_[j], theta)
                locals_[j] = sgd_step(locals_[j], g, eta)
            step_count += 1
        if used is not None:
            used.append(round_batches)
        w = sizes[active] / sizes[active].sum() if weighted else np.full(len(active), 1 / len(active))
        average = tree_mean(locals_, w)
        drift = client_drift(locals_, average, w)
        shift = client_drift(locals_, theta, w)
        if server_optimizer is None and server_lr == 1.0:
            new_theta = tree_map(lambda a, t: a.astype(t.dtype, copy=False), average, theta)
        else:
            pseudo_grad = tree_map(lambda t, a: t - a, theta, average)
            if server_optimizer is None:
                new_theta = sgd_step(theta, pseudo_grad, lr_at(server_lr, r, "server_lr"))
            else:
                updates, server_state = server_optimizer.update(pseudo_grad, server_state, theta)
                new_theta = tree_map(lambda t, u: (t + u).astype(t.dtype, copy=False), theta, updates)
        theta = new_theta
        if not log(theta, r + 1, evals, client_drift=drift, client_shift=shift):
            break
    log(theta, r + 1, evals, force=True, client_drift=drift, client_shift=shift)
    return log.history(theta, used)


def simulate_local_sgd(
    problem,
    rounds: int,
    *,
    n_workers: int,
    local_steps: int,
    batch_size: int,
    lr,
    shards: Sequence[np.ndarray] | None = None,
    keep_batches: bool = False,
    seed: int | None = None,
    theta0=None,
    log_every: int = 1,
    diverge_factor: float = DIVERGE_FACTOR,
) -> SimulationHistory:
    r"""Local SGD: :math:`H` SGD steps on every worker, then one model average per round.

    From the shared model :math:`\theta_r`, each worker :math:`k` runs
    :math:`\theta^{k}_{h+1} = \theta^{k}_h - \eta\, \frac1b \sum_{i \in B^k_h} \nabla f_i(\theta^k_h)`
    for :math:`h = 0, \dots, H-1` on its own shard, and

    .. math::

        \theta_{r+1} = \frac{1}{K} \sum_{k=1}^{K} \theta^{k}_{H}.

    One communication per :math:`H` steps instead of one per step. With :math:`H = 1` it is
    synchronous data-parallel SGD (:func:`simulate_data_parallel` draws the same batches with the
    same ``seed`` and ``shards``).

    Args:
        problem: a finite sum.
        rounds: communication rounds.
        n_workers: :math:`K`.
        local_steps: :math:`H`.
        batch_size: per-worker batch size :math:`b`.
        lr: local step size :math:`\eta` (a number, or a schedule of the local step count).
        shards: list of :math:`K` index arrays (default :func:`iid_shards` with ``seed``).
        keep_batches: store the index arrays in ``history.batches`` (per round, per local step,
            per worker).
        seed, theta0, log_every, diverge_factor: as in :func:`simulate_data_parallel`
            (logging is per round; metrics ``client_drift`` and ``client_shift`` as in
            :func:`simulate_fedavg`).

    Reference: S. U. Stich, "Local SGD converges fast and communicates little", ICLR 2019.
    """
    n = check_finite_sum(problem, ("n", "value", "grad_batch"))
    n_workers = check_int("n_workers", n_workers, low=1)
    if batch_size is None:
        raise ValueError("batch_size must be an integer >= 1, got None")
    shards = iid_shards(n, n_workers, seed) if shards is None else _check_index_sets("shards", shards, n)
    if len(shards) != n_workers:
        raise ValueError(f"shards must hold n_workers = {n_workers} index arrays, got {len(shards)}")
    return _local_rounds(
        problem, shards, rounds, local_steps=local_steps, lr=lr, batch_size=batch_size, mu=0.0,
        client_fraction=1.0, server_optimizer=None, server_lr=None, keep_batches=keep_batches,
        seed=seed, theta0=theta0, log_every=log_every, weighted=False,
        method=f"local SGD (K={n_workers}, H={local_steps})", diverge_factor=diverge_factor,
    )


def simulate_fedavg(
    problem,
    clients: Sequence[np.ndarray],
    rounds: int,
    *,
    local_steps: int,
    lr,
    batch_size: int | None = None,
    client_fraction: float = 1.0,
    server_optimizer=None,
    server_lr=None,
    keep_batches: bool = False,
    seed: int | None = None,
    theta0=None,
    log_every: int = 1,
    diverge_factor: float = DIVERGE_FACTOR,
) -> SimulationHistory:
    r"""Federated averaging (FedAvg) over client data sets.

    Client :math:`k` holds the examples :math:`D_k` (an index array into ``problem``) and the
    local objective :math:`f_k(\theta) = \frac{1}{|D_k|}\sum_{i \in D_k} f_i(\theta)`; the global
    objective is :math:`f = \sum_k p_k f_k` with :math:`p_k = |D_k| / \sum_j |D_j|`. Each round,
    a fraction of the clients start from :math:`\theta_r`, take :math:`H` local SGD steps
    (``batch_size=None``: full local gradients), and the server averages:

    .. math::

        \theta_{r+1} = \sum_{k \in S_r} \frac{|D_k|}{\sum_{j \in S_r}|D_j|}\, \theta^{k}_{H}.

    With ``server_optimizer`` (or ``server_lr``), the server instead applies that optimizer to
    the pseudo-gradient :math:`\theta_r - \bar\theta` (FedOpt; plain averaging is server SGD
    with step 1). With :math:`H > 1` and non-IID clients the fixed point of this map is not the
    minimizer of :math:`f` (client drift); ``history.metrics['dist_to_minimizer']`` measures it
    when the problem knows its minimizer.

    Metrics per round: ``client_drift``, :math:`\sum_k p_k\|\theta^k_H - \bar\theta\|` (how far
    apart the clients ended), and ``client_shift``, :math:`\sum_k p_k\|\theta^k_H - \theta_r\|`
    (how far they moved from the global model); see :func:`client_drift`.

    Args:
        problem: a finite sum containing every client's examples.
        clients: list of index arrays :math:`D_k` (e.g. a non-IID split).
        rounds: communication rounds.
        local_steps: :math:`H`.
        lr: client step size (a number, or a schedule of the local step count).
        batch_size: client minibatch size, or ``None`` for full local gradients.
        client_fraction: fraction of clients drawn (without replacement) each round.
        server_optimizer: a :mod:`steplab.optim` transformation for the server step.
        server_lr: server SGD step on the pseudo-gradient (default 1: plain averaging).
        keep_batches, seed, theta0, log_every, diverge_factor: as in :func:`simulate_local_sgd`.

    Reference: H. B. McMahan, E. Moore, D. Ramage, S. Hampson and B. Aguera y Arcas,
    "Communication-efficient learning of deep networks from decentralized data", AISTATS 2017;
    S. J. Reddi et al., "Adaptive federated optimization", ICLR 2021 (server optimizers).
    """
    n = check_finite_sum(problem, ("n", "value", "grad_batch"))
    clients = _check_index_sets("clients", clients, n)
    return _local_rounds(
        problem, clients, rounds, local_steps=local_steps, lr=lr, batch_size=batch_size, mu=0.0,
        client_fraction=client_fraction, server_optimizer=server_optimizer, server_lr=server_lr,
        keep_batches=keep_batches, seed=seed, theta0=theta0, log_every=log_every, weighted=True,
        method=f"FedAvg (H={local_steps})", diverge_factor=diverge_factor,
    )


def simulate_fedprox(
    problem,
    clients: Sequence[np.ndarray],
    rounds: int,
    *,
    mu: float,
    local_steps: int,
    lr,
    batch_size: int | None = None,
    client_fraction: float = 1.0,
    server_optimizer=None,
    server_lr=None,
    keep_batches: bool = False,
    seed: int | None = None,
    theta0=None,
    log_every: int = 1,
    diverge_factor: float = DIVERGE_FACTOR,
) -> SimulationHistory:
    r"""FedProx: FedAvg whose clients minimize a proximally regularized local objective.

    Client :math:`k` takes its :math:`H` local steps on

    .. math::

        h_k(\theta) = f_k(\theta) + \frac{\mu}{2}\,\|\theta - \theta_r\|^2 ,
        \qquad \nabla h_k(\theta) = \nabla f_k(\theta) + \mu(\theta - \theta_r),

    which keeps the client near the global model :math:`\theta_r` (as :math:`\mu \to \infty`
    the clients do not move; :math:`\mu = 0` is FedAvg). For stability of the local steps take
    :math:`\eta \le 1/(L + \mu)`.

    Args:
        mu: proximal coefficient :math:`\mu \ge 0`.
        Everything else as in :func:`simulate_fedavg`.

    Reference: T. Li, A. K. Sahu, M. Zaheer, M. Sanjabi, A. Talwalkar and V. Smith,
    "Federated optimization in heterogeneous networks", MLSys 2020.
    """
    n = check_finite_sum(problem, ("n", "value", "grad_batch"))
    clients = _check_index_sets("clients", clients, n)
    return _local_rounds(
        problem, clients, rounds, local_steps=local_steps, lr=lr, batch_size=batch_size, mu=mu,
        client_fraction=client_fraction, server_optimizer=server_optimizer, server_lr=server_lr,
        keep_batches=keep_batches, seed=seed, theta0=theta0, log_every=log_every, weighted=True,
        method=f"FedProx (H={local_steps}, mu={mu:g})", diverge_factor=diverge_factor,
    )


# ---------------------------------------------------------------------------
# communication compression


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


# ---------------------------------------------------------------------------
# differential privacy


def _per_example_norms(per_example_grads):
    leaves = sorted(per_example_grads.items()) if isinstance(per_example_grads, dict) else [(None, per_example_grads)]
    sq = 0.0
    for key, a in leaves:
        a = np.asarray(a)
        name = "per_example_grads" if key is None else f"per_example_grads[{key!r}]"
        if a.ndim < 2 or a.shape[0] == 0:
            raise ValueError(
                f"{name} must have a leading example axis with at least one example "
                f"(shape (B, ...), B >= 1), got shape {a.shape}"
            )
        sq = sq + np.sum(np.square(a).reshape(a.shape[0], -1), axis=1)
    return np.sqrt(sq)


def clip_per_example(per_example_grads, clip_norm: float):
    r"""Clip every per-example gradient to norm at most :math:`C`.

    .. math::

        \bar g_i = g_i \,\min\Bigl(1, \frac{C}{\|g_i\|}\Bigr).

    Args:
        per_example_grads: array ``(B, dim)`` (or a dict of arrays with a leading example axis;
            the norm is over all of an example's entries).
        clip_norm: :math:`C > 0`.

    Reference: M. Abadi et al., "Deep learning with differential privacy", CCS 2016.
    """
    clip_norm = check_positive("clip_norm", clip_norm)
    norms = _per_example_norms(per_example_grads)
    factor = np.minimum(1.0, clip_norm / np.maximum(norms, np.finfo(np.float64).tiny))

    def scale(a):
        a = np.asarray(a)
        return a * factor.reshape((-1,) + (1,) * (a.ndim - 1)).astype(a.dtype, copy=False)

    return tree_map(scale, per_example_grads)


def dp_sgd_gradient(per_example_grads, clip_norm: float, noise_multiplier: float, rng):
    r"""The DP-SGD gradient: clip each example, sum, add Gaussian noise, divide by the batch size.

    .. math::

        \tilde g = \frac{1}{B}\Bigl(\sum_{i=1}^{B} g_i \min\bigl(1, C/\|g_i\|\bigr)
                   + \mathcal N(0, \sigma^2 C^2 I)\Bigr),

    so every coordinate of the noise in :math:`\tilde g` has standard deviation
    :math:`\sigma C / B`. (The privacy guarantee also depends on how batches are sampled and
    on the accountant; neither is modelled here.)

    Args:
        per_example_grads: array ``(B, dim)`` or a dict of arrays with a leading example axis.
        clip_norm: :math:`C > 0`.
        noise_multiplier: :math:`\sigma \ge 0`.
        rng: a ``np.random.Generator``.

    Reference: M. Abadi et al., "Deep learning with differential privacy", CCS 2016.
    """
    check_nonnegative("noise_multiplier", noise_multiplier)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a np.random.Generator, got {type(rng).__name__}")
    clipped = clip_per_example(per_example_grads, clip_norm)
    batch = next(iter(tree_leaves(clipped))).shape[0]
    std = noise_multiplier * float(clip_norm)

    def noisy_mean(a):
        total = a.sum(axis=0, dtype=np.float64)
        if std > 0:
            total = total + rng.normal(0.0, std, size=total.shape)
        return total / batch

    return tree_map(noisy_mean, clipped)


def simulate_dp_sgd(
    problem,
    steps: int,
    *,
    batch_size: int,
    clip_norm: float,
    noise_multiplier: float,
    lr=None,
    optimizer=None,
    keep_batches: bool = False,
    seed: int | None = None,
    theta0=None,
    log_every: int = 1,
    diverge_factor: float = DIVERGE_FACTOR,
) -> SimulationHistory:
    r"""DP-SGD: SGD on clipped, noised minibatch gradients (:func:`dp_sgd_gradient`).

    .. math::

        \theta_{t+1} = \theta_t - \eta\,\frac{1}{B}\Bigl(\sum_{i \in B_t}
            \nabla f_i(\theta_t)\min\bigl(1, C/\|\nabla f_i(\theta_t)\|\bigr)
            + \mathcal N(0, \sigma^2 C^2 I)\Bigr),

    :math:`B_t` of fixed size :math:`B` drawn without replacement (the privacy analysis of
    Abadi et al. assumes Poisson sampling; no accountant is included).

    Args:
        problem: a finite sum with ``per_example_grads(theta, idx)``.
        steps: number of steps.
        batch_size: :math:`B`.
        clip_norm: :math:`C > 0`.
        noise_multiplier: :math:`\sigma \ge 0`.
        lr: step size (a number or a schedule); exactly one of ``lr`` and ``optimizer``.
        optimizer: a :mod:`steplab.optim` transformation applied to the private gradient.
        keep_batches, seed, theta0, log_every, diverge_factor: as in
            :func:`simulate_data_parallel`.

    Reference: M. Abadi et al., "Deep learning with differential privacy", CCS 2016.
    """
    n = check_finite_sum(problem, ("n", "value", "per_example_grads"))
    steps = check_int("steps", steps, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    if batch_size > n:
        raise ValueError(f"batch_size must be <= problem.n = {n}, got {batch_size}")
    clip_norm = check_positive("clip_norm", clip_norm)
    lr = _check_step_rule(lr, optimizer)
    rng = make_rng(seed)
    check_nonnegative("noise_multiplier", noise_multiplier)
    theta = initial_params(problem, theta0, seed)
    step_fn = _Stepper(theta, lr, optimizer)
    log = _StepLogger(problem, f"DP-SGD (C={clip_norm:g}, sigma={noise_multiplier:g})", log_every,
                      diverge_factor)
    used = [] if keep_batches else None
    evals = 0
    log(theta, 0, evals, force=True)
    for t in range(steps):
        idx = rng.choice(n, size=batch_size, replace=False)
        if used is not None:
            used.append(idx)
        g = dp_sgd_gradient(problem.per_example_grads(theta, idx), clip_norm, noise_multiplier, rng)
        evals += batch_size
        theta = step_fn(theta, tree_map(lambda gi, t_: gi.astype(t_.dtype, copy=False), g, theta))
        if not log(theta, t + 1, evals):
            break
    log(theta, step_fn.count, evals, force=True)
    return log.history(theta, used)
