r"""The run records every loop returns: one family with one interface.

Every record has

- ``steps``: the step indices (updates applied, or rounds) at which ``loss`` was recorded, an
  integer array;
- ``loss``: the recorded losses, one per entry of ``steps`` (one row per entry for
  :class:`Runs`);
- ``diverged`` and ``diverged_at``: whether the run diverged (see :mod:`steplab._checks`:
  a non-finite loss, gradient or iterate, or a loss above
  ``diverge_factor * max(|f(theta_0)|, 1)``) and the step at which;
- ``n_steps``: the number of updates the run applied;
- ``meta``: the run's metadata (method, problem size, why it stopped, ...) as a dict;
- ``plot(ax=None, key=...) -> Axes`` and ``record[name]`` for a series by name.

Members: :class:`History` (:func:`steplab.run.minimize`), :class:`EvalHistory`
(:mod:`steplab.finite_sum`), :class:`SimulationHistory` (:mod:`steplab.distributed`,
:mod:`steplab.privacy`), :class:`Runs` (:func:`steplab.vectorized.sgd_runs`) and
:class:`BatchScaling` (:func:`steplab.batching.scale_batch`) and :class:`ExplorerRun` (the
``*_run`` functions of :mod:`steplab.explore`). :class:`Logger` is the one
logger of the loops that log the full objective every so often.

Reference: Bottou, Curtis and Nocedal, "Optimization Methods for Large-Scale Machine
Learning", SIAM Review 60(2), 2018, Section 4 (suboptimality against the step or the number
of gradient evaluations).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._checks import DIVERGE_FACTOR, check_choice, check_diverge_factor, check_int, divergence_limit, is_diverged
from ._tree import tree_all_finite, tree_map, tree_norm

__all__ = ["Record", "History", "EvalHistory", "SimulationHistory", "Runs", "BatchScaling", "ExplorerRun", "Logger",
           "stack_trajectory"]


class Record:
    r"""What every run record shares: ``steps``, ``loss``, ``diverged``, ``meta``, series by name,
    the suboptimality $f(\theta_t) - f^\star$ and ``plot``.

    A subclass names its built-in series (``_series_names``), its metadata (``_meta_names``),
    the series ``plot`` draws by default (``_plot_key``) and what the series are plotted
    against (``_plot_x``).
    """

    _series_names: tuple[str, ...] = ("loss",)
    _meta_names: tuple[str, ...] = ()
    _plot_key = "loss"
    diverged_at: int | None = None
    metrics: dict = {}

    @property
    def diverged(self) -> bool:
        """True when the run stopped because it diverged (at step ``diverged_at``)."""
        return self.diverged_at is not None

    @property
    def n_steps(self) -> int:
        """The number of updates the run applied (the last recorded step)."""
        return int(self.steps[-1]) if len(self.steps) else 0

    @property
    def meta(self) -> dict:
        """The run's metadata by name."""
        return {name: getattr(self, name) for name in self._meta_names}

    def __getitem__(self, key: str) -> np.ndarray:
        """A series by name: a built-in series of this record or a metric."""
        if key in self._series_names:
            value = getattr(self, key)
            if value is None:
                raise KeyError(f"this run recorded no {key!r}")
            return value
        if key in self.metrics:
            return self.metrics[key]
        known = [k for k in self._series_names if getattr(self, k) is not None]
        raise KeyError(f"no series {key!r}; this run has {known + sorted(self.metrics)}")

    def suboptimality(self, f_star: float | None = None) -> np.ndarray:
        r"""$f(\theta_t) - f^\star$ for every recorded loss (``f_star`` defaults to the run's own)."""
        if f_star is None:
            f_star = getattr(self, "f_star", None)
        if f_star is None:
            raise ValueError("f_star is unknown for this run; pass f_star=...")
        return self.loss - f_star

    def _plot_x(self, key: str, size: int) -> tuple[np.ndarray, str]:
        """The x values of a series of ``size`` entries, and the axis label."""
        steps = np.asarray(self.steps)
        return (steps if steps.size == size else np.arange(size)), "step $t$"

    def plot(self, ax=None, key: str | None = None, log: bool = True, f_star: float | None = None,
             label: str | None = None, **kwargs):
        """Plot one series (default: the record's main one) with :func:`steplab.plotting.loss_curves`.

        Returns the Axes.
        """
        from . import plotting

        key = self._plot_key if key is None else key
        label = getattr(self, "method", None) or key if label is None else label
        (line,) = plotting.loss_curves({label: self}, ax=ax, key=key, log=log, f_star=f_star, **kwargs)
        return line.axes


