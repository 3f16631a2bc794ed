"""Tests of steplab.distributed: each simulation against the algebra it should reduce to."""

import numpy as np
import pytest

from steplab import distributed as dist
from steplab import optim
from steplab.problems import LeastSquares, LogisticRegression, make_classification, make_least_squares
from steplab.run import minimize


def least_squares(n=60, d=5, l2=0.1, seed=0):
    A, b = make_least_squares(n, d, seed=seed)
    return LeastSquares(A, b, l2=l2)


def heterogeneous(l2=0.1):
    """Three clients of sizes 15, 20, 25 whose targets come from different true models."""
    rng = np.random.default_rng(7)
    sizes, d = (15, 20, 25), 3
    A = rng.standard_normal((sum(sizes), d))
    b, clients, start = np.empty(sum(sizes)), [], 0
    for k, size in enumerate(sizes):
        x_k = 2.0 * rng.standard_normal(d)  # each client's own truth
        b[start : start + size] = A[start : start + size] @ x_k + 0.1 * rng.standard_normal(size)
        clients.append(np.arange(start, start + size))
        start += size
    return LeastSquares(A, b, l2=l2), clients


def client_pieces(p, clients):
    """Hessian H_k and linear term c_k of each client's objective f_k = mean_{i in D_k} f_i."""
    out = []
    for idx in clients:
        A, b = p.A[idx], p.b[idx]
        out.append((A.T @ A / len(idx) + p.l2 * np.eye(p.dim), A.T @ b / len(idx)))
    return out


# ---------------------------------------------------- data parallelism, accumulation


def test_accumulated_gradient_is_the_batch_gradient():
    p = least_squares()
    theta = np.random.default_rng(0).standard_normal(p.dim)
    batch = np.arange(3, 27)
    for k in (1, 2, 3, 4, 6, 8, 12, 24):
        np.testing.assert_allclose(dist.accumulated_grad(p, theta, batch, k), p.grad_batch(theta, batch),
                                   rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="n_micro"):
        dist.accumulated_grad(p, theta, batch, 5)


def test_gradient_accumulation_run_equals_the_large_batch_run():
    p = least_squares()
    big = dist.simulate_data_parallel(p, 30, n_workers=1, batch_size=16, lr=0.05, seed=2)
    acc = dist.simulate_data_parallel(p, 30, n_workers=1, batch_size=16, n_micro=4, lr=0.05, seed=2)
    np.testing.assert_allclose(acc.params, big.params, rtol=0, atol=1e-12)
    assert acc.grad_evals[-1] == big.grad_evals[-1] == 30 * 16


@pytest.mark.parametrize("use_optimizer", [False, True])
def test_k_workers_with_batch_b_equal_one_worker_with_batch_kb(use_optimizer):
    p = least_squares()
    K, b, steps = 4, 5, 25
    step = dict(optimizer=optim.adam(lr=0.05)) if use_optimizer else dict(lr=0.05)
    h = dist.simulate_data_parallel(p, steps, n_workers=K, batch_size=b, keep_batches=True, seed=3, **step)
    used = np.stack(h.batches)  # (steps, K, b)
    assert used.shape == (steps, K, b)
    # each worker drew from its own shard, without repeats within a batch
    shards = dist.iid_shards(p.n, K, seed=3)
    for k in range(K):
        assert np.isin(used[:, k], shards[k]).all()
        assert all(len(set(row)) == b for row in used[:, k])
    step = dict(optimizer=optim.adam(lr=0.05)) if use_optimizer else dict(lr=0.05)
    one = dist.simulate_data_parallel(p, steps, n_workers=1, batch_size=K * b,
                                      batches=used.reshape(steps, 1, K * b), shards=[np.arange(p.n)],
                                      seed=3, **step)
    np.testing.assert_allclose(one.params, h.params, rtol=0, atol=1e-12)


def test_data_parallel_with_plain_lr_matches_the_sgd_optimizer():
    p = least_squares()
    a = dist.simulate_data_parallel(p, 20, n_workers=3, batch_size=4, lr=0.1, seed=1)
    b = dist.simulate_data_parallel(p, 20, n_workers=3, batch_size=4, optimizer=optim.sgd(lr=0.1), seed=1)
    np.testing.assert_allclose(a.params, b.params, rtol=0, atol=1e-12)


