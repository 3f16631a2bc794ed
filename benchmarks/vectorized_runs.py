"""Speed-up of steplab.run.sweep_lr (all step sizes advanced as one stack) over a Python loop of
steplab.run.minimize calls, on the two batched problems. Run on demand:

    .venv/bin/python benchmarks/vectorized_runs.py [--steps 200] [--repeats 3] [--blas-threads 1]

Prints, per problem and number of learning rates k, the best-of-repeats wall time of each and the
ratio. The two give the same Histories (tests/test_run.py checks it).

BLAS runs single-threaded by default: on a small shared machine a multi-threaded BLAS fights the
other processes for cores and the (k, n) matrix products of a sweep become 10x slower, which
measures the machine's load rather than the library.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _blas_threads_from_argv() -> str:
    # must be set before numpy is imported
    for i, arg in enumerate(sys.argv):
        if arg == "--blas-threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if arg.startswith("--blas-threads="):
            return arg.split("=", 1)[1]
    return "1"


for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _blas_threads_from_argv()

import numpy as np  # noqa: E402

from steplab import optim  # noqa: E402
from steplab.problems import LeastSquares, Quadratic  # noqa: E402
from steplab.run import minimize, sweep_lr  # noqa: E402


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--blas-threads", type=int, default=1, help="BLAS threads (default 1)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    A = rng.standard_normal((500, 20))
    problems = {
        "Quadratic(dim=10, kappa=100)": Quadratic.with_condition(100.0, dim=10, seed=0),
        "LeastSquares(n=500, d=20)": LeastSquares(A, A @ rng.standard_normal(20) + 0.1 * rng.standard_normal(500)),
    }
    print(f"steps={args.steps}, best of {args.repeats}, BLAS threads={os.environ['OPENBLAS_NUM_THREADS']}")
    print(f"{'problem':32s} {'k':>4s} {'momentum':>8s} {'loop [s]':>9s} {'sweep [s]':>9s} {'speed-up':>8s}")
    for name, p in problems.items():
        theta0 = p.init_params(0)
        for k in (8, 32, 128):
            lrs = np.geomspace(1e-3, 2.5, k) / p.L
            for momentum in (0.0, 0.9):
                def loop():
                    return [minimize(p, optim.sgd(lr, momentum=momentum), args.steps, theta0=theta0) for lr in lrs]

                def sweep():
                    return sweep_lr(p, lrs, args.steps, momentum=momentum, theta0=theta0)

                t_loop = best_time(loop, args.repeats)
                t_sweep = best_time(sweep, args.repeats)
                print(f"{name:32s} {k:4d} {momentum:8.1f} {t_loop:9.3f} {t_sweep:9.3f} {t_loop / t_sweep:7.1f}x")


if __name__ == "__main__":
    main()
