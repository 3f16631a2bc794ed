"""What the simulations share: index-set checks, the step rule, the shard sampler."""
from __future__ import annotations

import numpy as np

from .._checks import check_lr, lr_at
from .._tree import sgd_step, tree_map

__all__ = ["check_index_sets", "check_step_rule", "Stepper", "ShardSampler", "check_batch_vs_shards"]


def check_index_sets(name, sets, n):
    if isinstance(sets, np.ndarray) and sets.ndim == 2:
        sets = list(sets)
    if not isinstance(sets, (list, tuple)) or len(sets) == 0:
        raise ValueError(f"{name} must be a non-empty list of index arrays, got {type(sets).__name__}")
    out = []
    for k, s in enumerate(sets):
        s = np.asarray(s)
        if s.ndim != 1 or s.size == 0 or not np.issubdtype(s.dtype, np.integer):
            raise ValueError(f"{name}[{k}] must be a non-empty 1-D integer array, got {s!r:.60}")
        if s.min() < 0 or s.max() >= n:
            raise ValueError(f"{name}[{k}] has indices outside [0, {n}) (problem.n = {n})")
        out.append(s)
    return out


def check_step_rule(lr, optimizer):
    if (lr is None) == (optimizer is None):
        raise ValueError("give exactly one of lr and optimizer, got "
                         f"lr={lr!r}, optimizer={'None' if optimizer is None else 'given'}")
    if optimizer is not None and not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ValueError(f"optimizer must have init and update, got {type(optimizer).__name__}")
    return None if lr is None else check_lr(lr)


class Stepper:
    """theta <- theta - lr * g, or an optimizer's update applied to g."""

    def __init__(self, theta, lr, optimizer):
        self.lr, self.optimizer = lr, optimizer
        self.state = optimizer.init(theta) if optimizer is not None else None
        self.count = 0

    def __call__(self, theta, g):
        if self.optimizer is None:
            theta = sgd_step(theta, g, lr_at(self.lr, self.count))
        else:
            updates, self.state = self.optimizer.update(g, self.state, theta)
            theta = tree_map(lambda t, u: (t + u).astype(t.dtype, copy=False), theta, updates)
        self.count += 1
        return theta


class ShardSampler:
    """Each call draws ``batch_size`` distinct indices from every shard (one rng, shard order)."""

    def __init__(self, shards, batch_size, rng):
        self.shards, self.batch_size, self.rng = shards, batch_size, rng

    def __call__(self):
        if self.batch_size is None:
            return [s for s in self.shards]
        return [s[self.rng.choice(s.size, size=self.batch_size, replace=False)] for s in self.shards]


def check_batch_vs_shards(batch_size, shards, name="shards"):
    smallest = min(s.size for s in shards)
    if batch_size > smallest:
        raise ValueError(
            f"batch_size must be <= the smallest of the {name} ({smallest} examples), got {batch_size}"
        )
