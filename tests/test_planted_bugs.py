"""Planted bugs: each lesson's checks must catch a plausible bug in the steplab code they exercise.

A check earns its place when a plausible bug (a sign, a factor, a dropped term) in the code
it exercises makes it fail. Each entry below names a chapter notebook (chapters 1 to 4, one
entry per notebook), the steplab function it patches, the bug, and the check expected to fail.
The test executes the notebook with the patch applied in a first cell (the notebook's own cells
are unchanged) and asserts that execution stops at a failed check whose name starts with the
expected text.

Executing a notebook takes its full run time, so these tests carry the ``planted`` marker and
are deselected by default; run them with ``pytest -m planted tests/test_planted_bugs.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CH1 = "chapters/01_gradient_descent"
CH2 = "chapters/02_stochastic_optimization"
CH3 = "chapters/03_adaptive_learning_rates"
CH4 = "chapters/04_learning_rate_schedules"


@dataclass(frozen=True)
class Planted:
    notebook: str
    target: str
    bug: str
    patch: str
    check: str


def _adam_patch(body: str) -> str:
    """A patch whose ``_adam`` (defined in ``body``, with ``_orig`` the real transform at hand)
    replaces ``scale_by_adam`` everywhere a notebook reaches it: ``steplab.optim``, its alias
    module (``optim.adam``) and its transforms module."""
    return ("\nimport numpy as np\nimport steplab.optim as _o\nimport steplab.optim.alias as _a\n"
            "import steplab.optim.transforms as _t\nfrom steplab._tree import tree_map\n"
            "_orig = _t.scale_by_adam\n" + body.strip("\n") + "\n"
            "_o.scale_by_adam = _a.scale_by_adam = _t.scale_by_adam = _adam\n")


def _adam_direction(direction: str) -> str:
    """Adam with its moments kept as they are and the step computed as ``direction``, an
    expression in the moments ``m``, ``v``, their bias corrections ``c1``, ``c2`` and ``eps``."""
    return _adam_patch(f"""
def _adam(beta1=0.9, beta2=0.999, eps=1e-8, amsgrad=False, bias_correction=True):
    t = _orig(beta1, beta2, eps, amsgrad, bias_correction)
    def update(updates, state, params=None):
        _, s = t.update(updates, state, params)
        c1 = 1.0 - beta1**s.count if bias_correction else 1.0
        c2 = 1.0 - beta2**s.count if bias_correction else 1.0
        return tree_map(lambda m, v: {direction}, s.m, s.v_max if amsgrad else s.v), s
    return type(t)(t.init, update)
""")


PLANTED = [
    Planted(
        f"{CH1}/01_intuition.ipynb",
        "steplab.problems.LogisticRegression._grad",
        "the L2 term of the gradient is dropped",
        """
import steplab.problems.logistic as _m
_orig = _m.LogisticRegression._grad
_m.LogisticRegression._grad = lambda self, theta, idx: _orig(self, theta, idx) - self.l2 * theta
""",
        "with lr = 1/L the loss never increases",
    ),
    Planted(
        f"{CH1}/02_definitions.ipynb",
        "steplab.problems.LogisticRegression.L",
        "the smoothness constant uses ||X||^2 / (2n) instead of / (4n)",
        """
import numpy as np
import steplab.problems.logistic as _m
_m.LogisticRegression.L = property(lambda self: float(np.linalg.norm(self.X, 2) ** 2 / (2 * self.n) + self.l2))
""",
        "logistic, eta = 1/L: with L/2 in place of L the inequality fails",
    ),
    Planted(
        f"{CH1}/03_core_theory_1.ipynb",
        "steplab.optim.sgd",
        "the step is 5% larger than the learning rate asked for",
        """
import steplab.optim as _o
_orig = _o.sgd
_o.sgd = lambda lr, *args, **kwargs: _orig(lr * 1.05 if not callable(lr) else lr, *args, **kwargs)
""",
        "eta = 2/(L+mu): |theta_t - theta*| <= q^t",
    ),
    Planted(
        f"{CH1}/04_core_theory_2.ipynb",
        "steplab.problems.LeastSquares._grad",
        "the gradient of (1/2n)||A theta - b||^2 carries a factor 2",
        """