def test_full_shards_give_gradient_descent():
    p = least_squares()
    shards = dist.iid_shards(p.n, 3, seed=0)  # 20 examples each, so the global batch is all n
    h = dist.simulate_data_parallel(p, 15, n_workers=3, batch_size=20, lr=1 / p.L, shards=shards)
    gd = minimize(p, optim.sgd(lr=1 / p.L), 15, theta0=p.init_params(0))
    np.testing.assert_allclose(h.params, gd.params, rtol=0, atol=1e-12)
    np.testing.assert_allclose(h.loss, gd.loss, rtol=1e-12)


def test_iid_shards_partition_the_data():
    shards = dist.iid_shards(23, 4, seed=1)
    assert sorted(np.concatenate(shards).tolist()) == list(range(23))
    assert sorted(len(s) for s in shards) == [5, 6, 6, 6]


# ------------------------------------------------------------------ local SGD


def test_local_sgd_with_one_local_step_is_synchronous_sgd():
    p = least_squares()
    loc = dist.simulate_local_sgd(p, 20, n_workers=4, local_steps=1, batch_size=3, lr=0.05, seed=5,
                                  keep_batches=True)
    syn = dist.simulate_data_parallel(p, 20, n_workers=4, batch_size=3, lr=0.05, seed=5, keep_batches=True)
    np.testing.assert_array_equal(np.stack([r[0] for r in loc.batches]), np.stack(syn.batches))
    np.testing.assert_allclose(loc.params, syn.params, rtol=0, atol=1e-12)
    np.testing.assert_allclose(loc.loss, syn.loss, rtol=1e-12)


def test_local_sgd_with_more_local_steps_is_a_different_method():
    p = least_squares()
    h1 = dist.simulate_local_sgd(p, 10, n_workers=4, local_steps=1, batch_size=3, lr=0.05, seed=5)
    h4 = dist.simulate_local_sgd(p, 10, n_workers=4, local_steps=4, batch_size=3, lr=0.05, seed=5)
    assert h4.grad_evals[-1] == 4 * h1.grad_evals[-1] == 4 * 10 * 4 * 3
    assert np.linalg.norm(h4.params - h1.params) > 1e-3
    assert np.all(h4.metrics["client_drift"][1:] > 0)


# ------------------------------------------------------------- FedAvg, FedProx


def test_fedavg_with_one_client_is_sgd():
    p = least_squares()
    H, lr = 7, 0.05
    h = dist.simulate_fedavg(p, [np.arange(p.n)], 1, local_steps=H, lr=lr, batch_size=4,
                             keep_batches=True, seed=9)
    x = p.init_params(9)
    for (idx,) in h.batches[0]:
        x = x - lr * p.grad_batch(x, idx)
    np.testing.assert_allclose(h.params, x, rtol=0, atol=1e-13)
    # full local gradients: H steps of gradient descent, as steplab.run computes them
    g = dist.simulate_fedavg(p, [np.arange(p.n)], 1, local_steps=H, lr=lr, seed=0)
    gd = minimize(p, optim.sgd(lr=lr), H, theta0=p.init_params(0))
    np.testing.assert_allclose(g.params, gd.params, rtol=0, atol=1e-13)


def test_fedavg_with_one_local_step_is_gradient_descent_on_the_global_objective():
    # weights |D_k|/n make the average of the clients' steps the global gradient step
    p, clients = heterogeneous()
    lr = 1 / p.L
    h = dist.simulate_fedavg(p, clients, 40, local_steps=1, lr=lr)
    gd = minimize(p, optim.sgd(lr=lr), 40, theta0=p.init_params(0))
    np.testing.assert_allclose(h.params, gd.params, rtol=0, atol=1e-12)


