"""One record interface, checked on every record type the library returns."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from steplab import batching, distributed, explore, finite_sum, linesearch, optim, privacy, records, run, vectorized  # noqa: E402
from steplab.problems import LeastSquares, Quadratic, ReddiCounterexample, make_least_squares  # noqa: E402


def _ls():
    A, b = make_least_squares(40, 3, noise=0.1, seed=0)
    return LeastSquares(A, b, l2=0.1)


RECORDS = {
    "minimize": lambda: run.minimize(Quadratic([1.0, 0.1]), optim.sgd(0.5), 12),
    "minimize eval_every": lambda: run.minimize(Quadratic([1.0, 0.1]), optim.sgd(0.5), 12, eval_every=5),
    "minimize_online": lambda: run.minimize_online(ReddiCounterexample(), optim.sgd(0.1), 9),
    "gd_armijo": lambda: linesearch.gd_armijo(Quadratic([1.0, 0.1]), 7),
    "sweep_lr": lambda: vectorized.sweep_lr(Quadratic([1.0, 0.1]), [0.1, 0.5], 11)[1],
    "svrg": lambda: finite_sum.svrg(_ls(), lr=0.05, budget=400, seed=0, log_every=20),
    "fedavg": lambda: distributed.simulate_fedavg(_ls(), [np.arange(20), np.arange(20, 40)], 4,
                                                  local_steps=2, lr=0.05),
    "dp_sgd": lambda: privacy.simulate_dp_sgd(_ls(), 6, batch_size=5, clip_norm=1.0,
                                              noise_multiplier=0.5, lr=0.05),
    "sgd_runs": lambda: vectorized.sgd_runs(Quadratic([1.0, 0.1]), 0.5, 10, n_runs=3, record_every=3),
    "scale_batch": lambda: batching.bert_base_example(),
    "explore step_size": lambda: explore.step_size_run(steps=20),
    "explore momentum": lambda: explore.momentum_run(steps=20),
    "explore batch_size": lambda: explore.batch_size_run(steps=20, seeds=3),
    "explore adam": lambda: explore.adam_run(steps=20),
    "explore adam reddi": lambda: explore.adam_run(problem="reddi", steps=20),
    "explore schedule": lambda: explore.schedule_run(steps=40, warmup_steps=5, seeds=2),
}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_every_record_has_the_one_interface(name):
    r = RECORDS[name]()
    assert isinstance(r, records.Record)
    steps = r.steps
    assert isinstance(steps, np.ndarray) and np.issubdtype(steps.dtype, np.integer) and steps.ndim == 1
    assert np.all(np.diff(steps) > 0)
    loss = np.asarray(r.loss)
    assert loss.shape[:1] == steps.shape or (name == "scale_batch" and loss.size == 0)
    assert r.diverged is False and r.diverged_at is None
    assert isinstance(r.n_steps, int) and r.n_steps >= int(steps[-1]) - 1
    assert isinstance(r.meta, dict) and r.meta
    fig, ax = plt.subplots()
    assert r.plot(ax=ax) is ax
    assert r.plot() is not None
    plt.close("all")


def test_steps_are_the_steps_the_loss_was_recorded_at():
    h = RECORDS["minimize eval_every"]()
    np.testing.assert_array_equal(h.steps, [0, 5, 10, 12])
    assert h.n_steps == 12
    np.testing.assert_array_equal(RECORDS["minimize"]().steps, np.arange(13))
    np.testing.assert_array_equal(RECORDS["minimize_online"]().steps, np.arange(1, 10))
    s = RECORDS["fedavg"]()
    np.testing.assert_array_equal(s.steps, np.arange(5))
    np.testing.assert_array_equal(RECORDS["sgd_runs"]().steps, [0, 3, 6, 9, 10])


def test_diverged_and_the_step_at_which_on_every_loop():
    q = Quadratic([1.0, 0.1], rotate=False)
    h = run.minimize(q, optim.sgd(3.0), 200)
    assert h.diverged and h.diverged_at == h.n_steps + 1
    (hs,) = vectorized.sweep_lr(q, [3.0], 200)
    assert hs.diverged and hs.diverged_at == h.diverged_at
    e = finite_sum.sgd(_ls(), lr=5.0, budget=4000, seed=0, log_every=1)
    assert e.diverged and e.diverged_at == e.steps[-1]
    r = vectorized.sgd_runs(q, 3.0, 2000, n_runs=2, record_every=100)
    assert r.diverged and r.diverged_at in r.steps and not np.all(np.isfinite(r.loss[-1]))
    assert not np.all(np.isfinite(r.loss[list(r.steps).index(r.diverged_at)]))


def test_batch_scaling_keeps_its_items():
    plan = batching.bert_base_example()
    assert plan["steps"] == pytest.approx(125_000) and plan.steps.tolist() == [125_000]
    assert set(plan.keys()) >= {"lr", "steps", "speedup", "hours"}
    with pytest.raises(KeyError, match="no entry"):
        plan["loss_scale"]


def test_explorer_runs_record_their_steps_settings_and_divergence():
    r = explore.step_size_run(eta=2.1, kappa=10.0)
    assert r.diverged and r.diverged_at == r.steps[-1] == r.n_steps
    np.testing.assert_array_equal(r.steps, np.arange(r.diverged_at + 1))
    assert r.meta["explorer"] == "step_size" and r.meta["eta"] == 2.1 and r.settings["steps"] == 100
    reddi = explore.adam_run(problem="reddi", steps=9)
    np.testing.assert_array_equal(reddi.steps, np.arange(1, 10))
    stack = explore.batch_size_run(steps=12, seeds=3)
    assert stack.loss.shape == (13, 3)
    np.testing.assert_allclose(stack["loss"], stack.loss.mean(axis=1))
    ax = stack.plot()
    np.testing.assert_allclose(ax.lines[0].get_ydata(), stack.loss.mean(axis=1))
    plt.close("all")
    with pytest.raises(KeyError, match="no entry 'rate'"):
        r["rate"]
    # the recorded steps and the step budget have one name each: r.steps, r.settings["steps"]
    with pytest.raises(KeyError, match=r'read record.steps \(the step budget is record.settings\["steps"\]\)'):
        r["steps"]
    with pytest.raises(KeyError, match="attribute: read record.diverged_at"):
        r["diverged_at"]
    assert "steps" not in r and "eta" in r and "loss" in r


@pytest.mark.parametrize("loop", ["svrg", "fedavg", "dp_sgd", "data_parallel"])
def test_every_logged_loop_checks_its_divergence_factor(loop):
    calls = {
        "svrg": lambda f: finite_sum.svrg(_ls(), lr=0.05, budget=100, diverge_factor=f),
        "fedavg": lambda f: distributed.simulate_fedavg(_ls(), [np.arange(20), np.arange(20, 40)], 2, local_steps=1,
                                                        lr=0.05, diverge_factor=f),
        "dp_sgd": lambda f: privacy.simulate_dp_sgd(_ls(), 2, batch_size=5, clip_norm=1.0, noise_multiplier=0.5,
                                                    lr=0.05, diverge_factor=f),
        "data_parallel": lambda f: distributed.simulate_data_parallel(_ls(), 2, n_workers=2, batch_size=4, lr=0.05,
                                                                      diverge_factor=f),
    }
    with pytest.raises(ValueError, match="diverge_factor must be > 1, got 0.5"):
        calls[loop](0.5)
    assert not calls[loop](1e6).diverged