import steplab.problems.least_squares as _m
_orig = _m.LeastSquares._grad
_m.LeastSquares._grad = lambda self, theta, idx: 2 * _orig(self, theta, idx)
""",
        "e_{t,i} = (1 - eta lambda_i)^t e_{0,i}",
    ),
    Planted(
        f"{CH1}/05_core_theory_3.ipynb",
        "steplab.optim.clip_by_global_norm",
        "the norm compared with the threshold is the largest array's, not the global one",
        """
import numpy as np
import steplab.optim as _o
from steplab._tree import tree_leaves, tree_map
_orig = _o.clip_by_global_norm
def _clip(max_norm):
    t = _orig(max_norm)
    def update(updates, state, params=None):
        largest = max(float(np.linalg.norm(g)) for g in tree_leaves(updates))
        factor = min(1.0, max_norm / largest)
        return tree_map(lambda g: g * factor, updates), state
    return type(t)(t.init, update)
_o.clip_by_global_norm = _clip
""",
        "clipped: ||update|| <= lr * max_norm at every step",
    ),
    Planted(
        f"{CH1}/06_advanced.ipynb",
        "steplab.optim.transforms.trace with nesterov=True (as used by steplab.optim.sgd)",
        "Nesterov's look-ahead drops the gradient term: u = beta b instead of g + beta b",
        """
import steplab.optim.alias as _a
from steplab._tree import tree_map
_orig = _a.trace
def _trace(momentum, nesterov=False):
    t = _orig(momentum, nesterov)
    if not nesterov:
        return t
    def update(updates, state, params=None):
        u, state = t.update(updates, state, params)
        return tree_map(lambda a, g: a - g, u, updates), state
    return type(t)(t.init, update)
_a.trace = _trace
""",
        "sgd(nesterov=True) iterates = Nesterov's y_t (constant momentum)",
    ),
    Planted(
        f"{CH1}/theory.ipynb",
        "steplab.optim.transforms.trace without Nesterov (as used by steplab.optim.sgd)",
        "the momentum buffer is an exponential average, b = beta b + (1 - beta) g, as if dampening = beta",
        """
import steplab.optim.alias as _a
from steplab._tree import tree_map
_orig = _a.trace
def _trace(momentum, nesterov=False):
    t = _orig(momentum, nesterov)
    if nesterov or momentum == 0:
        return t
    def update(updates, state, params=None):
        return t.update(tree_map(lambda g: (1.0 - momentum) * g, updates), state, params)
    return type(t)(t.init, update)
_a.trace = _trace
""",
        "heavy ball: measured rate = (sqrt(kappa) - 1)/(sqrt(kappa) + 1)",
    ),
    Planted(
        f"{CH2}/01_intuition.ipynb",
        "steplab.problems.LogisticRegression._grad",
        "a minibatch gradient is divided by n instead of by the batch size",
        """
import steplab.problems.logistic as _m
_orig = _m.LogisticRegression._grad
def _grad(self, theta, idx):
    rows = self.n if idx is None else len(idx)
    return (_orig(self, theta, idx) - self.l2 * theta) * rows / self.n + self.l2 * theta
_m.LogisticRegression._grad = _grad
""",
        "gradient descent needs at least 5x SGD's 2 passes",
    ),
    Planted(
        f"{CH2}/02_definitions.ipynb",
        "steplab.problems.LogisticRegression._per_example_grads",
        "the L2 term of the per-example gradients is dropped",
        """
import steplab.problems.logistic as _m
_orig = _m.LogisticRegression._per_example_grads
_m.LogisticRegression._per_example_grads = lambda self, theta, idx: _orig(self, theta, idx) - self.l2 * theta
""",
        "the mean of the per-example gradients is the full gradient",
    ),
    Planted(
        f"{CH2}/03_core_theory_1.ipynb",
        "steplab.run.sgd_runs",
        "the oracle noise has twice the variance asked for (noise_std times sqrt 2)",
        """
import steplab.run as _r
_orig = _r.sgd_runs
def _sgd_runs(*args, noise_std=0.0, **kwargs):
    return _orig(*args, noise_std=noise_std * 2 ** 0.5, **kwargs)
_r.sgd_runs = _sgd_runs
""",
        "noise ball at eta = 0.5: plateau = sum_i eta sigma^2/d / (lambda_i (2 - eta lambda_i))",
    ),
    Planted(
        f"{CH2}/04_core_theory_2.ipynb",
        "steplab.diagnostics.minibatch_variance",
        "replace=False is ignored: batches are always drawn with replacement",
        """