def test_fedavg_fixed_point_is_not_the_minimizer():
    p, clients = heterogeneous()
    H, lr, d = 10, 0.2, p.dim
    weights = np.array([len(c) for c in clients]) / p.n
    # FedAvg with full local gradients is affine: theta -> sum_k p_k (M_k^H theta + sum_j M_k^j lr c_k)
    M_avg, v_avg = np.zeros((d, d)), np.zeros(d)
    for w, (Hk, ck) in zip(weights, client_pieces(p, clients)):
        M = np.eye(d) - lr * Hk
        M_avg += w * np.linalg.matrix_power(M, H)
        v_avg += w * sum(np.linalg.matrix_power(M, j) @ (lr * ck) for j in range(H))
    fixed_point = np.linalg.solve(np.eye(d) - M_avg, v_avg)
    h = dist.simulate_fedavg(p, clients, 200, local_steps=H, lr=lr)
    np.testing.assert_allclose(h.params, fixed_point, rtol=0, atol=1e-9)
    gap = np.linalg.norm(fixed_point - p.minimizer)
    assert gap > 1e-2
    np.testing.assert_allclose(h.metrics["dist_to_minimizer"][-1], gap, rtol=1e-6)
    # one local step: no drift, FedAvg converges to the minimizer
    h1 = dist.simulate_fedavg(p, clients, 400, local_steps=1, lr=lr)
    assert h1.metrics["dist_to_minimizer"][-1] < 1e-8


@pytest.mark.parametrize("mu", [0.1, 10.0, 1e4])
def test_fedprox_clients_solve_the_proximal_problem(mu):
    p, clients = heterogeneous()
    pieces = client_pieces(p, clients)
    L_clients = max(np.linalg.eigvalsh(Hk)[-1] for Hk, _ in pieces)
    lr = 1 / (L_clients + mu)
    theta0 = np.array([1.0, -2.0, 0.5])
    h = dist.simulate_fedprox(p, clients, 1, mu=mu, local_steps=400, lr=lr, theta0=theta0)
    # after enough local steps, client k sits at argmin f_k + mu/2 ||theta - theta0||^2
    prox = [np.linalg.solve(Hk + mu * np.eye(p.dim), ck + mu * theta0) for Hk, ck in pieces]
    weights = np.array([len(c) for c in clients]) / p.n
    np.testing.assert_allclose(h.params, sum(w * x for w, x in zip(weights, prox)), rtol=0, atol=1e-9)
    # strong convexity mu: each client ends within ||grad f_k(theta0)|| / mu of the global model
    grad_norms = [np.linalg.norm(Hk @ theta0 - ck) for Hk, ck in pieces]
    expected_shift = sum(w * np.linalg.norm(x - theta0) for w, x in zip(weights, prox))
    np.testing.assert_allclose(h.metrics["client_shift"][-1], expected_shift, rtol=1e-6)
    assert h.metrics["client_shift"][-1] <= max(grad_norms) / mu


def test_fedprox_with_large_mu_keeps_clients_at_the_global_model():
    p, clients = heterogeneous()
    shifts = []
    for mu in (0.0, 1.0, 1e2, 1e4):
        h = dist.simulate_fedprox(p, clients, 3, mu=mu, local_steps=10, lr=1 / (10 + mu))
        shifts.append(h.metrics["client_shift"][1:].max())
    assert shifts[0] > shifts[1] > shifts[2] > shifts[3]
    assert shifts[3] < 1e-3 * shifts[0]


def test_fedprox_with_mu_zero_is_fedavg_and_server_sgd_one_is_averaging():
    p, clients = heterogeneous()
    kw = dict(local_steps=3, lr=0.1, batch_size=5, seed=4)
    a = dist.simulate_fedavg(p, clients, 5, **kw)
    b = dist.simulate_fedprox(p, clients, 5, mu=0.0, **kw)
    c = dist.simulate_fedavg(p, clients, 5, server_optimizer=optim.sgd(lr=1.0), **kw)
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_allclose(c.params, a.params, rtol=0, atol=1e-12)


def test_client_sampling_uses_a_fraction_of_the_clients():
    p = least_squares(n=60)
    clients = dist.iid_shards(p.n, 6, seed=0)
    h = dist.simulate_fedavg(p, clients, 4, local_steps=2, lr=0.05, batch_size=2, client_fraction=0.5,
                             keep_batches=True)
    for rnd in h.batches:
        assert all(len(draws) == 3 for draws in rnd)
    assert h.grad_evals[-1] == 4 * 3 * 2 * 2


