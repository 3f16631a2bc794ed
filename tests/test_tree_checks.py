"""The one set of pytree helpers and argument checks (steplab._tree, steplab._checks)."""
import numpy as np
import pytest

from steplab import _checks, _tree, optim


def test_public_names_are_the_shared_helpers():
    assert optim.tree_map is _tree.tree_map and optim.tree_leaves is _tree.tree_leaves
    assert optim.tree_norm is _tree.tree_norm and optim.tree_all_finite is _tree.tree_all_finite
    assert optim.tree_zeros_like is _tree.tree_zeros_like
    for name in ("check_number", "check_nonnegative", "check_positive", "check_unit_interval",
                 "check_int", "check_bool", "check_lr"):
        assert getattr(optim, name) is getattr(_checks, name)


def test_one_key_order_whatever_order_the_dict_was_built_in():
    a = {"w": np.arange(3.0), "b": np.array([10.0])}
    b = {"b": np.array([10.0]), "w": np.arange(3.0)}
    np.testing.assert_array_equal(_tree.tree_flatten(a), _tree.tree_flatten(b))
    np.testing.assert_array_equal(_tree.tree_flatten(a), [10.0, 0.0, 1.0, 2.0])
    assert [x.tolist() for x in _tree.tree_leaves(a)] == [x.tolist() for x in _tree.tree_leaves(b)]
    assert list(_tree.tree_map(np.negative, a)) == ["b", "w"]
    back = _tree.tree_unflatten(_tree.tree_flatten(a), b)
    for k in a:
        np.testing.assert_array_equal(back[k], a[k])


def test_fused_step_pairs_leaves_by_key_not_by_dict_order():
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal(4), "b": rng.standard_normal(2)}
    grads = {"b": rng.standard_normal(2), "w": rng.standard_normal(4)}  # other insertion order
    opt = optim.adamw(lr=0.1, weight_decay=0.01)
    state = opt.init(params)
    updates, _ = opt.update(grads, state, params)
    expected = optim.apply_updates(params, updates)
    p = {k: v.copy() for k, v in params.items()}
    optim.adamw_step_inplace(p, grads, opt.init(p), lr=0.1, weight_decay=0.01)
    for k in params:
        np.testing.assert_allclose(p[k], expected[k], rtol=1e-13)


def test_initial_params_copies_promotes_and_checks():
    class P:
        def init_params(self, seed=7):
            return np.array([1, 2]) * seed

    theta = _tree.initial_params(P(), None, None)
    assert theta.dtype == np.float64 and theta.tolist() == [7.0, 14.0]
    assert _tree.initial_params(P(), None, 1).tolist() == [1.0, 2.0]
    x32 = np.ones(2, dtype=np.float32)
    out = _tree.initial_params(P(), x32, 0)
    assert out.dtype == np.float32 and out is not x32
    with pytest.raises(ValueError, match="theta0 must be finite"):
        _tree.initial_params(P(), np.array([np.nan]), 0)


def test_one_message_format():
    with pytest.raises(ValueError, match=r"^lr must be >= 0, got -1.0$"):
        optim.check_lr(-1.0)
    with pytest.raises(ValueError, match=r"^steps must be an integer >= 1, got 0$"):
        _checks.check_int("steps", 0, low=1)
    with pytest.raises(ValueError, match=r"^batch_size must be an integer in \[1, 5\], got 6$"):
        _checks.check_int("batch_size", 6, low=1, high=5)
    with pytest.raises(ValueError, match=r"^snapshot must be one of \['last'\], got 'x'$"):
        _checks.check_choice("snapshot", "x", ("last",))


def test_schedule_values_are_checked_wherever_a_schedule_is_called():
    bad = lambda t: 0.1 if t < 2 else -0.1  # noqa: E731
    opt = optim.sgd(lr=bad)
    theta = np.ones(2)
    state = opt.init(theta)
    for _ in range(2):
        _, state = opt.update(np.ones(2), state, theta)
    with pytest.raises(ValueError, match=r"lr must be >= 0 at every step, got -0.1 at step 2"):
        opt.update(np.ones(2), state, theta)
    assert _checks.lr_at(0.5, 3) == 0.5
    with pytest.raises(ValueError, match="got nan at step 0"):
        _checks.lr_at(lambda t: float("nan"), 0)


def test_one_divergence_rule():
    limit = _checks.divergence_limit(2.0)
    assert limit == _checks.DIVERGE_FACTOR * 2.0
    assert _checks.divergence_limit(0.5) == _checks.DIVERGE_FACTOR  # max(|f0|, 1)
    assert not _checks.is_diverged(limit, limit) and _checks.is_diverged(limit * 1.001, limit)
    assert _checks.is_diverged(-limit * 2, limit) and _checks.is_diverged(float("nan"), limit)
    np.testing.assert_array_equal(_checks.is_diverged([1.0, np.inf, 3e6], 2e6), [False, True, True])
    with pytest.raises(ValueError, match="initial loss"):
        _checks.divergence_limit(float("inf"))