import steplab.diagnostics as _d
_orig = _d.minibatch_variance
_d.minibatch_variance = lambda *args, replace=False, **kwargs: _orig(*args, replace=True, **kwargs)
""",
        "without replacement: E||g_B - G||^2 = sigma^2/B (n-B)/(n-1)",
    ),
    Planted(
        f"{CH2}/05_core_theory_3.ipynb",
        "steplab.finite_sum.svrg_estimator",
        "the snapshot's full gradient enters with the wrong sign",
        """
import steplab.finite_sum as _f
from steplab._tree import tree_map
_orig = _f.svrg_estimator
_f.svrg_estimator = lambda problem, theta, idx, snapshot, snapshot_grad: tree_map(
    lambda v, c: v - 2 * c, _orig(problem, theta, idx, snapshot, snapshot_grad), snapshot_grad)
""",
        "unbiased: max |mean over all i of v - grad f(theta)|",
    ),
    Planted(
        f"{CH2}/06_advanced.ipynb",
        "steplab.distributed.data_parallel.tree_mean (the all-reduce of simulate_data_parallel)",
        "the all-reduce drops the last worker's gradient",
        """
import steplab.distributed.data_parallel as _dp
_orig = _dp.tree_mean
_dp.tree_mean = lambda trees: _orig(list(trees)[:-1])
""",
        "K = 4 workers with batch 8 = one worker with batch 32",
    ),
    Planted(
        f"{CH2}/theory.ipynb",
        "steplab.finite_sum.svrg_estimator",
        "the snapshot's full gradient is dropped from the control variate: g_I(theta) - g_I(snapshot)",
        """
import steplab.finite_sum as _f
_orig = _f.svrg_estimator
_f.svrg_estimator = lambda problem, theta, idx, snapshot, snapshot_grad: (
    _orig(problem, theta, idx, snapshot, snapshot_grad) - snapshot_grad)
""",
        "SVRG estimator is unbiased",
    ),
    Planted(
        f"{CH3}/01_intuition.ipynb",
        "steplab.optim.transforms.scale_by_adam (as reached by steplab.optim.adam and steplab.optim.scale_by_adam)",
        "the bias correction is dropped: bias_correction=True is ignored",
        _adam_patch("""
def _adam(beta1=0.9, beta2=0.999, eps=1e-8, amsgrad=False, bias_correction=True):
    return _orig(beta1, beta2, eps, amsgrad, bias_correction=False)
"""),
        "stationary regime: mean of m_hat/sqrt(v_hat) = mu / sqrt(mu^2 + sigma^2)",
    ),
    Planted(
        f"{CH3}/02_definitions.ipynb",
        "steplab.optim.transforms.scale_by_rms (as reached by steplab.optim.rmsprop and steplab.optim.scale_by_rms)",
        "eps inside the square root: g / sqrt(v + eps) instead of g / (sqrt(v) + eps)",
        """
import numpy as np
import steplab.optim as _o
import steplab.optim.alias as _a
import steplab.optim.transforms as _t
from steplab._tree import tree_map, tree_zeros_like
def _rms(alpha=0.99, eps=1e-8, centered=False):
    def init(params):
        return _t.ScaleByRmsState(tree_zeros_like(params), None)
    def update(updates, state, params=None):
        v = tree_map(lambda g, v: alpha * v + (1.0 - alpha) * g * g, updates, state.square_avg)
        return tree_map(lambda g, v: g / np.sqrt(v + eps), updates, v), _t.ScaleByRmsState(v, None)
    return _t.GradientTransformation(init, update)
_o.scale_by_rms = _a.scale_by_rms = _t.scale_by_rms = _rms
""",
        "RMSProp: the named optimizer = the update rule written out, every step",
    ),
    Planted(
        f"{CH3}/03_core_theory_1.ipynb",
        "steplab.optim.transforms.scale_by_adam (as reached by steplab.optim.adam and steplab.optim.scale_by_adam)",
        "beta1 and beta2 swapped: the first moment decays with beta2, the second with beta1",
        _adam_patch("""
def _adam(beta1=0.9, beta2=0.999, *args, **kwargs):
    return _orig(beta2, beta1, *args, **kwargs)