def stack_trajectory(thetas: list):
    """The iterates of a run: one stacked array for array parameters, the list of dicts otherwise."""
    if thetas and not isinstance(thetas[0], dict):
        return np.stack(thetas)
    return thetas


@dataclass
class History(Record):
    r"""What :func:`steplab.run.minimize` (or a loop like it) recorded.

    Attributes:
        loss: $f(\theta_t)$ at the steps ``steps`` (every $t = 0, \dots, T$ by default; the
            full objective even for minibatch runs). For :func:`steplab.run.minimize_online`,
            the online losses $f_t(\theta_t)$, $t = 1, \dots, T$.
        grad_norm: $\|g_t\|$ of the gradient handed to the optimizer at step $t$ (a minibatch
            gradient when ``batch_size`` is set), length ``n_steps``.
        update_norm: $\|\theta_{t+1} - \theta_t\|$, length ``n_steps``.
        lr: the learning rate each update used (``None`` when the optimizer has none to read).
        params: the last good parameters $\theta_T$.
        metrics: extra series, name -> array with one value per entry of ``metric_steps``.
        trajectory: $\theta_0, \dots, \theta_T$ when kept (an array ``(T + 1, dim)`` for array
            parameters, a list of dicts for dict parameters), else ``None``.
        diverged_at: index of the first iterate that failed the divergence test, or ``None``.
        reason: why the run was stopped early (divergence or a stopping rule, with the numbers),
            or ``None`` when it used its whole budget.
        stop_reason: which rule ended the run: ``"steps"`` (the budget), ``"grad_tol"``,
            ``"rel_tol"``, ``"diverged"``, or ``"line_search"``; ``None`` for a History built by hand.
        metric_steps: the steps $t$ at which the metrics were computed, or ``None``.
        loss_steps: the steps of the entries of ``loss`` when they are not $0, 1, \dots$
            (``eval_every > 1``, online runs); ``None`` otherwise.

    ``steps`` is ``loss_steps``, or $0, 1, \dots$ up to the length of ``loss``; ``n_steps`` is
    the number of updates applied.
    """

    loss: np.ndarray
    grad_norm: np.ndarray
    update_norm: np.ndarray
    lr: np.ndarray | None
    params: Any
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    trajectory: Any = None
    diverged_at: int | None = None
    reason: str | None = None
    stop_reason: str | None = None
    metric_steps: np.ndarray | None = None
    loss_steps: np.ndarray | None = None

    _series_names = ("loss", "grad_norm", "update_norm", "lr")
    _meta_names = ("stop_reason", "reason")

    @property
    def steps(self) -> np.ndarray:
        """The steps $t$ of the entries of ``loss``."""
        if self.loss_steps is not None:
            return np.asarray(self.loss_steps)
        return np.arange(np.size(self.loss), dtype=np.int64)

    @property
    def n_steps(self) -> int:
        """The number of updates applied."""
        return int(np.size(self.grad_norm))

    def _plot_x(self, key: str, size: int) -> tuple[np.ndarray, str]:
        # the loss may be evaluated only every eval_every steps, the metrics every metrics_every
        steps = self.steps if key == "loss" else self.metric_steps if key in self.metrics else None
        if steps is None or len(steps) != size:
            steps = np.arange(size)
        return np.asarray(steps), "step $t$"

    def __repr__(self) -> str:
        if self.diverged:
            status = f"diverged at {self.diverged_at} ({self.reason})"
        elif self.reason is not None:
            status = f"stopped: {self.reason}"
        else:
            status = "finished"
        last = f"{self.loss[-1]:.4g}" if np.size(self.loss) else "n/a"
        return f"History(n_steps={self.n_steps}, final loss={last}, {status})"


@dataclass
class EvalHistory(Record):
    r"""What a finite-sum method logged, indexed by logged point.

    Attributes:
        method: the name of the method that produced the run.
        grad_evals: gradient evaluations spent when each point was logged (one per-example
            gradient = 1).
        steps: parameter updates applied when each point was logged.
        loss: the full objective $f(\theta)$ at each logged point.
        params: the final parameters.
        n: the number of terms of the finite sum (``epochs = grad_evals / n``).
        f_star: the optimal value, when the problem knows it.
        diverged_at: the step at which the run diverged, or ``None``.
        metrics: further per-point series.
    """

    method: str
    grad_evals: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    params: Any
    n: int
    f_star: float | None = None
    diverged_at: int | None = None
    metrics: dict = field(default_factory=dict)

    _series_names = ("loss", "grad_evals", "steps", "epochs")
    _meta_names = ("method", "n", "f_star")
    _plot_key = "suboptimality"

    @property
    def epochs(self) -> np.ndarray:
        """Gradient evaluations in units of full passes, ``grad_evals / n``."""
        return self.grad_evals / self.n

    def _plot_x(self, key: str, size: int) -> tuple[np.ndarray, str]:
        return self.epochs, "gradient evaluations / n"


