"""steplab.run against closed forms: GD and heavy-ball iterates on quadratics, the step at which
GD with eta > 2/L crosses the divergence threshold, and sweep_lr against a loop of minimize."""

import warnings

import numpy as np
import pytest

from steplab import optim
from steplab.problems import MLP, LeastSquares, Quadratic, ReddiCounterexample, Rosenbrock
from steplab.run import History, minimize, minimize_online, sweep_lr


def _quadratic():
    center = np.array([1.0, -2.0, 0.5])
    q = Quadratic([0.5, 2.0, 4.0], seed=7, center=center)
    Q = q.eigenvectors
    H = Q @ np.diag([0.5, 2.0, 4.0]) @ Q.T
    return q, H, center


def _f(H, c, x):
    d = x - c
    return 0.5 * d @ H @ d


# ---------------------------------------------------------------- closed forms


def test_gd_reproduces_closed_form_iterates():
    q, H, c = _quadratic()
    x0 = np.array([3.0, 1.0, -1.0])
    eta, T = 0.3, 40
    h = minimize(q, optim.sgd(eta), T, theta0=x0, keep_trajectory=True)
    # x_t - c = (I - eta H)^t (x_0 - c)
    M = np.eye(3) - eta * H
    xs = np.array([c + np.linalg.matrix_power(M, t) @ (x0 - c) for t in range(T + 1)])
    np.testing.assert_allclose(h.trajectory, xs, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(h.loss, [_f(H, c, x) for x in xs], rtol=1e-9, atol=1e-15)
    grads = (xs[:-1] - c) @ H
    np.testing.assert_allclose(h.grad_norm, np.linalg.norm(grads, axis=1), rtol=1e-10)
    np.testing.assert_allclose(h.update_norm, eta * np.linalg.norm(grads, axis=1), rtol=1e-10)
    np.testing.assert_array_equal(h.lr, np.full(T, eta))
    np.testing.assert_allclose(h.params, xs[-1], rtol=1e-10, atol=1e-13)
    assert h.n_steps == T and not h.diverged and h.diverged_at is None
    np.testing.assert_array_equal(x0, [3.0, 1.0, -1.0])  # theta0 is not modified


def test_heavy_ball_reproduces_recursion():
    q, H, c = _quadratic()
    x0 = np.array([3.0, 1.0, -1.0])
    eta, mu, T = 0.2, 0.7, 30
    h = minimize(q, optim.sgd(eta, momentum=mu), T, theta0=x0, keep_trajectory=True)
    x, b, xs = x0.copy(), np.zeros(3), [x0.copy()]
    for _ in range(T):
        b = mu * b + H @ (x - c)
        x = x - eta * b
        xs.append(x.copy())
    np.testing.assert_allclose(h.trajectory, np.array(xs), rtol=1e-10, atol=1e-13)


def test_schedule_lr_and_metrics_are_recorded():
    q, H, c = _quadratic()
    x0 = np.array([3.0, 1.0, -1.0])
    T = 12
    h = minimize(
        q,
        optim.sgd(optim.inverse_sqrt(0.4)),
        T,
        theta0=x0,
        keep_trajectory=True,
        metrics={"dist": lambda theta, g, u, s: np.linalg.norm(theta - c)},
    )
    np.testing.assert_allclose(h.lr, 0.4 / np.sqrt(np.arange(T) + 1), rtol=1e-15)
    np.testing.assert_allclose(h["dist"], np.linalg.norm(h.trajectory[:-1] - c, axis=1), rtol=1e-12)
    np.testing.assert_allclose(h.suboptimality(0.0), h.loss)
    # theta_{t+1} = theta_t - lr_t * H (theta_t - c)
    np.testing.assert_allclose(
        np.diff(h.trajectory, axis=0), -h.lr[:, None] * ((h.trajectory[:-1] - c) @ H), rtol=1e-10, atol=1e-14
    )
    with pytest.raises(KeyError, match="no series 'nope'"):
        h["nope"]


# ---------------------------------------------------------------- divergence


def test_divergence_above_two_over_L_stops_at_predicted_step():
    # Diagonal quadratic, L = 1: with eta = 2.5 the top mode is multiplied by -1.5 per step, the
    # other by (1 - 0.25) = 0.75, so f_t = 1/2 (1.5^(2t) x^2 + 0.1 * 0.75^(2t) y^2).
    q = Quadratic([1.0, 0.1], rotate=False)
    x0 = np.array([1.0, 1.0])
    t = np.arange(200)
    f = 0.5 * (1.5 ** (2 * t) + 0.1 * 0.75 ** (2 * t))
    factor = 1e6
    expected = int(np.argmax(f > factor * max(f[0], 1.0)))  # first iterate over the threshold
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = minimize(q, optim.sgd(2.5), 200, theta0=x0, diverge_factor=factor, keep_trajectory=True)
    assert h.diverged and h.diverged_at == expected
    assert h.n_steps == expected - 1 and h.loss.size == expected
    assert "diverge_factor" in h.reason
    for a in (h.loss, h.grad_norm, h.update_norm, h.lr, h.trajectory):
        assert np.all(np.isfinite(a))
    np.testing.assert_allclose(h.loss, f[:expected], rtol=1e-12)
    np.testing.assert_allclose(h.params, [(-1.5) ** (expected - 1), 0.75 ** (expected - 1)], rtol=1e-12)


def test_divergence_below_two_over_L_does_not_trigger():
    q = Quadratic([1.0, 0.1], rotate=False)
    h = minimize(q, optim.sgd(1.99), 300, theta0=np.ones(2))
    assert not h.diverged and h.n_steps == 300


@pytest.mark.parametrize("eta", [1e150, 1e300])
def test_overflow_is_caught_and_reported(eta):
    # Huge steps overflow the loss (1e150) or the parameters themselves (1e300) to inf; numpy's
    # overflow warnings must not escape and no NaN/inf may be recorded.
    q = Quadratic([1.0, 4.0], rotate=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = minimize(q, optim.sgd(eta), 10, theta0=np.array([1e10, 1e10]), diverge_factor=1e300)
    assert h.diverged_at == 1 and h.n_steps == 0
    assert h.reason in ("loss is inf", "non-finite parameters")
    assert h.loss.shape == (1,) and np.isfinite(h.loss).all()
    np.testing.assert_array_equal(h.params, [1e10, 1e10])


# ---------------------------------------------------------------- minibatches


class _RecordingLeastSquares(LeastSquares):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.batches = []

    def grad_batch(self, theta, idx):
        self.batches.append(np.array(idx))
        return super().grad_batch(theta, idx)


def _ls(n=30, d=4, seed=0, cls=LeastSquares):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d))
    return cls(A, A @ rng.standard_normal(d) + 0.1 * rng.standard_normal(n), l2=0.01)


