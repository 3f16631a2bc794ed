"""Planted bugs: each lesson's checks must catch a plausible bug in the steplab code they exercise.

A check earns its place when a plausible bug (a sign, a factor, a dropped term) in the code
it exercises makes it fail. Each entry below names a chapter notebook, the steplab function it
patches, the bug, and the check expected to fail. The test executes the notebook with the patch
applied in a first cell (the notebook's own cells are unchanged) and asserts that execution
stops at a failed check whose name starts with the expected text.

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


@dataclass(frozen=True)
class Planted:
    notebook: str
    target: str
    bug: str
    patch: str
    check: str


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
