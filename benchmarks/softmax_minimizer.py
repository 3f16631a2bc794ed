"""Newton's minimizer of softmax regression on the digits: dense Hessian against Newton-CG.

``SoftmaxRegression(X_train, y_train, 10, l2=1e-3).minimizer`` on the bundled digits
(n = 1438, d = 64, K = 10, so dK = 640 parameters), to gradient norm 1e-12, two ways:

    dense      each Newton step builds the (dK, dK) Hessian (about n (dK)^2 = 6e8 flops)
               and solves it
    Newton-CG  each step runs conjugate gradients on Hessian-vector products (4 n d K flops
               each), preconditioned by the K class-diagonal d x d blocks of the Hessian

Each is timed on fresh problems (the minimizer is cached), best of a few runs, and the
printed gradient norms show both reach the tolerance.

Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/softmax_minimizer.py
"""
import time

import numpy as np

import steplab.problems.logistic as logistic
from steplab.data import load_digits
from steplab.problems import SoftmaxRegression


def best_time(make, repeat=3):
    times, problem = [], None
    for _ in range(repeat):
        problem = make()
        t0 = time.perf_counter()
        problem.minimizer
        times.append(time.perf_counter() - t0)
    return float(np.min(times)), problem


def main():
    digits = load_digits()

    def make():
        return SoftmaxRegression(digits.X_train, digits.y_train, 10, l2=1e-3)

    default = logistic._DENSE_SOFTMAX_MAX_DIM
    rows = []
    for name, limit in (("dense", 10**9), ("Newton-CG", default)):
        logistic._DENSE_SOFTMAX_MAX_DIM = limit
        try:
            t, p = best_time(make)
        finally:
            logistic._DENSE_SOFTMAX_MAX_DIM = default
        rows.append((name, t, p.newton_iterations, np.linalg.norm(p.grad(p.minimizer)), p.f_star))
    print(f"{'method':<10} {'seconds':>8} {'Newton steps':>12} {'grad norm':>10} {'f_star':>20}")
    for name, t, it, g, f in rows:
        print(f"{name:<10} {t:8.3f} {it:12d} {g:10.1e} {f:20.16f}")
    print(f"speed-up: {rows[0][1] / rows[1][1]:.1f}x")


if __name__ == "__main__":
    main()