def test_minibatches_are_without_replacement_and_seeded():
    p = _ls(cls=_RecordingLeastSquares)
    h1 = minimize(p, optim.sgd(0.05), 25, batch_size=8, seed=3)
    batches = p.batches[:]
    assert len(batches) == 25
    assert all(b.size == 8 and np.unique(b).size == 8 for b in batches)
    rng = np.random.default_rng(3)
    for b in batches:
        np.testing.assert_array_equal(b, rng.choice(30, size=8, replace=False))
    p.batches.clear()
    h2 = minimize(p, optim.sgd(0.05), 25, batch_size=8, seed=3)
    np.testing.assert_array_equal(h1.loss, h2.loss)
    h3 = minimize(p, optim.sgd(0.05), 25, batch_size=8, seed=4)
    assert not np.array_equal(h1.loss, h3.loss)


def test_full_size_minibatch_equals_full_batch():
    # A batch of all n examples (in any order) has mean gradient = full gradient.
    p = _ls()
    x0 = p.init_params(1)
    full = minimize(p, optim.sgd(0.1), 20, theta0=x0)
    batch = minimize(p, optim.sgd(0.1), 20, batch_size=p.n, seed=5, theta0=x0)
    np.testing.assert_allclose(batch.loss, full.loss, rtol=1e-12)


def test_dict_params_with_mlp():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    p = MLP(X, y, hidden=5, seed=0)
    h = minimize(p, optim.adam(0.05), 30, batch_size=10, keep_trajectory=True)
    assert isinstance(h.params, dict) and set(h.params) == {"W1", "b1", "W2", "b2"}
    assert len(h.trajectory) == 31 and isinstance(h.trajectory[0], dict)
    assert h.loss[-1] < h.loss[0]
    # update_norm is the global norm of theta_{t+1} - theta_t over all arrays
    diff = {k: h.trajectory[1][k] - h.trajectory[0][k] for k in h.params}
    assert h.update_norm[0] == pytest.approx(np.sqrt(sum(np.sum(v**2) for v in diff.values())))


def test_progress_bar_does_not_change_the_run():
    q, _, _ = _quadratic()
    a = minimize(q, optim.sgd(0.1), 50, progress=True)
    b = minimize(q, optim.sgd(0.1), 50)
    np.testing.assert_array_equal(a.loss, b.loss)