"""),
        "the sequence g_s = (beta1/beta2)^(t-s) attains the bound B_t",
    ),
    Planted(
        f"{CH3}/04_core_theory_2.ipynb",
        "steplab.optim.transforms.scale_by_adam (as reached by steplab.optim.adam and steplab.optim.scale_by_adam)",
        "eps inside the square root: m_hat / sqrt(v_hat + eps) instead of m_hat / (sqrt(v_hat) + eps)",
        _adam_direction("(m / c1) / np.sqrt(v / c2 + eps)"),
        "eps = 1e-08: distance moved in 20 steps = 20 eta |g| / (|g| + eps)",
    ),
    Planted(
        f"{CH3}/05_core_theory_3.ipynb",
        "steplab.optim.adamw",
        "the decoupled decay is multiplied by the learning rate twice (weight_decay * lr handed to the chain)",
        """
import steplab.optim as _o
import steplab.optim.alias as _a
_orig = _a.adamw
def _adamw(lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, amsgrad=False):
    return _orig(lr, beta1, beta2, eps, weight_decay * lr if not callable(lr) else weight_decay, amsgrad)
_o.adamw = _a.adamw = _adamw
""",
        "AdamW: effective decay = lambda at every noise level",
    ),
    Planted(
        f"{CH3}/06_advanced.ipynb",
        "steplab.optim.transforms.scale_by_trust_ratio (as reached by steplab.optim.lamb)",
        "the trust ratio is taken over the whole model (global norms) instead of per array",
        """
import steplab.optim.alias as _a
import steplab.optim.transforms as _t
from steplab._tree import tree_map, tree_norm
def _trust(trust_coefficient=1.0, eps=0.0):
    def update(updates, state, params=None):
        pn, gn = tree_norm(params), tree_norm(updates)
        if pn == 0.0 or gn == 0.0:
            return updates, state
        ratio = trust_coefficient * pn / (gn + eps)
        return tree_map(lambda g: g * ratio, updates), state
    return _t.GradientTransformation(lambda params: _t.EmptyState(), update)
_a.scale_by_trust_ratio = _t.scale_by_trust_ratio = _trust
""",
        "LAMB: every part's update-to-weight ratio is at most lr (trust ratio on each array)",
    ),
    Planted(
        f"{CH3}/theory.ipynb",
        "steplab.optim.transforms._factored_update (Adafactor's factored second moment)",
        "the row factor is not normalized: V_hat = R C instead of R C / mean(R)",
        """
import numpy as np
import steplab.optim.transforms as _t
_orig = _t._factored_update
def _factored_update(g, v_row, v_col, v, d, beta2, eps):
    u, v_row, v_col, v = _orig(g, v_row, v_col, v, d, beta2, eps)
    if d is not None:
        row_axis, col_axis = d
        reduced_row_axis = row_axis - 1 if row_axis > col_axis else row_axis
        u = u / np.sqrt(np.expand_dims(v_row.mean(axis=reduced_row_axis, keepdims=True), col_axis))
    return u, v_row, v_col, v
_t._factored_update = _factored_update
""",
        "rank-one g: the factored moment is exact, first step = sign(g)",
    ),
    Planted(
        f"{CH4}/01_intuition.ipynb",
        "steplab.optim.schedules.step_decay",
        "true division in the exponent: gamma^(t/s) (a smooth exponential decay) instead of gamma^floor(t/s)",
        """
import steplab.optim as _o
import steplab.optim.schedules as _s
def _step_decay(lr, step_size, gamma):
    return _s.Schedule(lambda t: lr * gamma ** (t / step_size), f"step_decay(lr={lr!r}, step_size={step_size!r}, gamma={gamma!r})")
_o.step_decay = _s.step_decay = _step_decay
""",
        "first phase: plateau = e_inf(eta)",
    ),
    Planted(
        f"{CH4}/02_definitions.ipynb",
        "steplab.optim.schedules.warmup_cosine",
        "the warmup is off by one: eta (t + 1) / W instead of eta t / W",
        """
import steplab.optim as _o
import steplab.optim.schedules as _s
_orig = _s.warmup_cosine
def _warmup_cosine(lr, warmup_steps, total_steps, final_lr=0.0):
    s = _orig(lr, warmup_steps, total_steps, final_lr)
    return _s.Schedule(lambda t: lr * (t + 1) / warmup_steps if t < warmup_steps else s(t), repr(s))
