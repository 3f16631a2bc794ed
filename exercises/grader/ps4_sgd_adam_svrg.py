"""Grader tests for problem set 4 (see exercises/bin/grader.py): Adam step, SVRG, training loops."""

import numpy as np
import steplab.data as data
import steplab.optim as optim
import steplab.problems as problems
from grader import Attr, Lib, Logged, Table, test


def softmax(learner, X, y, n_classes, l2):
    """The same softmax regression here and in the kernel: (grader's problem, kernel handle)."""
    return (problems.SoftmaxRegression(X, y, n_classes=n_classes, l2=l2),
            learner.new("steplab.problems.SoftmaxRegression", X, y, n_classes=n_classes, l2=l2))


@test("test_steps_visible", visible=True)
def steps_visible(learner):
    u, _ = learner.data("adam_step", np.array([2.0, -3.0]), (0.0, 0.0, 0), lr=0.1)
    assert np.allclose(np.asarray(u), [-0.1, 0.1]), "the first Adam step is -lr * sign(g) (up to eps)"
    ds = data.load_digits()
    p, k = softmax(learner, ds.X_train, ds.y_train, 10, 0.001)
    snap = np.zeros(p.dim)
    d = learner.data("svrg_direction", k, snap, snap, p.grad(snap), np.arange(5))
    assert np.allclose(np.asarray(d), p.grad(snap)), "at the snapshot the direction is the full gradient"


@test("test_steps_hidden")
def steps_hidden(learner):
    rng = np.random.default_rng(2024)
    theta = rng.normal(size=6)
    opt = optim.adam(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6)
    ref_state, state = opt.init(theta), (0.0, 0.0, 0)
    for _ in range(6):
        g = rng.normal(size=6) * 10.0 ** rng.integers(-3, 3)
        u_ref, ref_state = opt.update(g, ref_state, theta)
        u, state = learner.call("adam_step", g, state, 0.01, 0.8, 0.99, 1e-6)
        assert np.max(np.abs(np.asarray(u) - u_ref)) <= 1e-12 + 1e-9 * np.max(np.abs(u_ref))
    X, y = problems.make_classification(120, 4, n_classes=3, seed=19)
    p, k = softmax(learner, X, y, 3, 0.01)
    th, sn = rng.normal(size=p.dim), rng.normal(size=p.dim)
    mu = p.grad(sn)
    dirs = np.array([np.asarray(learner.data("svrg_direction", k, th, sn, mu, np.array([i]))) for i in range(p.n)])
    assert np.max(np.abs(dirs.mean(0) - p.grad(th))) <= 1e-10, "unbiased over the examples"
    i = np.array([3, 7])
    want = p.grad_batch(th, i) - p.grad_batch(sn, i) + mu
    assert np.max(np.abs(np.asarray(learner.data("svrg_direction", k, th, sn, mu, i)) - want)) <= 1e-12


# ---------------------------------------------------------------- the three loops, every gradient logged

TINY = problems.make_classification(40, 4, n_classes=3, seed=7)
TINY_BUDGET, TINY_EVERY = 160, 40  # 4 * n gradient evaluations, a record every n


def run_logged(learner, name, *args, step_cost):
    """Run the learner's loop from zeros on a fresh logged tiny problem; check the shared accounting."""
    tiny = problems.SoftmaxRegression(*TINY, n_classes=3, l2=0.01)
    logged = learner.keep(Logged(softmax_spec(TINY, 3, 0.01)))
    start = learner.new("numpy.zeros", tiny.dim)
    theta, evals, accs = learner.data(name, logged, start, *args, logged.evaluate, TINY_EVERY)
    log = [(np.asarray(t, dtype=float), np.asarray(i)) for t, i in learner.value(logged.log)]
    seen = [(int(c), float(v)) for c, v in learner.value(logged.evaluations)]
    evals, accs = np.asarray(evals), np.asarray(accs)
    count = sum(len(i) for _, i in log)
    assert np.all(learner.value(start) == 0), f"{name} modified theta0 in place"
    assert count == TINY_BUDGET, f"{name} computed {count} per-example gradients, not {TINY_BUDGET}"
    assert [int(e) for e in evals] == [c for c, _ in seen], f"{name}: evals do not match the evaluate calls"
    assert len(evals) == TINY_BUDGET // TINY_EVERY, f"{name}: {len(evals)} records"
    for j, e in enumerate(evals):
        assert (j + 1) * TINY_EVERY <= e < (j + 1) * TINY_EVERY + step_cost, f"{name}: record {j} at count {e}"
    assert np.array_equal(accs, [v for _, v in seen]), f"{name}: accs must be the values evaluate returned"
    return tiny, np.asarray(theta, dtype=float), log


def softmax_spec(arrays, n_classes, l2):
    return Lib("steplab.problems.SoftmaxRegression", *arrays, n_classes=n_classes, l2=l2)


def check_sgd(learner):
    tiny = problems.SoftmaxRegression(*TINY, n_classes=3, l2=0.01)
    lr, B = 0.5 / tiny.L_max, 8
    tiny, theta, log = run_logged(learner, "run_sgd", lr, TINY_BUDGET, B, 0, step_cost=B)
    assert all(len(i) == B == len(set(i.tolist())) for _, i in log), "each step draws 8 distinct examples"
    assert np.all(log[0][0] == 0), "the first gradient is taken at theta0"
    after = [t for t, _ in log[1:]] + [theta]
    for j, (t, i) in enumerate(log):
        assert np.allclose(after[j], t - lr * tiny.grad_batch(t, i), rtol=1e-12, atol=1e-14), f"SGD step {j + 1}"
    k = learner.keep(softmax_spec(TINY, 3, 0.01))
    again = learner.data("run_sgd", k, np.zeros(tiny.dim), lr, TINY_BUDGET, B, 0, k.value, TINY_EVERY)[0]
    other = learner.data("run_sgd", k, np.zeros(tiny.dim), lr, TINY_BUDGET, B, 1, k.value, TINY_EVERY)[0]
    assert np.array_equal(np.asarray(again), theta) and not np.allclose(np.asarray(other), theta), \
        "draw from np.random.default_rng(seed)"


