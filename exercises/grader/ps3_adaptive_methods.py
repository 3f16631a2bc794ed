"""Grader tests for problem set 3 (see exercises/bin/grader.py): Adam, AdamW, AMSGrad, Reddi.

The learner's transformation stays in the kernel (a handle); the grader calls its ``init`` and
``update`` with arrays and the state the previous call returned (data when the state is a plain
tuple of arrays and numbers, a handle otherwise), and compares every update with the library's
reference, stepped here on the same gradients.
"""

import numpy as np
import steplab.optim as optim
import steplab.problems as problems
import steplab.run as run
from grader import Lib, expect_error, test

THE_LIBRARY_ADAM = ("optim/alias.py", "optim/fused.py", "optim/transforms.py:scale_by_adam")


def leaves(tree):
    return tree if isinstance(tree, dict) else {"": tree}


def same_update(mine, ref, rtol, what):
    mine, ref = leaves(mine), leaves(ref)
    assert set(mine) == set(ref), f"{what}: update keys"
    for key, b in ref.items():
        a = np.asarray(mine[key])
        assert a.shape == b.shape and a.dtype == b.dtype, f"{what}: leaf {key!r} shape/dtype"
        assert np.all(np.isfinite(a)), f"{what}: non-finite update"
        bound = rtol * max(1e-300, float(np.max(np.abs(b), initial=0.0))) + 1e-30
        assert np.max(np.abs(a.astype(np.float64) - b), initial=0.0) <= bound, what


def build(learner, name, *args, **kwargs):
    """The learner's transformation, as a handle; it must not be built from the library's Adam."""
    opt, calls = learner.traced(THE_LIBRARY_ADAM, name, *args, **kwargs)
    assert not calls, f"{name} uses the library's Adam: {calls}"
    return opt


def compare(learner, mine, ref, params, grads, rtol, what):
    """Step both transformations on the same gradients at fixed params; every update must match."""
    sm, sr = learner.call(mine.init, params), ref.init(params)
    for k, g in enumerate(grads):
        um, sm = learner.call(mine.update, g, sm, params)
        ur, sr = ref.update(g, sr, params)
        same_update(um, ur, rtol, f"{what}, step {k}")


def follow(learner, mine, ref, theta, grad, steps, rtol, what):
    """Both optimizers from theta on one objective (params feed AdamW's decay); updates must match."""
    tm = tr = theta
    sm, sr = learner.call(mine.init, theta), ref.init(theta)
    for k in range(steps):
        um, sm = learner.call(mine.update, grad(tm), sm, tm)
        ur, sr = ref.update(grad(tr), sr, tr)
        same_update(um, ur, rtol, f"{what}, step {k}")
        tm, tr = optim.apply_updates(tm, um), optim.apply_updates(tr, ur)


def tree(rng, shapes, dtype, scale=1.0):
    return {k: (rng.normal(size=s) * scale).astype(dtype) for k, s in shapes.items()}


