r"""Local SGD and federated averaging (FedAvg, and FedProx as FedAvg with a proximal term), simulated.

Clients are index sets into one finite-sum problem; a round of model averaging is replaced by
the weighted mean it computes.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .._checks import (
    DIVERGE_FACTOR,
    check_finite_sum,
    check_int,
    check_lr,
    check_nonnegative,
    check_number,
    lr_at,
    make_rng,
)
from .._tree import initial_params, sgd_step, tree_copy, tree_map, tree_mean, tree_norm
from ..records import Logger, SimulationHistory
from ._common import ShardSampler, check_batch_vs_shards, check_index_sets
from .data_parallel import worker_shards

__all__ = ["client_drift", "simulate_local_sgd", "simulate_fedavg", "simulate_fedprox"]


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


def _check_server(server_optimizer, server_lr):
    """The server step: an optimizer, or SGD with ``server_lr`` (default 1: plain averaging)."""
    if server_optimizer is not None and not (hasattr(server_optimizer, "init")
                                             and hasattr(server_optimizer, "update")):
        raise ValueError(f"server_optimizer must have init and update, got {server_optimizer!r}")
    if server_optimizer is not None and server_lr is not None:
        raise ValueError("give at most one of server_optimizer and server_lr")
    return 1.0 if server_lr is None else check_lr(server_lr, "server_lr")


def _local_training(problem, theta, draws_of, local_steps, lr, mu, step_count):
    r"""``local_steps`` SGD steps on every active client from ``theta``; with ``mu > 0`` each
    gradient gains the proximal pull :math:`\mu(\theta_k - \theta)`.

    Returns the client models, the index arrays drawn and the gradient evaluations spent."""
    locals_ = None
    batches, evals = [], 0
    for h in range(local_steps):
        draws = draws_of()
        batches.append(draws)
        locals_ = [tree_copy(theta) for _ in draws] if locals_ is None else locals_
        eta = lr_at(lr, step_count + h)
        for j, idx in enumerate(draws):
            g = problem.grad_batch(locals_[j], idx)
            evals += idx.size
            if mu > 0:
                g = tree_map(lambda gi, t, t0: gi + mu * (t - t0), g, locals_[j], theta)
            locals_[j] = sgd_step(locals_[j], g, eta)
    return locals_, batches, evals


def _server_step(theta, average, server_optimizer, server_state, server_lr, r):
    r"""The server's update from the clients' average: the average itself, or a step of SGD
    (``server_lr``) or of ``server_optimizer`` on the pseudo-gradient :math:`\theta - \bar\theta`."""
    if server_optimizer is None and server_lr == 1.0:
        return tree_map(lambda a, t: a.astype(t.dtype, copy=False), average, theta), server_state
    pseudo_grad = tree_map(lambda t, a: t - a, theta, average)
    if server_optimizer is None:
        return sgd_step(theta, pseudo_grad, lr_at(server_lr, r, "server_lr")), server_state
    updates, server_state = server_optimizer.update(pseudo_grad, server_state, theta)
    return tree_map(lambda t, u: (t + u).astype(t.dtype, copy=False), theta, updates), server_state


def _local_rounds(problem, clients, rounds, *, local_steps, lr, batch_size, mu, client_fraction,
                  server_optimizer, server_lr, keep_batches, seed, theta0, log_every, weighted,
                  method, diverge_factor):
    check_finite_sum(problem, ("n", "value", "grad_batch"))
    rounds = check_int("rounds", rounds, low=1)
    local_steps = check_int("local_steps", local_steps, low=1)
    lr = check_lr(lr)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, low=1)
        check_batch_vs_shards(batch_size, clients, "clients")
    mu = check_nonnegative("mu", mu)
    client_fraction = check_number("client_fraction", client_fraction, low=0.0, high=1.0, low_open=True)
    server_lr = _check_server(server_optimizer, server_lr)
    rng = make_rng(seed)
    sizes = np.array([c.size for c in clients], dtype=np.float64)
    theta = initial_params(problem, theta0, seed)
    server_state = server_optimizer.init(theta) if server_optimizer is not None else None
    n_active = max(1, int(round(client_fraction * len(clients))))
    log = Logger.simulation(problem, method, log_every, diverge_factor)
    used = [] if keep_batches else None
    evals = 0
    drift = shift = float("nan")  # no local training has happened at round 0
    log(theta, 0, evals, force=True, client_drift=drift, client_shift=shift)
    for r in range(rounds):
        if n_active < len(clients):
            active = np.sort(rng.choice(len(clients), size=n_active, replace=False))
        else:
            active = np.arange(len(clients))
        sampler = ShardSampler([clients[k] for k in active], batch_size, rng)
        locals_, round_batches, spent = _local_training(problem, theta, sampler, local_steps, lr, mu,
                                                        r * local_steps)
        evals += spent
        if used is not None:
            used.append(round_batches)
        w = sizes[active] / sizes[active].sum() if weighted else np.full(len(active), 1 / len(active))
        average = tree_mean(locals_, w)
        drift, shift = client_drift(locals_, average, w), client_drift(locals_, theta, w)
        theta, server_state = _server_step(theta, average, server_optimizer, server_state, server_lr, r)
        if not log(theta, r + 1, evals, client_drift=drift, client_shift=shift):
            break
    log(theta, r + 1, evals, force=True, client_drift=drift, client_shift=shift)
    return log.history(theta, batches=used)


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
    shards = worker_shards(shards, n, n_workers, seed)
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
    mu: float = 0.0,
    keep_batches: bool = False,
    seed: int | None = None,
    theta0=None,
    log_every: int = 1,
    diverge_factor: float = DIVERGE_FACTOR,
) -> SimulationHistory:
    r"""Federated averaging (FedAvg) over client data sets; with ``mu > 0``, FedProx.

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
        mu: proximal coefficient :math:`\mu \ge 0` of FedProx (see :func:`simulate_fedprox`);
            0 is FedAvg.
        keep_batches, seed, theta0, log_every, diverge_factor: as in :func:`simulate_local_sgd`.

    Reference: H. B. McMahan, E. Moore, D. Ramage, S. Hampson and B. Aguera y Arcas,
    "Communication-efficient learning of deep networks from decentralized data", AISTATS 2017;
    S. J. Reddi et al., "Adaptive federated optimization", ICLR 2021 (server optimizers).
    """
    n = check_finite_sum(problem, ("n", "value", "grad_batch"))
    clients = check_index_sets("clients", clients, n)
    method = f"FedProx (H={local_steps}, mu={mu:g})" if mu > 0 else f"FedAvg (H={local_steps})"
    return _local_rounds(
        problem, clients, rounds, local_steps=local_steps, lr=lr, batch_size=batch_size, mu=mu,
        client_fraction=client_fraction, server_optimizer=server_optimizer, server_lr=server_lr,
        keep_batches=keep_batches, seed=seed, theta0=theta0, log_every=log_every, weighted=True,
        method=method, diverge_factor=diverge_factor,
    )


def simulate_fedprox(
    problem,
    clients: Sequence[np.ndarray],
    rounds: int,
    *,
    mu: float,
    **kwargs,
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
        **kwargs: everything else, as in :func:`simulate_fedavg` (this is
            ``simulate_fedavg(..., mu=mu)``).

    Reference: T. Li, A. K. Sahu, M. Zaheer, M. Sanjabi, A. Talwalkar and V. Smith,
    "Federated optimization in heterogeneous networks", MLSys 2020.
    """
    return simulate_fedavg(problem, clients, rounds, mu=mu, **kwargs)
