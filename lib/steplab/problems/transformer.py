r"""A tiny character-level transformer language model, with backpropagation written by hand."""

from __future__ import annotations

import math

import numpy as np

from .._checks import check_int
from ..optim import check_tree_match
from .base import FiniteSumProblem, as_float_array

__all__ = ["TinyTransformer"]

_LN_EPS = 1e-5
_GELU_C = math.sqrt(2.0 / math.pi)


def _layer_norm(x, g, b):
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    rstd = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + _LN_EPS)
    xhat = xc * rstd
    return xhat * g + b, (xhat, rstd)


def _layer_norm_back(dy, g, cache):
    xhat, rstd = cache
    dxhat = dy * g
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                 - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, (dy * xhat).sum(axis=(0, 1)), dy.sum(axis=(0, 1))


def _gelu(z):
    """GELU, tanh form: 0.5 z (1 + tanh(c (z + 0.044715 z^3))); returns the value and tanh."""
    t = np.tanh(_GELU_C * z * (1.0 + 0.044715 * z * z))
    return 0.5 * z * (1.0 + t), t


def _gelu_grad(z, t):
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * _GELU_C * (1.0 + 3 * 0.044715 * z * z)


def _outer_sum(a, b):
    """The sum over batch and position of the outer products a_bt b_bt^T, as one matrix product."""
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


def _log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))