def test_validation():
    q, _, _ = _quadratic()
    with pytest.raises(ValueError, match="steps must be an integer >= 0, got -1"):
        minimize(q, optim.sgd(0.1), -1)
    with pytest.raises(ValueError, match="batch_size=4 needs a finite-sum problem"):
        minimize(q, optim.sgd(0.1), 5, batch_size=4)
    with pytest.raises(ValueError, match=r"batch_size must be an integer in \[1, 30\], got 31"):
        minimize(_ls(), optim.sgd(0.1), 5, batch_size=31)
    with pytest.raises(ValueError, match="diverge_factor must be > 1, got 0.5"):
        minimize(q, optim.sgd(0.1), 5, diverge_factor=0.5)
    with pytest.raises(ValueError, match="optimizer must be"):
        minimize(q, lambda g: g, 5)
    with pytest.raises(ValueError, match=r"metrics\['m'\] must be callable"):
        minimize(q, optim.sgd(0.1), 5, metrics={"m": 3})


# ---------------------------------------------------------------- online


def test_online_reddi_adam_fails_amsgrad_does_not():
    # Reddi et al. (2018), Theorem 1: beta1 = 0, beta2 = 1/(1 + C^2), eta_t = eta / sqrt(t).
    p = ReddiCounterexample(C=3.0)
    kw = dict(beta1=0.0, beta2=1.0 / (1.0 + 9.0))
    T = 1000
    adam = minimize_online(p, optim.adam(optim.inverse_sqrt(0.5), **kw), T, keep_trajectory=True)
    ams = minimize_online(p, optim.adam(optim.inverse_sqrt(0.5), amsgrad=True, **kw), T, keep_trajectory=True)
    assert adam.params[0] > 0.9  # drifts to the worst point x = +1
    assert ams.params[0] < -0.9  # converges towards x* = -1
    # Average regret R_T/T: at x = +1 each period of three rounds costs
    # (C - 1 - 1) - (-C + 1 + 1) = 2(C - 2), so Adam's tends to 2(C - 2)/3 = 2/3; AMSGrad's vanishes.
    assert adam.metrics["average_regret"][-1] > 0.5
    assert ams.metrics["average_regret"][-1] < 0.1
    # loss[t-1] = f_t(x_t) with f_t(x) = C x if t % 3 == 1 else -x, t = 1, 2, ...
    t = np.arange(1, T + 1)
    coef = np.where(t % 3 == 1, 3.0, -1.0)
    x = adam.trajectory[:-1, 0]
    np.testing.assert_allclose(adam.loss, coef * x, rtol=1e-14)
    np.testing.assert_allclose(adam.update_norm, np.abs(np.diff(adam.trajectory[:, 0])), rtol=1e-14)
    assert np.all(np.abs(adam.trajectory) <= 1.0)


def test_online_needs_online_problem():
    with pytest.raises(ValueError, match="minimize_online needs problem.value_at"):
        minimize_online(Quadratic([1.0]), optim.sgd(0.1), 3)


# ---------------------------------------------------------------- sweeps


def _assert_same(h: History, ref: History):
    # Equal to rounding: a batched matrix product rounds differently from a single one, and the
    # rounding error is relative to the scale of the run, not to a value that has converged to 0.
    assert h.diverged_at == ref.diverged_at and h.n_steps == ref.n_steps
    for key in ("loss", "grad_norm", "update_norm", "lr"):
        np.testing.assert_allclose(h[key], ref[key], rtol=1e-11, atol=1e-12 * np.max(np.abs(ref[key])))
    np.testing.assert_allclose(h.params, ref.params, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.8, False), (0.6, True)])
def test_sweep_lr_equals_looped_minimize(momentum, nesterov):
    q, _, _ = _quadratic()  # L = 4: stable for GD below 0.5
    lrs = [0.01, 0.1, 0.3, 0.49, 0.6, 2.0]
    x0 = np.array([3.0, 1.0, -1.0])
    swept = sweep_lr(q, lrs, 120, momentum=momentum, nesterov=nesterov, theta0=x0, keep_trajectory=True)
    for lr, h in zip(lrs, swept):
        ref = minimize(q, optim.sgd(lr, momentum=momentum, nesterov=nesterov), 120, theta0=x0, keep_trajectory=True)
        _assert_same(h, ref)
        np.testing.assert_allclose(h.trajectory, ref.trajectory, rtol=1e-11, atol=1e-14)
    if momentum == 0.0:
        assert [h.diverged for h in swept] == [False, False, False, False, True, True]


def test_sweep_lr_least_squares_default_start():
    p = _ls()
    lrs = np.geomspace(1e-3, 10.0, 7)
    for lr, h in zip(lrs, sweep_lr(p, lrs, 60, seed=2)):
        _assert_same(h, minimize(p, optim.sgd(lr), 60, seed=2))