def check_adam(learner):
    lr, B = 0.05, 8
    tiny, theta, log = run_logged(learner, "run_adam", lr, TINY_BUDGET, B, 0, step_cost=B)
    assert all(len(i) == B == len(set(i.tolist())) for _, i in log), "each step draws 8 distinct examples"
    assert np.all(log[0][0] == 0), "the first gradient is taken at theta0"
    opt = optim.adam(lr)
    state, after = opt.init(log[0][0]), [t for t, _ in log[1:]] + [theta]
    for j, (t, i) in enumerate(log):
        update, state = opt.update(tiny.grad_batch(t, i), state, t)
        assert np.max(np.abs(after[j] - (t + update))) <= 1e-9 * lr, f"Adam step {j + 1} differs from steplab.optim.adam"


def check_svrg(learner):
    tiny = problems.SoftmaxRegression(*TINY, n_classes=3, l2=0.01)
    lr, m = 0.5 / tiny.L_max, 25
    tiny, theta, log = run_logged(learner, "run_svrg", lr, m, TINY_BUDGET, 0, step_cost=tiny.n + 2)
    events, j = [], 0
    while j < len(log):
        t, idx = log[j]
        if len(idx) == tiny.n:
            events.append(("snapshot", t, None))
            j += 1
        else:
            assert len(idx) == 1 and j + 1 < len(log) and np.array_equal(log[j + 1][1], idx), \
                "an inner step evaluates two single-example gradients of the same example"
            events.append(("inner", int(idx[0]), (t, log[j + 1][0])))
            j += 2
    pattern = "".join("S" if kind == "snapshot" else "." for kind, _, _ in events)
    assert pattern == "S" + "." * m + "S" + "." * 15, f"expected S, {m} inner steps, S, 15 inner steps; got {pattern}"
    current = np.zeros(tiny.dim)
    for n, (kind, what, pair) in enumerate(events):
        if kind == "snapshot":
            assert np.allclose(what, current, rtol=1e-12, atol=1e-14), f"event {n}: snapshot at the current iterate"
            snapshot, full = current.copy(), tiny.grad(current)
            continue
        a, b = pair
        assert np.allclose(a, snapshot) or np.allclose(b, snapshot), f"event {n}: no gradient at the snapshot"
        assert np.allclose(b if np.allclose(a, snapshot) else a, current) or np.allclose(a, current), \
            f"event {n}: the iterate is not the SVRG step"
        i = np.array([what])
        current = current - lr * (tiny.grad_batch(current, i) - tiny.grad_batch(snapshot, i) + full)
    assert np.allclose(theta, current, rtol=1e-10, atol=1e-12), "the returned theta is not the last SVRG iterate"


@test("test_loops_visible", visible=True)
def loops_visible(learner):
    check_sgd(learner)
    check_adam(learner)
    check_svrg(learner)


@test("test_loops_hidden")
def loops_hidden(learner):
    X, y = problems.make_classification(200, 5, n_classes=3, seed=31)
    p, k = softmax(learner, X, y, 3, 0.1)

    def gap(th):
        return float(p.value(np.asarray(th))) - float(p.f_star)

    zero = np.zeros(p.dim)
    th, ev, _ = learner.data("run_svrg", k, zero, 0.5 / p.L_max, p.n // 10, 60 * p.n, 0, k.value, p.n, timeout=120)
    ev = np.asarray(ev)
    assert len(ev) >= 55 and np.all(np.diff(ev) > 0) and ev[-1] >= 60 * p.n - p.n
    assert gap(th) <= 1e-6, "SVRG converges linearly on a strongly convex finite sum"
    th2, _, _ = learner.data("run_sgd", k, zero, 0.5 / p.L_max, 60 * p.n, 1, 0, k.value, p.n, timeout=120)
    assert gap(th2) > 100 * gap(th), "SGD with the same step stalls at its noise floor"
    th3, ev3, _ = learner.data("run_adam", k, zero, 0.01, 30 * p.n, 20, 0, k.value, p.n, timeout=120)
    assert gap(th3) < 0.2 * gap(zero) and abs(len(ev3) - 30) <= 1


@test("test_grid")
def grid(learner):
    best_sgd, best_adam = float(learner.get("best_sgd")), float(learner.get("best_adam"))
    sgd_runs, final = learner.get("sgd_runs"), learner.get("final")
    assert best_sgd in (0.03, 0.1, 0.3, 1.0) and best_adam in (1e-3, 3e-3, 1e-2, 3e-2)
    assert float(sgd_runs[best_sgd][2][-1]) == max(float(r[2][-1]) for r in sgd_runs.values())
    assert min(float(v) for v in final.values()) > 0.85
    table = {lr: (None, np.array([1, 2]), np.array([0.5, acc])) for lr, acc in ((0.1, 0.7), (0.2, 0.9), (0.3, 0.8))}
    fake = learner.keep(Table(table))
    best, results = learner.call("grid_search", fake, [0.1, 0.2, 0.3])
    calls = learner.value(Attr(fake, "calls"))
    assert float(best) == 0.2 and sorted(float(c) for c in calls) == [0.1, 0.2, 0.3]
    assert set(float(r) for r in results) == {0.1, 0.2, 0.3}