def test_client_drift_by_hand():
    models = [np.array([0.0, 0.0]), np.array([2.0, 0.0]), np.array([1.0, 3.0])]
    assert dist.client_drift(models, np.array([1.0, 0.0])) == pytest.approx((1 + 1 + 3) / 3)
    assert dist.client_drift(models, np.array([1.0, 0.0]), weights=[1, 1, 2]) == pytest.approx(
        (1 + 1 + 2 * 3) / 4)


# --------------------------------------------------------------- compression


def test_top_k_keeps_exactly_the_k_largest_entries():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(50)
    for k in (1, 7, 50):
        y = dist.top_k(x, k)
        kept = np.flatnonzero(y)
        assert kept.size == k
        np.testing.assert_array_equal(y[kept], x[kept])
        assert np.abs(x[kept]).min() >= np.abs(np.delete(x, kept)).max(initial=0)
        assert np.sum((x - y) ** 2) <= (1 - k / x.size) * np.sum(x**2) + 1e-12
    assert dist.top_k(x.reshape(5, 10), 3).shape == (5, 10)
    for bad in (0, 51, 2.5):
        with pytest.raises(ValueError, match="k must"):
            dist.top_k(x, bad)


def test_error_feedback_loses_nothing():
    rng = np.random.default_rng(1)
    compress = dist.top_k_compressor(2)
    residual = np.zeros(10)
    total_in, total_sent = np.zeros(10), np.zeros(10)
    for _ in range(50):
        g = rng.standard_normal(10)
        sent, residual = dist.error_feedback_step(g, residual, compress)
        assert np.count_nonzero(sent) == 2
        total_in += g
        total_sent += sent
    np.testing.assert_allclose(total_sent + residual, total_in, rtol=0, atol=1e-12)
    assert np.linalg.norm(residual) > 0


def test_compression_with_k_equal_d_is_no_compression():
    p = least_squares()
    a = dist.simulate_data_parallel(p, 15, n_workers=3, batch_size=4, lr=0.05, seed=2)
    b = dist.simulate_data_parallel(p, 15, n_workers=3, batch_size=4, lr=0.05, seed=2,
                                    compressor=dist.top_k_compressor(p.dim), error_feedback=True)
    np.testing.assert_allclose(b.params, a.params, rtol=0, atol=1e-12)


def test_error_feedback_shrinks_the_bias_of_top_k_on_heterogeneous_workers():
    # Full shard gradients, so all randomness is gone. The workers' gradients differ and do not
    # vanish at the minimizer; top-1 of each is biased. Without error feedback the bias stays
    # as the step shrinks; with it, what is not sent is sent later, and the error scales with lr.
    p = least_squares(d=5)
    shards = dist.iid_shards(p.n, 3)

    def final_distance(lr, ef):
        h = dist.simulate_data_parallel(p, 300, n_workers=3, batch_size=20, lr=lr / p.L, shards=shards,
                                        compressor=dist.top_k_compressor(1), error_feedback=ef)
        return h.metrics["dist_to_minimizer"][-100:].mean()

    with_ef = {lr: final_distance(lr, True) for lr in (0.1, 0.5)}
    without = {lr: final_distance(lr, False) for lr in (0.1, 0.5)}
    assert with_ef[0.1] < 0.5 * with_ef[0.5]
    assert without[0.1] > 0.5 * without[0.5]
    assert with_ef[0.1] < 0.2 * without[0.1]


def test_stochastic_quantization_is_unbiased_with_the_stated_variance():
    rng = np.random.default_rng(3)
    d, s, draws = 16, 3, 20000
    x = rng.standard_normal(d)
    Q = np.stack([dist.stochastic_quantize(x, s, rng) for _ in range(draws)])
    norm = np.linalg.norm(x)
    # values on the grid ||x|| * sign(x_i) * {0, 1/s, ..., 1}
    levels = np.abs(Q) * s / norm
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-9)
    assert np.all((Q == 0) | (np.sign(Q) == np.sign(x)))
    # per coordinate: Bernoulli between two adjacent levels, so Var = ||x||^2 p(1-p) / s^2
    frac = s * np.abs(x) / norm - np.floor(s * np.abs(x) / norm)
    var = norm**2 * frac * (1 - frac) / s**2
    tol = 5 * np.sqrt(var / draws) + 1e-12  # five standard errors
    assert np.all(np.abs(Q.mean(axis=0) - x) <= tol)
    total_var = np.mean(np.sum((Q - x) ** 2, axis=1))
    assert total_var == pytest.approx(var.sum(), rel=0.05)
    assert total_var <= dist.quantization_variance_bound(d, s) * norm**2
    assert var.sum() <= dist.quantization_variance_bound(d, s) * norm**2


