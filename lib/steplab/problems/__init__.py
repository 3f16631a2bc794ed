r"""Objectives with value, gradient and what the theory needs (L, mu, minimizer, f_star).

Every problem has ``value(theta)``, ``grad(theta)``, ``hvp(theta, v)`` and
``init_params(seed=0)``; finite sums (:class:`LeastSquares`,
:class:`LogisticRegression`, :class:`SoftmaxRegression`, :class:`MLP`) add
``n``, ``value_batch``, ``grad_batch`` and ``per_example_grads``. Problems
with ``batched = True`` accept a stack of parameters ``(k, dim)`` in
``value`` and ``grad``.
"""

from .base import FiniteSumProblem, Problem
from .least_squares import LeastSquares
from .logistic import LogisticRegression, SoftmaxRegression, log_softmax, sigmoid
from .mlp import MLP
from .quadratic import Quadratic, random_orthogonal
from .reddi import ReddiCounterexample
from .rosenbrock import Rosenbrock
from .transformer import TinyTransformer
from .synthetic import make_classification, make_least_squares
from .wavy import Wavy

__all__ = [
    "Problem",
    "FiniteSumProblem",
    "Quadratic",
    "random_orthogonal",
    "LeastSquares",
    "LogisticRegression",
    "SoftmaxRegression",
    "sigmoid",
    "log_softmax",
    "Rosenbrock",
    "Wavy",
    "ReddiCounterexample",
    "MLP",
    "TinyTransformer",
    "make_least_squares",
    "make_classification",
]