def course_tree():
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(3, 2)), "b": np.zeros(2)}
    return params, [{"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)} for _ in range(5)]


@test("test_adam_visible", visible=True)
def adam_visible(learner):
    first = build(learner, "adam", 0.1)
    u, _ = learner.call(first.update, {"w": np.array([2.0, -3.0])}, learner.call(first.init, {"w": np.zeros(2)}))
    assert np.allclose(np.asarray(u["w"]), [-0.1, 0.1]), "the first Adam step is -lr * sign(g) (up to eps)"
    params, grads = course_tree()
    compare(learner, build(learner, "adam", 0.01, beta1=0.8), optim.adam(0.01, beta1=0.8), params, grads, 1e-10, "Adam")
    compare(learner, build(learner, "adam", 0.01, amsgrad=True), optim.adam(0.01, amsgrad=True), params, grads,
            1e-10, "AMSGrad")


@test("test_adam_hidden")
def adam_hidden(learner):
    rng = np.random.default_rng(20250)
    shapes = {"w1": (4, 5), "b1": (5,), "w2": (5, 1), "s": (1,)}
    for ams in (False, True):  # gradients spanning six orders of magnitude
        params = tree(rng, shapes, np.float64)
        grads = [tree(rng, shapes, np.float64, 10.0 ** rng.integers(-4, 3)) for _ in range(12)]
        compare(learner, build(learner, "adam", 0.003, 0.85, 0.98, 1e-7, amsgrad=ams),
                optim.adam(0.003, 0.85, 0.98, 1e-7, amsgrad=ams), params, grads, 1e-10, "dict")
    shrinking = [np.full(3, 10.0 ** -k) for k in range(8)]  # AMSGrad's maximum matters
    compare(learner, build(learner, "adam", 0.1, amsgrad=True), optim.adam(0.1, amsgrad=True), np.zeros(3),
            shrinking, 1e-10, "shrinking")
    zeros = [np.zeros(4), np.zeros(4)] + [np.array([0.0, 1.0, -2.0, 3.0]) * (k + 1) for k in range(5)]
    compare(learner, build(learner, "adam", 0.01), optim.adam(0.01), np.ones(4), zeros, 1e-10, "zero gradients")
    p32 = tree(rng, {"a": (3, 3), "b": (2,)}, np.float32)
    g32 = [tree(rng, {"a": (3, 3), "b": (2,)}, np.float32) for _ in range(6)]
    compare(learner, build(learner, "adam", 0.01), optim.adam(0.01), p32, g32, 1e-5, "float32")
    grads = [rng.normal(size=6) for _ in range(8)]
    schedule = Lib("steplab.optim.inverse_sqrt", 0.2)
    compare(learner, build(learner, "adam", schedule, beta1=0.0, beta2=0.9),
            optim.adam(optim.inverse_sqrt(0.2), beta1=0.0, beta2=0.9), np.zeros(6), grads, 1e-10, "schedule")
    chained = Lib("steplab.optim.chain", Lib("steplab.optim.clip_by_global_norm", 0.5),
                  build(learner, "adam", 0.05, amsgrad=True))
    compare(learner, learner.new(chained.qualname, *chained.args),
            optim.chain(optim.clip_by_global_norm(0.5), optim.adam(0.05, amsgrad=True)), np.zeros(6), grads,
            1e-10, "chain")


@test("test_adamw_visible", visible=True)
def adamw_visible(learner):
    params, grads = course_tree()
    compare(learner, build(learner, "adamw", 0.01, weight_decay=0.1), optim.adamw(0.01, weight_decay=0.1),
            params, grads, 1e-10, "AdamW")
    opt = build(learner, "adamw", 0.01, weight_decay=0.1)
    expect_error(learner, "ValueError", opt.update, grads[0], learner.call(opt.init, params))


@test("test_adamw_hidden")
def adamw_hidden(learner):
    rng = np.random.default_rng(777)
    Q = problems.Quadratic([0.05, 1.0, 30.0, 200.0], seed=13)
    for ams in (False, True):
        follow(learner, build(learner, "adamw", 0.02, 0.9, 0.99, 1e-8, weight_decay=0.3, amsgrad=ams),
               optim.adamw(0.02, 0.9, 0.99, 1e-8, weight_decay=0.3, amsgrad=ams), rng.normal(size=4), Q.grad,
               40, 1e-9, f"amsgrad={ams}")
    shapes = {"W": (3, 4), "c": (4,)}
    target = tree(rng, shapes, np.float64)
    follow(learner, build(learner, "adamw", 0.05, weight_decay=0.1), optim.adamw(0.05, weight_decay=0.1),
           tree(rng, shapes, np.float64), lambda th: {k: 3.0 * (th[k] - target[k]) for k in th}, 25, 1e-9, "dict")
    follow(learner, build(learner, "adamw", 0.01, weight_decay=0.5), optim.adamw(0.01, weight_decay=0.5),
           tree(rng, shapes, np.float32), lambda th: {k: (2.0 * th[k]).astype(np.float32) for k in th}, 10, 1e-5,
           "float32")
    follow(learner, build(learner, "adamw", Lib("steplab.optim.inverse_sqrt", 0.1), weight_decay=0.2),
           optim.adamw(optim.inverse_sqrt(0.1), weight_decay=0.2), np.ones(4), Q.grad, 15, 1e-9, "schedule")
    follow(learner, build(learner, "adamw", 0.01, weight_decay=0.0), optim.adam(0.01), np.ones(4), Q.grad, 10,
           1e-10, "weight_decay=0")
    follow(learner, build(learner, "adamw", 0.1, weight_decay=0.5), optim.adamw(0.1, weight_decay=0.5), np.ones(3),
           lambda th: np.zeros(3), 5, 1e-12, "zero gradients")
    opt = build(learner, "adamw", 0.01, weight_decay=0.1)
    expect_error(learner, "ValueError", opt.update, np.ones(2), learner.call(opt.init, np.ones(2)))


@test("test_decay_visible", visible=True)
def decay_visible(learner):
    theta_l2, theta_w = (np.asarray(learner.get(name), dtype=float) for name in ("theta_l2", "theta_decoupled"))
    gap = np.linalg.norm(theta_l2 - theta_w) / np.linalg.norm(theta_w)
    assert gap >= 0.1, f"on your problem the two end only {gap:.1%} apart"


def final(opt, Q, theta0, steps):
    theta, state = theta0.copy(), opt.init(theta0)
    for _ in range(steps):
        updates, state = opt.update(Q.grad(theta), state, theta)
        theta = optim.apply_updates(theta, updates)
    return theta


@test("test_decay_hidden")
def decay_hidden(learner):
    Q, theta0 = problems.Quadratic([0.02, 0.5, 50.0], seed=21), np.array([2.0, -1.0, 0.5])
    got_l2, got_w = learner.data("compare_decay", learner.new("steplab.problems.Quadratic", [0.02, 0.5, 50.0], seed=21),
                                 theta0, 0.02, 0.4, 300)
    for got, want in ((got_l2, final(optim.adam(0.02, weight_decay=0.4), Q, theta0, 300)),
                      (got_w, final(optim.adamw(0.02, weight_decay=0.4), Q, theta0, 300))):
        assert np.max(np.abs(np.asarray(got) - want)) <= 1e-9 * max(1.0, np.max(np.abs(want)))


@test("test_reddi_visible", visible=True)
def reddi_visible(learner):
    x_adam, regret_adam = (float(v) for v in learner.data("reddi_run", 3.0, 3000, False, timeout=120))
    x_ams, regret_ams = (float(v) for v in learner.data("reddi_run", 3.0, 3000, True, timeout=120))
    assert x_adam > 0.9, "Adam goes to the wrong end, x = +1"
    assert x_ams < -0.9, "AMSGrad goes to the minimizer x = -1"
    assert regret_adam > 0.3 > 0.05 > regret_ams, (regret_adam, regret_ams)


@test("test_reddi_hidden")
def reddi_hidden(learner):
    for C, T in ((5.0, 900), (2.5, 600)):
        for ams in (False, True):
            opt = optim.adam(optim.inverse_sqrt(0.5), beta1=0.0, beta2=1.0 / (1.0 + C**2), eps=1e-8, amsgrad=ams)
            h = run.minimize_online(problems.ReddiCounterexample(C), opt, T)
            x, regret = learner.data("reddi_run", C, T, ams, timeout=60)
            assert abs(float(x) - float(h.params[0])) <= 1e-9
            assert abs(float(regret) - float(h.metrics["average_regret"][-1])) <= 1e-9