def test_sweep_lr_validation():
    with pytest.raises(ValueError, match="sweep_lr needs a problem with batched = True"):
        sweep_lr(MLP(np.ones((4, 2)), np.array([0, 1, 0, 1]), hidden=2), [0.1], 5)
    with pytest.raises(ValueError, match="lrs must be finite and >= 0"):
        sweep_lr(Rosenbrock(), [0.1, -1.0], 5)
    with pytest.raises(ValueError, match="nesterov=True requires momentum > 0"):
        sweep_lr(Rosenbrock(), [0.1], 5, nesterov=True)


def test_zero_steps_and_optimizer_without_lr():
    q, _, _ = _quadratic()
    h = minimize(q, optim.sgd(0.1), 0)
    assert h.n_steps == 0 and h.loss.shape == (1,) and h.lr.shape == (0,)
    # scale(-0.1) is GD without a readable learning rate: no lr series, the rest recorded
    h = minimize(q, optim.scale(-0.1), 5)
    assert h.lr is None and h.n_steps == 5
    with pytest.raises(KeyError, match="no 'lr'"):
        h["lr"]
    np.testing.assert_allclose(h.loss, minimize(q, optim.sgd(0.1), 5).loss, rtol=1e-14)


# ---------------------------------------------------------------- stopping rules and sparse metrics


def test_grad_tol_stops_at_the_predicted_step():
    # 1-D f = L/2 x^2, GD: g_t = L (1 - eta L)^t x_0, so ||g_t|| <= tol first at
    # t* = ceil(log(tol / (L |x_0|)) / log|1 - eta L|); the run stops before that update.
    L, eta, x0, tol = 2.0, 0.3, 5.0, 1e-6
    q = Quadratic([L], rotate=False)
    expected = int(np.ceil(np.log(tol / (L * x0)) / np.log(abs(1 - eta * L))))
    h = minimize(q, optim.sgd(eta), 1000, theta0=np.array([x0]), grad_tol=tol)
    assert h.stop_reason == "grad_tol" and h.n_steps == expected and h.loss.size == expected + 1
    assert not h.diverged and "grad_tol" in h.reason
    assert np.all(h.grad_norm > tol)
    assert abs(q.grad(h.params)[0]) <= tol
    np.testing.assert_allclose(h.params, [x0 * (1 - eta * L) ** expected], rtol=1e-12)
    # the budget ends a run whose tolerance is not reached
    h = minimize(q, optim.sgd(eta), expected - 1, theta0=np.array([x0]), grad_tol=tol)
    assert h.stop_reason == "steps" and h.reason is None and h.n_steps == expected - 1


def test_rel_tol_stops_at_the_predicted_step():
    # 1-D f_t = f_0 q^(2t), q = 1 - eta L: the rule |f_t - f_{t+1}| <= rel_tol max(|f_t|, 1) fires
    # first at the t where f_t (1 - q^2) <= rel_tol max(f_t, 1); the update of step t is applied.
    L, eta, x0, rel_tol = 1.0, 0.05, 30.0, 1e-3
    q = Quadratic([L], rotate=False)
    t = np.arange(2000)
    f = 0.5 * L * x0**2 * (1 - eta * L) ** (2 * t)
    fires = f * (1 - (1 - eta * L) ** 2) <= rel_tol * np.maximum(f, 1.0)
    t_stop = int(np.argmax(fires))
    h = minimize(q, optim.sgd(eta), 2000, theta0=np.array([x0]), rel_tol=rel_tol)
    assert h.stop_reason == "rel_tol" and h.n_steps == t_stop + 1
    np.testing.assert_allclose(h.loss, f[: t_stop + 2], rtol=1e-10)
    # A ten times smaller step stops on the same rule with a far larger loss: the rule certifies nothing.
    slow = minimize(q, optim.sgd(eta / 10), 2000, theta0=np.array([x0]), rel_tol=rel_tol)
    assert slow.stop_reason == "rel_tol" and slow.loss[-1] > 10 * h.loss[-1]


def test_stop_reason_for_budget_and_divergence():
    q = Quadratic([1.0, 0.1], rotate=False)
    assert minimize(q, optim.sgd(0.5), 10, theta0=np.ones(2)).stop_reason == "steps"
    h = minimize(q, optim.sgd(2.5), 200, theta0=np.ones(2))
    assert h.diverged and h.stop_reason == "diverged"
    assert [s.stop_reason for s in sweep_lr(q, [0.5, 2.5], 200, theta0=np.ones(2))] == ["steps", "diverged"]