class TinyTransformer(FiniteSumProblem):
    r"""A decoder-only transformer on characters, as a finite sum over text windows.

    Example :math:`i` is the window ``tokens[s_i : s_i + T + 1]`` with
    :math:`s_i = i \cdot \text{stride}`: inputs :math:`x_{1..T}`, targets the next
    characters :math:`y_t = x_{t+1}`. With pre-layer-norm blocks
    :math:`\ell = 0, \dots, L-1`,

    .. math::

        h^{(0)}_t &= E_{x_t} + P_t, \\
        a_t &= h_t + \mathrm{Attn}(\mathrm{LN}_1(h))_t, \qquad
        h'_t = a_t + W_2\,\mathrm{GELU}(W_1 \mathrm{LN}_2(a_t) + c_1) + c_2, \\
        f_i(\theta) &= \frac1T \sum_{t=1}^T \Big(\log\sum_c e^{z_{t,c}} - z_{t,y_t}\Big), \qquad
        z_t = W_{\text{out}}^\top \mathrm{LN}_f(h^{(L)}_t) + b_{\text{out}},

    where :math:`\mathrm{Attn}` is causal multi-head self-attention (head :math:`k` of
    width :math:`d_h = d/H`: :math:`\mathrm{softmax}(Q_k K_k^\top/\sqrt{d_h} + M) V_k`,
    :math:`M_{ts} = -\infty` for :math:`s > t`, heads concatenated and projected by
    :math:`W_o`), :math:`\mathrm{LN}(x) = g \odot (x - \bar x)/\sqrt{\mathrm{var}(x) +
    10^{-5}} + b` per position, and GELU is the tanh form. The loss is the mean
    next-character cross-entropy in nats; :math:`\log V` is the loss of a uniform guess.

    The gradient is backpropagation through every line above, by hand (checked against
    finite differences in the tests). ``hvp`` is a central finite difference of ``grad``.
    The model is nonconvex: ``L``, ``mu``, ``minimizer`` and ``f_star`` are ``None``.

    Parameters are a flat dict: ``"tok_emb"`` :math:`(V, d)`, ``"pos_emb"`` :math:`(T, d)`;
    per block ``"b{l}.ln1_g"``, ``"b{l}.ln1_b"`` :math:`(d,)`, ``"b{l}.attn_q"``,
    ``"b{l}.attn_k"``, ``"b{l}.attn_v"``, ``"b{l}.attn_o"`` :math:`(d, d)`,
    ``"b{l}.ln2_g"``, ``"b{l}.ln2_b"`` :math:`(d,)`, ``"b{l}.mlp_in"`` :math:`(d, m)`,
    ``"b{l}.mlp_in_b"`` :math:`(m,)`, ``"b{l}.mlp_out"`` :math:`(m, d)`,
    ``"b{l}.mlp_out_b"`` :math:`(d,)`; then ``"lnf_g"``, ``"lnf_b"`` :math:`(d,)`,
    ``"head"`` :math:`(d, V)`, ``"head_b"`` :math:`(V,)`. :attr:`groups` maps the parts of
    the network (embedding, attention and MLP of each block, norms, head) to their keys.
    Computation runs in the parameters' floating dtype.

    Arguments:
        tokens: the text as integer ids in ``[0, vocab_size)``, a 1-D array.
        vocab_size: :math:`V` (default ``max(tokens) + 1``).
        context: :math:`T`, characters per window.
        d_model: :math:`d`, the width of the residual stream.
        n_heads: :math:`H`, dividing ``d_model``.
        n_blocks: :math:`L`.
        d_mlp: :math:`m`, the MLP's hidden width (default :math:`4d`).
        stride: distance between window starts (default ``context``: disjoint windows).
        seed: default seed of :meth:`init_params`.

    References: A. Vaswani et al., "Attention is all you need", NeurIPS 2017;
    A. Radford et al., "Language models are unsupervised multitask learners" (GPT-2), 2019
    (pre-layer-norm blocks, the output-projection scaling of :meth:`init_params`);
    D. Hendrycks and K. Gimpel, "Gaussian error linear units (GELUs)", 2016.
    """

    batched = False

    def __init__(self, tokens, vocab_size=None, context=16, d_model=32, n_heads=2, n_blocks=1,
                 d_mlp=None, stride=None, seed=0):
        tok = np.asarray(tokens)
        if tok.ndim != 1 or not np.issubdtype(tok.dtype, np.integer):
            raise ValueError(f"tokens must be a 1-D array of integer ids, got shape {tok.shape}, dtype {tok.dtype}")
        if tok.size and tok.min() < 0:
            raise ValueError(f"tokens must be >= 0, got {int(tok.min())}")
        if vocab_size is None:
            vocab_size = int(tok.max()) + 1 if tok.size else 0
        self.vocab_size = check_int("vocab_size", vocab_size, low=2)
        if tok.size and tok.max() >= self.vocab_size:
            raise ValueError(f"tokens must be < vocab_size = {self.vocab_size}, got {int(tok.max())}")
        self.context = check_int("context", context, low=1)
        self.d_model = check_int("d_model", d_model, low=1)
        self.n_heads = check_int("n_heads", n_heads, low=1)
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads must divide d_model = {self.d_model}, got n_heads={self.n_heads}")
        self.n_blocks = check_int("n_blocks", n_blocks, low=1)
        self.d_mlp = check_int("d_mlp", 4 * self.d_model if d_mlp is None else d_mlp, low=1)
        self.stride = check_int("stride", self.context if stride is None else stride, low=1)
        if tok.size < self.context + 1:
            raise ValueError(f"tokens must hold at least context + 1 = {self.context + 1} ids, got {tok.size}")
        self.seed = seed
        self.tokens = tok.astype(np.int64)
        starts = np.arange(0, tok.size - self.context, self.stride)
        self._windows = self.tokens[starts[:, None] + np.arange(self.context + 1)]
        self.n = starts.size
        V, T, d, m = self.vocab_size, self.context, self.d_model, self.d_mlp
        self.shapes = {"tok_emb": (V, d), "pos_emb": (T, d)}
        self.groups = {"embedding": ["tok_emb", "pos_emb"]}
        norms = []
        for ell in range(self.n_blocks):
            p = f"b{ell}."
            self.shapes.update({p + "ln1_g": (d,), p + "ln1_b": (d,),
                                p + "attn_q": (d, d), p + "attn_k": (d, d), p + "attn_v": (d, d), p + "attn_o": (d, d),
                                p + "ln2_g": (d,), p + "ln2_b": (d,),
                                p + "mlp_in": (d, m), p + "mlp_in_b": (m,), p + "mlp_out": (m, d), p + "mlp_out_b": (d,)})
            self.groups[f"attention {ell}"] = [p + k for k in ("attn_q", "attn_k", "attn_v", "attn_o")]
            self.groups[f"mlp {ell}"] = [p + k for k in ("mlp_in", "mlp_in_b", "mlp_out", "mlp_out_b")]
            norms += [p + k for k in ("ln1_g", "ln1_b", "ln2_g", "ln2_b")]
        self.shapes.update({"lnf_g": (d,), "lnf_b": (d,), "head": (d, V), "head_b": (V,)})
        self.groups["layer norms"] = norms + ["lnf_g", "lnf_b"]
        self.groups["head"] = ["head", "head_b"]
        self.dim = int(sum(np.prod(s) for s in self.shapes.values()))
        self._template = {k: np.empty(s) for k, s in self.shapes.items()}

    # -- parameters --------------------------------------------------------
    def init_params(self, seed=None):
        r"""Random parameters from ``default_rng(seed)`` (``seed=None``: the constructor's).

        Embeddings :math:`\mathcal N(0, 0.1^2)`; every weight matrix
        :math:`\mathcal N(0, 1/\text{fan-in})`, the two that write into the residual stream
        (``attn_o``, ``mlp_out``) scaled by :math:`1/\sqrt{2L}` as in GPT-2; the head by a
        further 0.1 so the first loss is close to :math:`\log V`; layer-norm gains 1, all
        biases 0.
        """
        rng = np.random.default_rng(self.seed if seed is None else seed)
        out = {}
        for k, shape in self.shapes.items():
            name = k.split(".")[-1]
            if name.endswith("_g"):
                out[k] = np.ones(shape)
            elif len(shape) == 1:
                out[k] = np.zeros(shape)
            elif name in ("tok_emb", "pos_emb"):
                out[k] = 0.1 * rng.standard_normal(shape)
            else:
                w = rng.standard_normal(shape) / np.sqrt(shape[0])
                if name in ("attn_o", "mlp_out"):
                    w /= np.sqrt(2 * self.n_blocks)
                elif name == "head":
                    w *= 0.1
                out[k] = w
        return out

    def _check_params(self, theta, name="theta"):
        if not isinstance(theta, dict):
            raise ValueError(f"{name} must be a dict with keys {list(self.shapes)}, got {type(theta).__name__}")
        check_tree_match(theta, self._template, name=name)
        out = {k: as_float_array(f"{name}[{k!r}]", theta[k]) for k in self.shapes}
        dtype = np.result_type(*(a.dtype for a in out.values()))
        return {k: a.astype(dtype, copy=False) for k, a in out.items()}

    def flatten(self, theta):
        """Concatenate the arrays (in the order of :attr:`shapes`, each raveled) into one vector."""
        p = self._check_params(theta)
        return np.concatenate([p[k].ravel() for k in self.shapes])

    def unflatten(self, vector):
        """The inverse of :meth:`flatten`."""
        v = as_float_array("vector", vector)
        if v.shape != (self.dim,):
            raise ValueError(f"vector must have shape ({self.dim},), got shape {v.shape}")
        out, start = {}, 0
        for k, shape in self.shapes.items():
            size = int(np.prod(shape))
            out[k] = v[start:start + size].reshape(shape).copy()
            start += size
        return out

    # -- forward and backward ----------------------------------------------
    def _split(self, x):
        B, T, _ = x.shape
        return x.reshape(B, T, self.n_heads, -1).transpose(0, 2, 1, 3)

    def _merge(self, x):
        B, H, T, dh = x.shape
        return x.transpose(0, 2, 1, 3).reshape(B, T, H * dh)

    def _forward(self, p, X):
        """Logits ``(B, T, V)`` and the cache the backward pass reads."""
        T = X.shape[1]
        h = p["tok_emb"][X] + p["pos_emb"][:T]
        scale = 1.0 / math.sqrt(self.d_model // self.n_heads)
        mask = np.triu(np.ones((T, T), dtype=bool), 1)
        caches = []
        for ell in range(self.n_blocks):
            b = f"b{ell}."
            x1, ln1 = _layer_norm(h, p[b + "ln1_g"], p[b + "ln1_b"])
            q, k, v = (self._split(x1 @ p[b + n]) for n in ("attn_q", "attn_k", "attn_v"))
            s = np.where(mask, -np.inf, (q @ k.transpose(0, 1, 3, 2)) * scale)
            att = np.exp(s - s.max(axis=-1, keepdims=True))
            att /= att.sum(axis=-1, keepdims=True)
            o = self._merge(att @ v)
            h = h + o @ p[b + "attn_o"]
            x2, ln2 = _layer_norm(h, p[b + "ln2_g"], p[b + "ln2_b"])
            z = x2 @ p[b + "mlp_in"] + p[b + "mlp_in_b"]
            a, tz = _gelu(z)
            h = h + a @ p[b + "mlp_out"] + p[b + "mlp_out_b"]
            caches.append((x1, ln1, q, k, v, att, o, x2, ln2, z, a, tz))
        xf, lnf = _layer_norm(h, p["lnf_g"], p["lnf_b"])
        logits = xf @ p["head"] + p["head_b"]
        return logits, (caches, xf, lnf, scale)

    def _batch(self, idx, dtype):
        W = self._windows if idx is None else self._windows[idx]
        return W[:, :-1], W[:, 1:]

    def _loss(self, p, idx):
        X, Y = self._batch(idx, None)
        logp = _log_softmax(self._forward(p, X)[0])
        return float(-np.take_along_axis(logp, Y[..., None], axis=-1).mean())

    def _backprop(self, p, idx):
        X, Y = self._batch(idx, None)
        B, T = X.shape
        logits, (caches, xf, lnf, scale) = self._forward(p, X)
        dz = np.exp(_log_softmax(logits))
        dz[np.arange(B)[:, None], np.arange(T), Y] -= 1.0
        dz /= B * T
        g = {"head": _outer_sum(xf, dz), "head_b": dz.sum(axis=(0, 1))}
        dh, g["lnf_g"], g["lnf_b"] = _layer_norm_back(dz @ p["head"].T, p["lnf_g"], lnf)
        for ell in reversed(range(self.n_blocks)):
            b = f"b{ell}."
            x1, ln1, q, k, v, att, o, x2, ln2, z, a, tz = caches[ell]
            # MLP: h' = h + GELU(x2 W1 + c1) W2 + c2
            g[b + "mlp_out"] = _outer_sum(a, dh)
            g[b + "mlp_out_b"] = dh.sum(axis=(0, 1))
            dzm = (dh @ p[b + "mlp_out"].T) * _gelu_grad(z, tz)
            g[b + "mlp_in"] = _outer_sum(x2, dzm)
            g[b + "mlp_in_b"] = dzm.sum(axis=(0, 1))
            dx2, g[b + "ln2_g"], g[b + "ln2_b"] = _layer_norm_back(dzm @ p[b + "mlp_in"].T, p[b + "ln2_g"], ln2)
            dh = dh + dx2
            # attention: h' = h + merge(softmax(q k^T * scale + mask) v) Wo
            g[b + "attn_o"] = _outer_sum(o, dh)
            do = self._split(dh @ p[b + "attn_o"].T)
            datt = do @ v.transpose(0, 1, 3, 2)
            dv = att.transpose(0, 1, 3, 2) @ do
            ds = att * (datt - (datt * att).sum(axis=-1, keepdims=True)) * scale
            dq, dk = ds @ k, ds.transpose(0, 1, 3, 2) @ q
            dx1 = 0.0
            for name, d_ in (("attn_q", dq), ("attn_k", dk), ("attn_v", dv)):
                d_ = self._merge(d_)
                g[b + name] = _outer_sum(x1, d_)
                dx1 = dx1 + d_ @ p[b + name].T
            dx1, g[b + "ln1_g"], g[b + "ln1_b"] = _layer_norm_back(dx1, p[b + "ln1_g"], ln1)
            dh = dh + dx1
        g["pos_emb"] = np.zeros_like(p["pos_emb"])
        g["pos_emb"][:T] = dh.sum(axis=0)
        onehot = np.zeros((B * T, self.vocab_size), dtype=dh.dtype)
        onehot[np.arange(B * T), X.ravel()] = 1.0
        g["tok_emb"] = onehot.T @ dh.reshape(B * T, -1)
        return {k: g[k] for k in self.shapes}

    # -- public interface ----------------------------------------------------
    def value(self, theta):
        """:math:`f(\\theta)`, the mean next-character cross-entropy over all windows (nats)."""
        return self._loss(self._check_params(theta), None)

    def grad(self, theta):
        """:math:`\\nabla f(\\theta)` as a dict with the keys, shapes and dtype of ``theta``."""
        return self._backprop(self._check_params(theta), None)

    def value_batch(self, theta, idx):
        return self._loss(self._check_params(theta), self._check_idx(idx))

    def grad_batch(self, theta, idx):
        return self._backprop(self._check_params(theta), self._check_idx(idx))

    def logits(self, theta, X):
        """Next-character logits ``(B, T, V)`` for integer inputs ``X`` of shape ``(B, T)``, ``T <= context``."""
        p = self._check_params(theta)
        X = np.asarray(X)
        if X.ndim != 2 or not 1 <= X.shape[1] <= self.context or not np.issubdtype(X.dtype, np.integer):
            raise ValueError(f"X must be an integer array (B, T) with 1 <= T <= {self.context}, got shape {X.shape}")
        if X.min() < 0 or X.max() >= self.vocab_size:
            raise ValueError(f"X must hold ids in [0, {self.vocab_size}), got range [{X.min()}, {X.max()}]")
        return self._forward(p, X)[0]

    def hvp(self, theta, v):
        r""":math:`\nabla^2 f(\theta) v` by a central difference of ``grad`` (``v`` a dict like ``theta``),
        with the step of :class:`~steplab.problems.Problem`'s default."""
        p = self._check_params(theta)
        vv = self._check_params(v, name="v")
        norm_v = np.sqrt(sum(float(np.vdot(a, a)) for a in vv.values()))
        if norm_v == 0.0:
            return {k: np.zeros_like(a) for k, a in p.items()}
        norm_p = np.sqrt(sum(float(np.vdot(a, a)) for a in p.values()))
        h = np.finfo(np.float64).eps ** (1 / 3) * max(1.0, norm_p)
        plus = self._backprop({k: p[k] + (h / norm_v) * vv[k] for k in p}, None)
        minus = self._backprop({k: p[k] - (h / norm_v) * vv[k] for k in p}, None)
        return {k: (plus[k] - minus[k]) * (norm_v / (2 * h)) for k in p}

    def __repr__(self):
        return (f"TinyTransformer(n={self.n}, vocab_size={self.vocab_size}, context={self.context}, "
                f"d_model={self.d_model}, n_heads={self.n_heads}, n_blocks={self.n_blocks}, dim={self.dim})")