@dataclass
class SimulationHistory(EvalHistory):
    """An :class:`EvalHistory` plotted against the step (or round).

    Extra attributes: ``batches`` (the index arrays each step or round used, when
    ``keep_batches=True``), and in ``metrics`` whatever the simulation measures (for federated
    runs ``client_drift`` and ``client_shift``; ``dist_to_minimizer`` when the problem knows its
    minimizer).
    """

    batches: list | None = None

    _plot_key = "loss"

    def _plot_x(self, key: str, size: int) -> tuple[np.ndarray, str]:
        return self.steps, "step"


@dataclass
class Runs(Record):
    r"""What :func:`steplab.vectorized.sgd_runs` recorded: one column per run, one row per recorded step.

    Attributes:
        steps: the recorded steps $t$ (always $0$ and $T$), shape ``(m,)``.
        loss: $f(\theta_t^{(r)})$, shape ``(m, R)`` (``None`` with ``record_loss=False``).
        dist2: $\|\theta_t^{(r)} - \theta^\star\|^2$, shape ``(m, R)`` (``None`` when the
            problem has no ``minimizer``).
        params: the last iterates $\theta_T^{(r)}$, shape ``(R, dim)``.
        lr: the step size of every update, shape ``(T,)``.
        f_star: the problem's ``f_star`` (or ``None``).
        average: the running averages $\bar\theta_T^{(r)}$ at the end, shape ``(R, dim)``, when
            ``average`` was requested, else ``None``.
        avg_loss, avg_dist2: $f(\bar\theta_t^{(r)})$ and $\|\bar\theta_t^{(r)} - \theta^\star\|^2$
            at the recorded steps, when ``average`` was requested.
        grad_norm2: $\|\nabla f(\theta_t^{(r)})\|^2$ of the full gradient, shape ``(m, R)``, with
            ``record_grad_norm2=True`` (else ``None``).

    No run is stopped: ``diverged_at`` is the first recorded step at which some run's loss (or
    distance) is not finite, else ``None``. ``record[key]`` and ``plot`` use the mean over runs.
    """

    steps: np.ndarray
    loss: np.ndarray | None
    dist2: np.ndarray | None
    params: np.ndarray
    lr: np.ndarray
    f_star: float | None = None
    average: np.ndarray | None = None
    avg_loss: np.ndarray | None = None
    avg_dist2: np.ndarray | None = None
    grad_norm2: np.ndarray | None = None

    _meta_names = ("n_runs", "f_star")
    _series = ("loss", "dist2", "suboptimality", "avg_loss", "avg_dist2", "avg_suboptimality", "grad_norm2")

    @property
    def n_runs(self) -> int:
        return int(self.params.shape[0])

    @property
    def diverged_at(self) -> int | None:
        watched = self.loss if self.loss is not None else self.dist2
        if watched is None:
            return None
        bad = ~np.all(np.isfinite(watched), axis=1)
        return int(self.steps[np.argmax(bad)]) if bad.any() else None

    @property
    def _plot_key(self) -> str:
        return "loss" if self.loss is not None else "dist2"

    def suboptimality(self, f_star: float | None = None) -> np.ndarray:
        r"""$f(\theta_t^{(r)}) - f^\star$, shape ``(m, R)``."""
        f_star = self.f_star if f_star is None else f_star
        if f_star is None or self.loss is None:
            raise ValueError("suboptimality needs record_loss=True and a problem with f_star")
        return self.loss - f_star

    def mean(self, key: str = "dist2") -> np.ndarray:
        """The mean over runs of ``loss``, ``dist2``, ``suboptimality``, ``avg_loss``, ``avg_dist2``,
        ``avg_suboptimality`` or ``grad_norm2``, per recorded step: the Monte Carlo estimate of the
        expectation."""
        check_choice("key", key, self._series)
        if key == "suboptimality":
            return self.suboptimality().mean(axis=1)
        if key == "avg_suboptimality":
            if self.f_star is None or self.avg_loss is None:
                raise ValueError("avg_suboptimality needs average, record_loss=True and a problem with f_star")
            return (self.avg_loss - self.f_star).mean(axis=1)
        value = getattr(self, key)
        if value is None:
            raise ValueError(f"these runs recorded no {key!r}")
        return value.mean(axis=1)

    def __getitem__(self, key: str) -> np.ndarray:
        """The mean over runs of a series (see :meth:`mean`)."""
        if key not in self._series:
            raise KeyError(f"no series {key!r}; runs have {list(self._series)}")
        return self.mean(key)

    def plot(self, ax=None, key: str | None = None, log: bool = True, f_star: float | None = None,
             label: str | None = None, **kwargs):
        """Plot the mean over runs of one series against the step. Returns the Axes."""
        return super().plot(ax=ax, key=key, log=log, f_star=f_star, label=label, **kwargs)

    def __repr__(self) -> str:
        return f"Runs(n_runs={self.n_runs}, steps={int(self.steps[-1])}, recorded={self.steps.size})"


