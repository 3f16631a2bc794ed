"""Latency of the steplab.explore widgets: time from a slider change to a redrawn PNG. Run on demand:

    .venv/bin/python benchmarks/explore_latency.py [--moves 40]

For each explorer one slider is dragged through neighbouring values (as a hand does), and each
`.value` assignment is timed until it returns: the pure computation, the artist updates, the
Agg draw and the PNG encoding, all synchronous. Prints the median and the 90th percentile per
explorer, the median of the computation alone, and how many moves needed a full redraw (axes
limits or contours changed) rather than a redraw of the moving artists only.
"""

from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from steplab import explore  # noqa: E402


def drag(widget, name, values, compute, fixed):
    full0 = widget.renderer.full_draws
    total, comp = [], []
    for v in values:
        t0 = time.perf_counter()
        widget.sliders[name].value = v
        total.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        compute(**{**fixed, name: v})
        comp.append(time.perf_counter() - t0)
    return np.array(total), np.array(comp), widget.renderer.full_draws - full0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=40)
    args = parser.parse_args()
    k = args.moves

    def sweep(lo, hi, step):
        up = np.round(np.arange(lo, hi + step / 2, step), 9)
        seq = np.concatenate([up, up[::-1]])
        return [float(x) for x in np.resize(seq, k)]

    cases = [
        ("step_size (eta)", explore.step_size_explorer, "eta", sweep(1.5, 2.3, 0.05), explore.step_size_run, dict(kappa=10.0)),
        ("momentum (beta)", explore.momentum_explorer, "beta", sweep(0.5, 0.9, 0.01), explore.momentum_run, dict(eta=1.0)),
        ("batch_size (eta)", explore.batch_size_explorer, "eta", sweep(0.1, 0.5, 0.02), explore.batch_size_run, dict(batch_size=1)),
        ("adam (beta1)", explore.adam_explorer, "beta1", sweep(0.5, 0.95, 0.01), explore.adam_run, {}),
        ("adam reddi (beta2)", None, "beta2", sweep(0.05, 0.3, 0.01), explore.adam_run, dict(problem="reddi", beta1=0.0, eta=0.5)),
        ("schedule (peak_lr)", explore.schedule_explorer, "peak_lr", sweep(0.22, 0.4, 0.01), explore.schedule_run, {}),
    ]
    print(f"{k} moves each; times in ms (Agg, 80 dpi PNG)")
    print(f"{'explorer':22s} {'median':>7s} {'p90':>7s} {'compute':>8s} {'full redraws':>13s}")
    for label, make, name, values, compute, fixed in cases:
        if make is None:
            w = explore.adam_explorer()
            w.sliders["problem"].value = "reddi"
        else:
            w = make()
        total, comp, full = drag(w, name, values, compute, fixed)
        print(
            f"{label:22s} {1e3 * np.median(total):7.1f} {1e3 * np.percentile(total, 90):7.1f} "
            f"{1e3 * np.median(comp):8.1f} {full:6d} / {k}"
        )


if __name__ == "__main__":
    main()