def test_metrics_every_k_steps():
    q, H, c = _quadratic()
    x0 = np.array([3.0, 1.0, -1.0])
    calls = []

    def dist(theta, g, u, s):
        calls.append(1)
        return np.linalg.norm(theta - c)

    h = minimize(q, optim.sgd(0.2), 10, theta0=x0, keep_trajectory=True, metrics={"dist": dist}, metrics_every=3)
    np.testing.assert_array_equal(h.metric_steps, [0, 3, 6, 9])
    assert len(calls) == 4
    np.testing.assert_allclose(h["dist"], np.linalg.norm(h.trajectory[[0, 3, 6, 9]] - c, axis=1), rtol=1e-12)
    every = minimize(q, optim.sgd(0.2), 10, theta0=x0, metrics={"dist": dist})
    np.testing.assert_array_equal(every.metric_steps, np.arange(10))
    np.testing.assert_allclose(every["dist"][[0, 3, 6, 9]], h["dist"], rtol=1e-15)
    np.testing.assert_array_equal(every.loss, h.loss)  # sparse metrics do not change the run


def test_stopping_and_metrics_validation():
    q, _, _ = _quadratic()
    with pytest.raises(ValueError, match="grad_tol must be >= 0, got -1.0"):
        minimize(q, optim.sgd(0.1), 5, grad_tol=-1.0)
    with pytest.raises(ValueError, match="rel_tol must be a finite number, got nan"):
        minimize(q, optim.sgd(0.1), 5, rel_tol=float("nan"))
    with pytest.raises(ValueError, match="metrics_every must be an integer >= 1, got 0"):
        minimize(q, optim.sgd(0.1), 5, metrics_every=0)


# ---------------------------------------------------------------- sgd_runs


class _ReplayedOracle:
    """One run of sgd_runs seen by minimize: grad returns the r-th run's recorded draw at each call."""

    def __init__(self, problem, grads):
        self.problem, self.grads, self.calls = problem, grads, 0
        self.dim = problem.dim

    def value(self, theta):
        return self.problem.value(theta)

    def grad(self, theta):
        g = self.grads(theta, self.calls)
        self.calls += 1
        return g

    def init_params(self, seed=0):
        return self.problem.init_params(seed)