@dataclass
class BatchScaling(Record):
    r"""The plan of :func:`steplab.batching.scale_batch`: a modelled run, not a measured one.

    ``steps`` holds the one planned step count (rounded up), ``loss`` is empty (nothing was
    run) and the run never diverges; the numbers are fields and, as before, items
    (``plan["lr"]``).
    """

    lr: float
    planned_steps: float
    warmup_steps: float
    step_ratio: float
    base_step_time: Any
    step_time: Any
    base_hours: float
    hours: float
    speedup: float

    _meta_names = ("lr", "planned_steps", "warmup_steps", "step_ratio", "base_step_time", "step_time",
                   "base_hours", "hours", "speedup")

    @property
    def steps(self) -> np.ndarray:
        return np.array([int(np.ceil(self.planned_steps))], dtype=np.int64)

    @property
    def loss(self) -> np.ndarray:
        return np.empty(0)

    def __getitem__(self, key: str):
        name = "planned_steps" if key == "steps" else key
        if name not in self._meta_names:
            raise KeyError(f"no entry {key!r}; the plan has {['steps' if k == 'planned_steps' else k for k in self._meta_names]}")
        return getattr(self, name)

    def keys(self):
        return ["steps" if k == "planned_steps" else k for k in self._meta_names]

    def plot(self, ax=None, **kwargs):
        """Bar chart of the base and the scaled wall-clock hours. Returns the Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        ax.bar(["base", "scaled"], [self.base_hours, self.hours], **kwargs)
        ax.set_ylabel("hours")
        return ax


class ExplorerRun(Record):
    r"""One setting of an explorer (:mod:`steplab.explore`): what its ``*_run`` function computed.

    Attributes:
        explorer: the explorer's name (``"step_size"``, ``"batch_size"``, ...).
        settings: the run's arguments after checking, by name (the step budget is
            ``settings["steps"]``).
        steps: the steps $t$ at which ``loss`` was recorded (``0, ..., T'``, or ``1, ..., T'``
            for an online loss), an integer array.
        loss: one entry per step, or one row per step and one column per run for a stack of
            runs (as :class:`Runs`).
        values: the explorer's other results by name (trajectories, rates, metrics).
        diverged_at: the step at which the run (some run of a stack) diverged and stopped, or
            ``None``.
        fp_warnings: the numpy floating-point errors met, in the order first seen.

    ``record[name]`` is ``loss`` (the mean over runs for a stack, as :class:`Runs`), a value or a
    setting, as the explorer's sliders name them; the fields above that are not settings or values
    (``steps``, ``diverged_at``, ``fp_warnings``) are read as attributes only, so that
    ``record.steps`` (the recorded steps) and ``record.settings["steps"]`` (the budget) cannot be
    confused. ``meta`` is the explorer's name and the settings; ``plot`` draws the (mean) loss
    against the step.
    """

    _FIELDS = ("steps", "diverged_at", "fp_warnings")  # attributes, not items

    def __init__(self, explorer: str, settings: dict, loss, values: dict, *, steps=None,
                 diverged_at: int | None = None, fp_warnings=(), first_step: int = 0):
        self.explorer = explorer
        self.settings = dict(settings)
        self.loss = np.asarray(loss, dtype=np.float64)
        if steps is None:
            steps = np.arange(first_step, first_step + self.loss.shape[0])
        self.steps = np.asarray(steps, dtype=np.int64)
        if self.loss.shape[:1] != self.steps.shape:
            raise ValueError(f"loss must have one row per step ({self.steps.size}), got shape {self.loss.shape}")
        self.values = dict(values)
        self.diverged_at = None if diverged_at is None else int(diverged_at)
        self.fp_warnings = list(fp_warnings)
        clash = set(self.settings) & set(self.values)
        if clash:
            raise ValueError(f"values must not repeat the settings, got {sorted(clash)} in both")

    @property
    def method(self) -> str:
        return self.explorer

    @property
    def meta(self) -> dict:
        return {"explorer": self.explorer, **self.settings}

    def keys(self) -> list[str]:
        """Every name ``record[name]`` answers."""
        return ["loss", *self.values, *(k for k in self.settings if k not in self._FIELDS)]

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def __getitem__(self, key: str):
        if key == "loss":
            return self.loss.mean(axis=1) if self.loss.ndim == 2 else self.loss
        if key in self._FIELDS:
            budget = ' (the step budget is record.settings["steps"])' if key == "steps" else ""
            raise KeyError(f"{key!r} is an attribute: read record.{key}{budget}")
        if key in self.settings:
            return self.settings[key]
        if key in self.values:
            return self.values[key]
        raise KeyError(f"no entry {key!r}; this {self.explorer} run has {self.keys()}")

    def __repr__(self) -> str:
        status = f"diverged at {self.diverged_at}" if self.diverged else "finished"
        settings = ", ".join(f"{k}={v!r}" for k, v in self.settings.items() if np.ndim(v) == 0)
        return f"ExplorerRun({self.explorer}: {settings}; {status})"


class Logger:
    r"""Logs the full objective every ``log_every`` gradient evaluations (``by="evals"``) or steps
    (``by="steps"``), and watches for divergence.

    Call it after every update with the parameters, the steps and the evaluations so far; it
    returns False when the run must stop: the parameters are not finite, or the logged loss is
    not finite or above ``diverge_factor * max(|first logged loss|, 1)``.
    """

    def __init__(self, problem, method: str, log_every: int, *, by: str = "evals",
                 diverge_factor: float = DIVERGE_FACTOR, record=EvalHistory, track_minimizer: bool = False):
        self.problem, self.method, self.record = problem, method, record
        self.log_every = check_int("log_every", log_every, low=1)
        self.by = check_choice("by", by, ("evals", "steps"))
        self.diverge_factor = check_diverge_factor(diverge_factor)
        self.minimizer = getattr(problem, "minimizer", None) if track_minimizer else None
        self.steps, self.evals, self.loss = [], [], []
        self.metrics: dict[str, list] = {}
        self.next_log = 0
        self.limit = None
        self.diverged_at = None

    @classmethod
    def simulation(cls, problem, method: str, log_every: int, diverge_factor: float = DIVERGE_FACTOR) -> "Logger":
        """The logger of a simulated distributed or private run: it logs every ``log_every`` steps
        (or rounds), returns a :class:`SimulationHistory` and tracks the distance to the problem's
        minimizer when it has one."""
        return cls(problem, method, log_every, by="steps", diverge_factor=diverge_factor, record=SimulationHistory,
                   track_minimizer=True)

    def _due(self, steps: int, evals: int) -> bool:
        if self.by == "steps":
            return steps % self.log_every == 0
        return evals >= self.next_log

    def __call__(self, theta, steps: int, evals: int, force: bool = False, **metrics) -> bool:
        """Record if due (or ``force``); return False when the run must stop."""
        if not tree_all_finite(theta):
            self.diverged_at = steps
            return False
        if not (force or self._due(steps, evals)):
            return True
        if self.steps and self.steps[-1] == steps and self.evals[-1] == evals:
            return True
        loss = float(self.problem.value(theta))
        self.steps.append(steps)
        self.evals.append(evals)
        self.loss.append(loss)
        while self.next_log <= evals:
            self.next_log += self.log_every
        if self.minimizer is not None:
            metrics["dist_to_minimizer"] = tree_norm(tree_map(np.subtract, theta, self.minimizer))
        for key, value in metrics.items():
            self.metrics.setdefault(key, []).append(value)
        if self.limit is None:
            self.limit = divergence_limit(loss, self.diverge_factor)
        if is_diverged(loss, self.limit):
            self.diverged_at = steps
            return False
        return True

    def history(self, theta, **extra) -> EvalHistory:
        """The record of the run, ending at ``theta``."""
        f_star = getattr(self.problem, "f_star", None)
        n_logged = len(self.steps)
        metrics = {k: np.asarray(v, dtype=np.float64) for k, v in self.metrics.items() if len(v) == n_logged}
        return self.record(
            method=self.method,
            grad_evals=np.asarray(self.evals, dtype=np.int64),
            steps=np.asarray(self.steps, dtype=np.int64),
            loss=np.asarray(self.loss, dtype=np.float64),
            params=theta,
            n=int(self.problem.n),
            f_star=None if f_star is None else float(f_star),
            diverged_at=self.diverged_at,
            metrics=metrics,
            **extra,
        )