def test_quantization_edge_cases():
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(dist.stochastic_quantize(np.zeros(4), 2, rng), np.zeros(4))
    e = np.array([0.0, -3.0, 0.0])  # a scaled basis vector sits on the grid: no randomness
    np.testing.assert_array_equal(dist.stochastic_quantize(e, 1, rng), e)
    assert dist.quantization_variance_bound(100, 1) == pytest.approx(10.0)   # sqrt(d)/s
    assert dist.quantization_variance_bound(100, 20) == pytest.approx(0.25)  # d/s^2
    with pytest.raises(ValueError, match="s must"):
        dist.stochastic_quantize(e, 0, rng)
    with pytest.raises(ValueError, match="rng"):
        dist.stochastic_quantize(e, 2, 0)


# ------------------------------------------------------------------- DP-SGD


def test_clipping_bounds_every_per_example_norm():
    rng = np.random.default_rng(0)
    G = rng.standard_normal((30, 6)) * rng.uniform(0.1, 5, size=(30, 1))
    C = 1.5
    clipped = dist.clip_per_example(G, C)
    norms = np.linalg.norm(G, axis=1)
    assert np.all(np.linalg.norm(clipped, axis=1) <= C * (1 + 1e-12))
    small = norms <= C
    np.testing.assert_array_equal(clipped[small], G[small])
    np.testing.assert_allclose(np.linalg.norm(clipped[~small], axis=1), C)
    # directions are kept
    np.testing.assert_allclose(clipped[~small] * norms[~small, None] / C, G[~small])
    # dict parameters: the norm is over all of an example's entries
    Gd = {"W": G[:, :4].reshape(30, 2, 2), "b": G[:, 4:]}
    cd = dist.clip_per_example(Gd, C)
    np.testing.assert_allclose(np.concatenate([cd["W"].reshape(30, 4), cd["b"]], axis=1), clipped)


def test_dp_gradient_without_noise_is_the_mean_of_clipped_gradients():
    rng = np.random.default_rng(1)
    G = 3 * rng.standard_normal((8, 5))
    g = dist.dp_sgd_gradient(G, 1.0, 0.0, rng)
    np.testing.assert_allclose(g, dist.clip_per_example(G, 1.0).mean(axis=0), rtol=0, atol=1e-15)
    assert np.linalg.norm(g) <= 1.0 + 1e-12


def test_dp_noise_std_is_sigma_c_over_b():
    rng = np.random.default_rng(2)
    B, d, C, sigma = 16, 5000, 0.7, 1.3
    G = rng.standard_normal((B, d))
    clean = dist.clip_per_example(G, C).mean(axis=0)
    noise = np.concatenate([dist.dp_sgd_gradient(G, C, sigma, rng) - clean for _ in range(4)])
    # 20000 Gaussian draws: the sample std is within about 1/sqrt(2 * 20000) = 0.5% of the truth
    assert noise.std() == pytest.approx(sigma * C / B, rel=0.03)
    assert abs(noise.mean()) < 5 * sigma * C / B / np.sqrt(noise.size)


def test_dp_sgd_run_replays_as_clipped_sgd():
    X, y = make_classification(80, 4, seed=0)
    p = LogisticRegression(X, y, l2=1e-2)
    C, lr = 0.3, 0.5
    h = dist.simulate_dp_sgd(p, 12, batch_size=10, clip_norm=C, noise_multiplier=0.0, lr=lr, seed=1,
                             keep_batches=True)
    x = p.init_params(1)
    for idx in h.batches:
        G = p.per_example_grads(x, idx)
        G = G * np.minimum(1, C / np.linalg.norm(G, axis=1))[:, None]
        x = x - lr * G.mean(axis=0)
    np.testing.assert_allclose(h.params, x, rtol=0, atol=1e-13)
    noisy = dist.simulate_dp_sgd(p, 12, batch_size=10, clip_norm=C, noise_multiplier=1.0, lr=lr, seed=1)
    assert not np.allclose(noisy.params, h.params)


