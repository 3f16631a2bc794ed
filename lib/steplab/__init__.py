"""steplab: the numpy library behind an executable course on optimization for machine learning.

    import steplab
    problem = steplab.problems.Quadratic.with_condition(10.0)
    history = steplab.run.minimize(problem, steplab.optim.sgd(lr=0.1), steps=100)
    steplab.check.bound("GD converges", history.loss[-1], history.loss[0])

Submodules: ``optim`` (optimizers and schedules), ``problems`` (objectives), ``records`` (the run
records every loop returns), ``run`` (the loop for any optimizer), ``vectorized`` (many step sizes
or seeds of SGD as one stacked run), ``check`` (PASS/FAIL checks), ``diagnostics`` (what to log),
``data`` (data sets), ``linesearch`` (Armijo and stopping rules), ``finite_sum`` (SGD, SVRG, SAGA,
SARAH on finite sums), ``batching`` (batch size and learning-rate scaling), ``distributed``
(data-parallel, federated and compressed simulations), ``privacy`` (DP-SGD).
``plotting`` and ``explore`` import matplotlib, seaborn and ipywidgets, so they load on first use
(``steplab.plotting`` or ``from steplab import plotting``), keeping ``import steplab`` fast.
"""

import importlib

from . import (
    batching,
    check,
    data,
    diagnostics,
    distributed,
    finite_sum,
    linesearch,
    optim,
    privacy,
    problems,
    records,
    run,
    vectorized,
)

__version__ = "0.1.0"

_LAZY = ("plotting", "explore")

__all__ = [
    "optim", "problems", "records", "run", "vectorized", "check", "diagnostics", "data", "finite_sum",
    "distributed", "privacy", "batching", "linesearch", *_LAZY, "__version__",
]


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'steplab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