_o.warmup_cosine = _s.warmup_cosine = _warmup_cosine
""",
        "every steplab schedule equals its formula at t = 0..2T",
    ),
    Planted(
        f"{CH4}/03_core_theory_1.ipynb",
        "steplab.optim.schedules._cosine (the cosine of cosine, warmup_cosine, one_cycle and sgdr)",
        "the factor 1/2 is missing: eta_min + (eta - eta_min)(1 + cos(pi x))",
        """
import math
import steplab.optim.schedules as _s
_s._cosine = lambda lr, final_lr, fraction: final_lr + (lr - final_lr) * (1.0 + math.cos(math.pi * fraction))
""",
        "measured E f(theta_T) - f* = its exact value on the quadratic, every schedule",
    ),
    Planted(
        f"{CH4}/04_core_theory_2.ipynb",
        "steplab.optim.transforms.scale_by_adam (as reached by steplab.optim.adam and steplab.optim.scale_by_adam)",
        "the square root of the second-moment correction is dropped: sqrt(v) / (1 - beta2^t) in place of sqrt(v / (1 - beta2^t))",
        _adam_direction("(m / c1) / (np.sqrt(v) / c2 + eps)"),
        "without warmup, every run diverges",
    ),
    Planted(
        f"{CH4}/05_core_theory_3.ipynb",
        "steplab.optim.schedules.warmup_stable_decay",
        "the decay fraction is inverted: the cooldown jumps to eta_min and climbs back to eta",
        """
import steplab.optim as _o
import steplab.optim.schedules as _s
_orig = _s.warmup_stable_decay
def _wsd(lr, warmup_steps, stable_steps, decay_steps, final_lr=0.0):
    s = _orig(lr, warmup_steps, stable_steps, decay_steps, final_lr)
    start = warmup_steps + stable_steps
    return _s.Schedule(lambda t: s(t) if t < start else lr + (final_lr - lr) * (1.0 - min(1.0, (t - start) / decay_steps)), repr(s))
_o.warmup_stable_decay = _s.warmup_stable_decay = _wsd
""",
        "for every seed, both end below step decay",
    ),
    Planted(
        f"{CH4}/06_advanced.ipynb",
        "steplab.optim.schedule_free._schedule_free (the y/z/x recursion of schedule_free_sgd and schedule_free_adamw)",
        "beta and 1 - beta swapped in the interpolation: y = beta z + (1 - beta) x",
        """
import steplab.optim.schedule_free as _sf
_orig = _sf._schedule_free
_sf._schedule_free = lambda name, direction, lr_at, beta, weight_decay: _orig(name, direction, lr_at, 1.0 - beta, weight_decay)
""",
        "y_t = (1 - beta) z_t + beta x_t for every array",
    ),
    Planted(
        f"{CH4}/theory.ipynb",
        "steplab.optim.schedule_free._schedule_free (the averaging weights of schedule_free_sgd)",
        "the average is weighted by gamma_t instead of gamma_t^2",
        """
import steplab.optim.schedule_free as _sf
from steplab._tree import tree_map
_orig = _sf._schedule_free
def _schedule_free(name, direction, lr_at, beta, weight_decay):
    t = _orig(name, direction, lr_at, beta, weight_decay)
    def update(grads, state, params=None):
        _, s = t.update(grads, state, params)
        weight_sum = state.weight_sum + s.lr
        c = s.lr / weight_sum if weight_sum > 0.0 else 0.0
        x = tree_map(lambda x, z: (1.0 - c) * x + c * z, state.x, s.z)
        updates = tree_map(lambda z, x, y: (1.0 - beta) * z + beta * x - y, s.z, x, params)
        return updates, s._replace(x=x, weight_sum=weight_sum)
    return type(t)(t.init, update)
_sf._schedule_free = _schedule_free
""",
        "x_T is the gamma_t^2-weighted average of z_2, ..., z_{T+1}",
    ),
]


@pytest.mark.planted
@pytest.mark.parametrize("planted", PLANTED, ids=lambda p: f"{Path(p.notebook).parent.name[:2]}-{Path(p.notebook).stem}")
def test_planted_bug_fails_its_check(planted: Planted):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    path = ROOT / planted.notebook
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(planted.patch.strip()))
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    with pytest.raises(nbclient.exceptions.CellExecutionError) as failure:
        client.execute()
    message = str(failure.value)
    assert f"FAIL  {planted.check}" in message, (
        f"{planted.notebook} with {planted.target} patched ({planted.bug}) stopped, "
        f"but not at the check {planted.check!r}:\n{message[-3000:]}"
    )