# --------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "call, arg",
    [
        (lambda p: dist.simulate_data_parallel(p, 5, n_workers=0, batch_size=2, lr=0.1), "n_workers"),
        (lambda p: dist.simulate_data_parallel(p, 5, n_workers=4, batch_size=16, lr=0.1), "batch_size"),
        (lambda p: dist.simulate_data_parallel(p, 5, n_workers=2, batch_size=2), "lr"),
        (lambda p: dist.simulate_data_parallel(p, 5, n_workers=2, batch_size=2, lr=0.1,
                                               optimizer=optim.sgd(0.1)), "optimizer"),
        (lambda p: dist.simulate_data_parallel(p, 5, n_workers=2, batch_size=2, lr=-1.0), "lr"),
        (lambda p: dist.simulate_data_parallel(p, 0, n_workers=2, batch_size=2, lr=0.1), "steps"),
        (lambda p: dist.simulate_data_parallel(p, 5, n_workers=2, batch_size=2, lr=0.1,
                                               error_feedback=True), "compressor"),
        (lambda p: dist.simulate_data_parallel(p, 5, n_workers=2, batch_size=2, lr=0.1,
                                               batches=np.zeros((4, 2, 2), int)), "batches"),
        (lambda p: dist.simulate_data_parallel(p, 5, n_workers=2, batch_size=4, lr=0.1,
                                               n_micro=3), "n_micro"),
        (lambda p: dist.simulate_local_sgd(p, 5, n_workers=2, local_steps=0, batch_size=2, lr=0.1),
         "local_steps"),
        (lambda p: dist.simulate_fedavg(p, [np.arange(10), np.array([3, 99])], 2, local_steps=1, lr=0.1),
         r"clients\[1\]"),
        (lambda p: dist.simulate_fedavg(p, [np.arange(10)], 2, local_steps=1, lr=0.1,
                                        client_fraction=0.0), "client_fraction"),
        (lambda p: dist.simulate_fedprox(p, [np.arange(10)], 2, mu=-1.0, local_steps=1, lr=0.1), "mu"),
        (lambda p: dist.simulate_dp_sgd(p, 5, batch_size=4, clip_norm=0.0, noise_multiplier=1.0, lr=0.1),
         "clip_norm"),
        (lambda p: dist.simulate_dp_sgd(p, 5, batch_size=4, clip_norm=1.0, noise_multiplier=-1.0, lr=0.1),
         "noise_multiplier"),
        (lambda p: dist.iid_shards(5, 6), "n_workers"),
    ],
)
def test_bad_arguments_name_the_argument(call, arg):
    with pytest.raises(ValueError, match=arg):
        call(least_squares())


def test_bad_inputs_name_the_argument():
    A, b = make_least_squares(20, 3, seed=0)
    p = LeastSquares(A, b, l2=0.1)
    clients = [np.arange(10), np.arange(10, 20)]
    with pytest.raises(ValueError, match="server_lr must be >= 0"):
        dist.simulate_fedavg(p, clients, 2, local_steps=1, lr=0.1, server_lr=-1.0)
    with pytest.raises(ValueError, match="theta0 must be finite"):
        dist.simulate_fedavg(p, clients, 2, local_steps=1, lr=0.1, theta0=np.array([np.inf, 0.0, 0.0]))
    with pytest.raises(ValueError, match="worker_batches must hold at least one index array"):
        dist.data_parallel_grad(p, np.zeros(3), [])
    with pytest.raises(ValueError, match=r"at least one example .* got shape \(0, 3\)"):
        dist.dp_sgd_gradient(np.ones((0, 3)), 1.0, 1.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"per_example_grads\['b'\] must have a leading example axis"):
        dist.clip_per_example({"a": np.ones((2, 3)), "b": np.ones(2)}, 1.0)
