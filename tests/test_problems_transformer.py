"""steplab.problems.TinyTransformer: backprop against finite differences in float64, causality,
the finite-sum interface, and the corpus it trains on."""

import numpy as np
import pytest

from steplab import optim, run
from steplab.data import load_corpus
from steplab.problems import TinyTransformer


def small_model(n_blocks=2, n_heads=2, seed=0):
    tokens = np.random.default_rng(seed).integers(0, 7, size=80)
    return TinyTransformer(tokens, vocab_size=7, context=5, d_model=6, n_heads=n_heads,
                           n_blocks=n_blocks, d_mlp=10, seed=seed)


def perturbed(model, seed=1, scale=0.3):
    """Parameters away from the initialization (non-trivial gains, biases and attention)."""
    rng = np.random.default_rng(seed)
    return {k: v + scale * rng.standard_normal(v.shape) for k, v in model.init_params().items()}


@pytest.mark.parametrize("n_blocks,n_heads", [(1, 1), (2, 2), (2, 3)])
def test_gradient_matches_finite_differences_for_every_array(n_blocks, n_heads):
    model = small_model(n_blocks, n_heads)
    theta = perturbed(model)
    idx = np.array([0, 3, 5, 7, 11])
    grad = model.grad_batch(theta, idx)
    assert set(grad) == set(model.shapes)
    h = 1e-5
    for key, arr in theta.items():
        fd = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            plus, minus = dict(theta), dict(theta)
            plus[key], minus[key] = arr.copy(), arr.copy()
            plus[key][i] += h
            minus[key][i] -= h
            fd[i] = (model.value_batch(plus, idx) - model.value_batch(minus, idx)) / (2 * h)
        rel = np.linalg.norm(grad[key] - fd) / np.linalg.norm(fd)
        assert rel < 1e-6, f"{key}: relative error {rel:.2e}"


def test_full_gradient_is_the_mean_of_minibatch_gradients():
    model = small_model()
    theta = perturbed(model)
    full = model.grad(theta)
    halves = [model.grad_batch(theta, part) for part in np.array_split(np.arange(model.n), 2)]
    sizes = [len(p) for p in np.array_split(np.arange(model.n), 2)]
    for k in full:
        mean = (sizes[0] * halves[0][k] + sizes[1] * halves[1][k]) / model.n
        np.testing.assert_allclose(full[k], mean, rtol=1e-10, atol=1e-14)
    assert model.value(theta) == pytest.approx(
        (sizes[0] * model.value_batch(theta, np.arange(sizes[0])) + sizes[1]
         * model.value_batch(theta, np.arange(sizes[0], model.n))) / model.n, rel=1e-12)


def test_attention_is_causal():
    model = small_model()
    theta = perturbed(model)
    X = np.random.default_rng(2).integers(0, 7, size=(3, 5))
    base = model.logits(theta, X)
    for t in range(4):
        changed = X.copy()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1) % 7
        out = model.logits(theta, changed)
        np.testing.assert_allclose(out[:, : t + 1], base[:, : t + 1], rtol=0, atol=1e-12)
        assert not np.allclose(out[:, t + 1:], base[:, t + 1:])


def test_initial_loss_is_near_uniform_and_hvp_matches_gradient_difference():
    model = small_model()
    theta = model.init_params()
    assert abs(model.value(theta) - np.log(7)) < 0.1
    v = perturbed(model, seed=3, scale=1.0)
    v = {k: v[k] - theta[k] for k in v}
    hv = model.hvp(theta, v)
    t = 1e-6
    plus = model.grad({k: theta[k] + t * v[k] for k in theta})
    minus = model.grad({k: theta[k] - t * v[k] for k in theta})
    for k in theta:
        np.testing.assert_allclose(hv[k], (plus[k] - minus[k]) / (2 * t), rtol=1e-4, atol=1e-6)


def test_float32_parameters_give_float32_gradients():
    model = small_model()
    theta = {k: v.astype(np.float32) for k, v in perturbed(model).items()}
    g = model.grad(theta)
    assert all(a.dtype == np.float32 for a in g.values())
    g64 = model.grad({k: v.astype(np.float64) for k, v in theta.items()})
    for k in g:
        np.testing.assert_allclose(g[k], g64[k], rtol=1e-3, atol=1e-5)


def test_flatten_round_trip_and_dim():
    model = small_model()
    theta = perturbed(model)
    x = model.flatten(theta)
    assert x.shape == (model.dim,)
    back = model.unflatten(x)
    for k in theta:
        np.testing.assert_array_equal(back[k], theta[k])
    assert sorted(k for keys in model.groups.values() for k in keys) == sorted(model.shapes)


def test_windows_and_targets_are_the_next_characters():
    tokens = np.arange(20) % 7
    model = TinyTransformer(tokens, vocab_size=7, context=4, d_model=4, n_heads=1, stride=3)
    assert model.n == len(range(0, 20 - 4, 3))
    X, Y = model._batch(np.array([1]), None)
    np.testing.assert_array_equal(X[0], tokens[3:7])
    np.testing.assert_array_equal(Y[0], tokens[4:8])


@pytest.mark.parametrize("kwargs,match", [
    (dict(d_model=6, n_heads=4), "n_heads must divide"),
    (dict(context=0), "context"),
    (dict(vocab_size=3), "vocab_size"),
    (dict(n_blocks=0), "n_blocks"),
])
def test_bad_arguments_raise(kwargs, match):
    tokens = np.arange(40) % 5
    with pytest.raises(ValueError, match=match):
        TinyTransformer(tokens, **{"vocab_size": 5, "context": 4, "d_model": 6, "n_heads": 2, **kwargs})


def test_bad_parameters_raise_with_the_key():
    model = small_model()
    theta = model.init_params()
    del theta["head"]
    with pytest.raises(ValueError, match="'head'"):
        model.grad(theta)
    theta = model.init_params()
    theta["b0.attn_q"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="b0.attn_q"):
        model.value(theta)


def test_corpus_encodes_and_decodes():
    corpus = load_corpus()
    assert 40 <= corpus.vocab_size <= 60
    assert len(corpus.text) > 100_000
    assert corpus.decode(corpus.tokens[:500]) == corpus.text[:500]
    np.testing.assert_array_equal(corpus.encode(corpus.text[:300]), corpus.tokens[:300])
    train, val = corpus.split(0.1)
    assert len(train) + len(val) == len(corpus.tokens)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        corpus.encode("GRADIENT")
    assert len(load_corpus(n_chars=1000).text) == 1000


def test_adam_learns_the_corpus_below_the_unigram_entropy():
    corpus = load_corpus(n_chars=6000)
    model = TinyTransformer(corpus.tokens, vocab_size=corpus.vocab_size, context=16, d_model=32, d_mlp=64)
    freq = np.bincount(corpus.tokens, minlength=corpus.vocab_size) / len(corpus.tokens)
    unigram = -np.sum(freq[freq > 0] * np.log(freq[freq > 0]))
    theta0 = {k: v.astype(np.float32) for k, v in model.init_params().items()}
    hist = run.minimize(model, optim.adam(lr=1e-2), steps=120, batch_size=32, seed=0, theta0=theta0, eval_every=120)
    assert hist.loss[0] > unigram > hist.loss[-1]