@pytest.mark.parametrize("batch_size,noise_std,average", [(3, 0.0, True), (None, 0.7, "lr"), (2, 0.3, True)])
def test_sgd_runs_equal_separate_minimize_runs_with_the_same_draws(batch_size, noise_std, average):
    from steplab.problems import make_least_squares
    from steplab.run import sgd_runs

    A, b = make_least_squares(40, 3, noise=0.5, seed=1)
    p = LeastSquares(A, b, l2=0.1)
    R, T, seed = 4, 30, 5
    schedule = optim.schedules.inverse_time(0.5, 2.0)
    theta0 = np.random.default_rng(0).standard_normal((R, 3))
    out = sgd_runs(p, schedule, T, R, batch_size=batch_size, noise_std=noise_std, seed=seed, theta0=theta0,
                   average=average, average_start=4, record_every=7)
    # replay the documented draws: per step, the indices (if any), then the noise (if any)
    rng = np.random.default_rng(seed)
    idx, noise = [], []
    for _ in range(T):
        idx.append(rng.integers(p.n, size=(R, batch_size)) if batch_size else None)
        noise.append(rng.standard_normal((R, 3)) if noise_std else np.zeros((R, 3)))
    np.testing.assert_array_equal(out.steps, [0, 7, 14, 21, 28, 30])
    for r in range(R):
        def grads(theta, t, r=r):
            g = p.grad(theta) if batch_size is None else p.grad_batch(theta, idx[t][r])
            return g + noise_std * noise[t][r]

        h = minimize(_ReplayedOracle(p, grads), optim.sgd(lr=schedule), T, theta0=theta0[r], keep_trajectory=True)
        np.testing.assert_allclose(out.params[r], h.params, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(out.loss[:, r], h.loss[out.steps], rtol=1e-12)
        np.testing.assert_allclose(out.dist2[:, r], np.sum((h.trajectory[out.steps] - p.minimizer) ** 2, axis=1),
                                   rtol=1e-10)
        w = np.ones(T) if average is True else np.array([schedule(t) for t in range(T)])
        w[:4] = 0.0  # average_start = 4
        for j, t in enumerate(out.steps):
            avg = h.trajectory[t] if t <= 4 else w[:t] @ h.trajectory[:t] / w[:t].sum()
            assert out.avg_loss[j, r] == pytest.approx(p.value(avg), rel=1e-12)
        np.testing.assert_allclose(out.average[r], w @ h.trajectory[:T] / w.sum(), rtol=1e-12)
    np.testing.assert_allclose(out.lr, [schedule(t) for t in range(T)])


def test_sgd_runs_noisy_quadratic_stationary_variance():
    r"""Stationary variance of constant-step SGD with an additive Gaussian oracle on a quadratic.

    With H = diag(lambda_i) (axis-aligned) and g = H(theta - theta*) + sigma z, z ~ N(0, I), the
    error c = theta_i - theta*_i obeys c_{t+1} = (1 - eta lambda_i) c_t - eta sigma z_{t,i}. Started
    at c_0 = 0 the c_t are Gaussian with variance v_t, v_{t+1} = (1 - eta lambda_i)^2 v_t + eta^2 sigma^2,
    so v_t = v_inf (1 - (1 - eta lambda_i)^{2t}) with v_inf = eta^2 sigma^2 / (1 - (1 - eta lambda_i)^2)
    = eta sigma^2 / (lambda_i (2 - eta lambda_i)), i.e. lambda_i v_inf = eta sigma^2 / (2 - eta lambda_i).
    At eta lambda = 1.8 that is ten times the small-step value eta sigma^2 / 2.
    The sample variance over R independent Gaussian runs has relative standard deviation sqrt(2/R);
    the check allows 4 of them.
    """
    from steplab.run import sgd_runs

    lam = np.array([0.1, 0.5, 1.0, 1.8])
    q = Quadratic(lam, rotate=False, center=np.array([1.0, -1.0, 0.0, 2.0]))
    eta, sigma, R, T = 1.0, 0.5, 4000, 150
    out = sgd_runs(q, eta, T, R, noise_std=sigma, seed=3, theta0=q.minimizer, record_steps=[T])
    c = out.params - q.minimizer
    v_T = eta * sigma**2 / (lam * (2 - eta * lam)) * (1 - (1 - eta * lam) ** (2 * T))
    np.testing.assert_allclose(lam * np.mean(c**2, axis=0), lam * v_T, rtol=4 * np.sqrt(2 / R))
    np.testing.assert_allclose(lam * v_T, eta * sigma**2 / (2 - eta * lam), rtol=1e-6)  # transient gone
    # E f - f* = 1/2 sum_i lambda_i v_i, and the recorded suboptimality is its per-run estimate
    assert out.mean("suboptimality")[-1] == pytest.approx(0.5 * np.sum(lam * v_T), rel=4 * np.sqrt(2 / R))
    assert out.mean("dist2")[-1] == pytest.approx(np.sum(v_T), rel=4 * np.sqrt(2 / R))


def test_sgd_runs_average_of_gradient_descent_is_a_geometric_mean():
    # no noise: theta_t - theta* = q^t (theta_0 - theta*), q = 1 - eta lambda, so the uniform
    # average of theta_0..theta_{T-1} is theta* + (1 - q^T) / ((1 - q) T) (theta_0 - theta*)
    from steplab.run import sgd_runs

    q1 = Quadratic([0.5], rotate=False, center=np.array([2.0]))
    eta, T = 0.4, 25
    out = sgd_runs(q1, eta, T, 3, theta0=np.array([0.0]), average=True)
    ratio = 1 - eta * 0.5
    expected = 2.0 + (1 - ratio**T) / ((1 - ratio) * T) * (0.0 - 2.0)
    np.testing.assert_allclose(out.average[:, 0], expected, rtol=1e-13)
    np.testing.assert_allclose(out.params[:, 0], 2.0 - 2.0 * ratio**T, rtol=1e-13)
    np.testing.assert_allclose(out.mean("dist2"), 4.0 * ratio ** (2 * np.arange(T + 1)), rtol=1e-12)
    # record_loss=False skips the objective and keeps the same iterates and distances
    cheap = sgd_runs(q1, eta, T, 3, theta0=np.array([0.0]), average=True, record_loss=False)
    assert cheap.loss is None and cheap.avg_loss is None
    np.testing.assert_array_equal(cheap.dist2, out.dist2)
    with pytest.raises(ValueError, match="suboptimality needs record_loss=True"):
        cheap.mean("suboptimality")


def test_sgd_runs_grad_norm2_of_gradient_descent_on_a_quadratic():
    # no noise: grad f(theta_t) = H (theta_t - c) = Q diag(lambda (1 - eta lambda)^t) Q^T (theta_0 - c), so
    # ||grad f(theta_t)||^2 = sum_i lambda_i^2 (1 - eta lambda_i)^(2t) z_i^2 with z = Q^T (theta_0 - c)
    from steplab.run import sgd_runs

    q, H, center = _quadratic()
    lam, eta, T = np.array([0.5, 2.0, 4.0]), 0.3, 20
    theta0 = np.array([2.0, 0.0, -1.0])
    z = q.eigenvectors.T @ (theta0 - center)
    out = sgd_runs(q, eta, T, 2, theta0=theta0, record_every=3, record_grad_norm2=True)
    t = out.steps[:, None]
    expected = np.sum(lam**2 * (1 - eta * lam) ** (2 * t) * z**2, axis=1)
    np.testing.assert_allclose(out.grad_norm2, np.column_stack([expected, expected]), rtol=1e-10)
    np.testing.assert_allclose(out.mean("grad_norm2"), expected, rtol=1e-10)
    assert sgd_runs(q, eta, T, 2, theta0=theta0).grad_norm2 is None


@pytest.mark.parametrize("batch_size,noise_std", [(None, 0.5), (3, 0.0), (2, 0.4)])
def test_sgd_runs_grad_norm2_equals_norms_at_the_replayed_params(batch_size, noise_std):
    # the draws of the first t steps do not depend on the number of steps, so a run of t steps with the
    # same seed ends at theta_t; its full gradient is computed here by hand (H (theta - c) or the
    # least-squares A^T (A theta - b)/n + l2 theta), not by the problem
    from steplab.problems import make_least_squares
    from steplab.run import sgd_runs

    if batch_size is None:
        p, H, center = _quadratic()
        full_grad = lambda th: (th - center) @ H  # noqa: E731  (H symmetric)
    else:
        A, b = make_least_squares(30, 3, noise=0.5, seed=2)
        p = LeastSquares(A, b, l2=0.1)
        full_grad = lambda th: (th @ A.T - b) @ A / len(b) + 0.1 * th  # noqa: E731
    R, T, seed = 5, 12, 8
    theta0 = np.array([1.0, -1.0, 2.0])
    kw = dict(batch_size=batch_size, noise_std=noise_std, seed=seed, theta0=theta0)
    out = sgd_runs(p, 0.1, T, R, record_steps=[2, 5, 11], record_grad_norm2=True, **kw)
    np.testing.assert_array_equal(out.steps, [0, 2, 5, 11, 12])
    for j, t in enumerate(out.steps):
        theta_t = sgd_runs(p, 0.1, int(t), R, **kw).params
        np.testing.assert_allclose(out.grad_norm2[j], np.sum(full_grad(theta_t) ** 2, axis=1), rtol=1e-10)
    # recording reuses the step's full gradient and draws nothing: the iterates are unchanged
    np.testing.assert_array_equal(out.params, sgd_runs(p, 0.1, T, R, record_every=1, **kw).params)


def test_sgd_runs_grad_norm2_noisy_quadratic_expectation():
    # axis-aligned H, start at theta*: c_{t,i} ~ N(0, v_{t,i}) independent across i, with
    # v_t = eta sigma^2 (1 - (1 - eta lambda)^(2t)) / (lambda (2 - eta lambda)) (see the stationary test), so
    # E||grad f(theta_t)||^2 = sum_i lambda_i^2 v_{t,i} and one run's value has variance 2 sum_i lambda_i^4 v_{t,i}^2;
    # the mean of R runs is within 4 of its standard deviations
    from steplab.run import sgd_runs

    lam = np.array([0.2, 1.0, 1.5])
    q = Quadratic(lam, rotate=False, center=np.array([1.0, 0.0, -1.0]))
    eta, sigma, R, T = 0.8, 0.7, 3000, 40
    out = sgd_runs(q, eta, T, R, noise_std=sigma, seed=6, theta0=q.minimizer, record_steps=[5, 20],
                   record_loss=False, record_grad_norm2=True)
    t = out.steps[:, None]
    v = eta * sigma**2 * (1 - (1 - eta * lam) ** (2 * t)) / (lam * (2 - eta * lam))
    expected = np.sum(lam**2 * v, axis=1)
    sd = np.sqrt(2 * np.sum(lam**4 * v**2, axis=1) / R)
    measured = out.mean("grad_norm2")
    assert measured[0] == 0.0
    assert np.all(np.abs(measured[1:] - expected[1:]) <= 4 * sd[1:]), (measured, expected, sd)


def test_sgd_runs_validation():
    from steplab.run import sgd_runs

    q = Quadratic([1.0, 2.0])
    with pytest.raises(ValueError, match="n_runs must be an integer >= 1, got 0"):
        sgd_runs(q, 0.1, 5, 0)
    with pytest.raises(ValueError, match="noise_std must be >= 0, got -1"):
        sgd_runs(q, 0.1, 5, 2, noise_std=-1.0)
    with pytest.raises(ValueError, match="average must be False, True or 'lr', got 'tail'"):
        sgd_runs(q, 0.1, 5, 2, average="tail")
    with pytest.raises(ValueError, match="record_grad_norm2 must be True or False, got 'yes'"):
        sgd_runs(q, 0.1, 5, 2, record_grad_norm2="yes")
    with pytest.raises(ValueError, match="these runs recorded no 'grad_norm2'"):
        sgd_runs(q, 0.1, 5, 2).mean("grad_norm2")
    with pytest.raises(ValueError, match="batch_size=2 needs a finite-sum problem"):
        sgd_runs(q, 0.1, 5, 2, batch_size=2)
    with pytest.raises(ValueError, match=r"theta0 must have shape \(2,\) or \(3, 2\), got shape \(4,\)"):
        sgd_runs(q, 0.1, 5, 3, theta0=np.zeros(4))
    with pytest.raises(ValueError, match="sgd_runs needs a problem with batched = True"):
        X, y = np.random.default_rng(0).standard_normal((6, 2)), np.array([0, 1, 0, 1, 0, 1])
        sgd_runs(MLP(X, y, hidden=2), 0.1, 5, 2)


def test_eval_every_evaluates_the_loss_only_at_the_listed_steps():
    # the iterates do not depend on how often the loss is evaluated; the recorded losses are the
    # full run's losses at t = 0, k, 2k, ... and at the last step, and value() is called once per entry
    p = _ls()

    class Counting(type(p)):
        calls = 0

        def value(self, theta):
            Counting.calls += 1
            return super().value(theta)

    cp = Counting(p.A, p.b, l2=p.l2)
    full = minimize(p, optim.sgd(0.05), 23, batch_size=4, seed=2)
    Counting.calls = 0
    sparse = minimize(cp, optim.sgd(0.05), 23, batch_size=4, seed=2, eval_every=5)
    np.testing.assert_array_equal(sparse.loss_steps, [0, 5, 10, 15, 20, 23])
    np.testing.assert_allclose(sparse.loss, full.loss[sparse.loss_steps], rtol=1e-13)
    assert Counting.calls == 6
    np.testing.assert_array_equal(sparse.params, full.params)
    assert sparse.n_steps == 23 and sparse.grad_norm.size == 23
    assert full.loss_steps is None
    with pytest.raises(ValueError, match="eval_every must be an integer >= 1, got 0"):
        minimize(p, optim.sgd(0.05), 5, eval_every=0)
    with pytest.raises(ValueError, match="rel_tol compares consecutive losses and needs eval_every=1, got eval_every=2"):
        minimize(p, optim.sgd(0.05), 5, eval_every=2, rel_tol=1e-3)


def test_eval_every_still_catches_divergence():
    # GD with eta = 3/L on a quadratic diverges; with eval_every the loss test fires at the
    # first evaluated step past the threshold, which is a multiple of k
    q = Quadratic([1.0], rotate=False)
    h = minimize(q, optim.sgd(3.0), 100, theta0=np.array([1.0]), eval_every=4, diverge_factor=1e3)
    # |theta_t| = 2^t, f = 4^t / 2 > 1e3 * 1/2 first at t = 5; the first evaluation after is t = 8
    assert h.diverged_at == 8


def test_non_finite_starting_points_are_rejected_by_name():
    from steplab.run import sgd_runs

    q = Quadratic([1.0, 0.1])
    with pytest.raises(ValueError, match="theta0 must be finite"):
        sgd_runs(q, 0.1, 3, 2, theta0=np.array([np.nan, 1.0]))
    with pytest.raises(ValueError, match="theta0 must be finite"):
        minimize_online(ReddiCounterexample(), optim.sgd(0.1), 3, theta0=np.array([np.nan]))


def test_minimize_starts_an_mlp_from_its_own_seed():
    from steplab.problems import MLP, make_classification

    X, y = make_classification(30, 4, n_classes=3, seed=1)
    h0 = minimize(MLP(X, y, hidden=5, seed=0), optim.sgd(0.1), 0, keep_trajectory=True)
    h5 = minimize(MLP(X, y, hidden=5, seed=5), optim.sgd(0.1), 0, keep_trajectory=True)
    start5 = MLP(X, y, hidden=5, seed=5).init_params()
    for key in start5:
        np.testing.assert_array_equal(h5.trajectory[0][key], start5[key])
    assert not np.array_equal(h0.trajectory[0]["W1"], h5.trajectory[0]["W1"])
    # an explicit seed still picks the initialization
    h = minimize(MLP(X, y, hidden=5, seed=5), optim.sgd(0.1), 0, seed=0, keep_trajectory=True)
    np.testing.assert_array_equal(h.trajectory[0]["W1"], h0.trajectory[0]["W1"])
