"""One AdamW step on 1M and 10M float32 parameters, against the memory-bandwidth bound.

The step must read params, grads, m, v and write params, m, v: 7 arrays of N float32.
The bound is those bytes divided by the copy bandwidth measured here with np.copyto
(a copy reads one array and writes one). Compared:

    steplab pure     adamw(...).update + apply_updates (new arrays, one pass per primitive)
    numpy naive      the textbook expressions, with their temporaries
    steplab inplace  adamw_step_inplace (in place, blocked so temporaries stay in cache)

The table is printed twice: with glibc's default allocator settings, and again in a child
process whose allocator keeps freed memory (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_).
By default glibc hands large freed arrays back to the operating system, so every new array
of a pure step is page-faulted in again; that, more than the extra passes, is what the pure
API costs here.

A second table times one AdamW step at the scale of the tiny transformer of chapter 3: a
dict of 26 float64 arrays, 10^5 entries in all, where the per-array overhead dominates:

    readable chain   adamw(...).update + apply_updates
    inplace          adamw_step_inplace on the dict, array by array
    flat             adamw_step_inplace on flat_params(...) views: one pass over one buffer
    torch foreach    torch.optim.AdamW(foreach=True), when torch is importable
    torch fused      torch.optim.AdamW(fused=True), when torch is importable

Run: .venv/bin/python benchmarks/optim_step.py (torch is not a dependency: run it with an
interpreter where torch is installed, with PYTHONPATH=lib, for the torch rows)
"""
import os
import subprocess
import sys
import time

import numpy as np

from steplab import optim

HYPER = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)
LR = 1e-3


def best_time(fn, repeat: int) -> float:
    """Shortest wall time of fn() over `repeat` runs, after one warm-up call (the machine is shared)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.min(times))


def copy_bandwidth(n_bytes: int = 1 << 28, repeat: int = 7) -> float:
    """Bytes moved per second (read + write) by np.copyto on arrays far larger than cache."""
    src = np.ones(n_bytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    t = best_time(lambda: np.copyto(dst, src), repeat)
    return 2 * src.nbytes / t


def naive_adamw(p, g, m, v, t):
    b1, b2, eps, wd = HYPER["beta1"], HYPER["beta2"], HYPER["eps"], HYPER["weight_decay"]
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    p = p - LR * (m_hat / (np.sqrt(v_hat) + eps) + wd * p)
    return p, m, v


def bench(n: int, bandwidth: float, repeat: int) -> dict:
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal(n, dtype=np.float32)}
    grads = {"w": rng.standard_normal(n, dtype=np.float32)}

    opt = optim.adamw(LR, **HYPER)
    pure = {"params": params, "state": opt.init(params)}

    def step_pure():
        updates, pure["state"] = opt.update(grads, pure["state"], pure["params"])
        pure["params"] = optim.apply_updates(pure["params"], updates)

    naive = {"p": params["w"].copy(), "m": np.zeros(n, np.float32), "v": np.zeros(n, np.float32), "t": 0}

    def step_naive():
        naive["t"] += 1
        naive["p"], naive["m"], naive["v"] = naive_adamw(naive["p"], grads["w"], naive["m"], naive["v"], naive["t"])

    fast_params = {"w": params["w"].copy()}
    fast = {"state": opt.init(fast_params)}

    def step_inplace():
        fast["state"] = optim.adamw_step_inplace(fast_params, grads, fast["state"], LR, **HYPER)

    bound = 7 * n * 4 / bandwidth
    times = {
        "steplab pure": best_time(step_pure, repeat),
        "numpy naive": best_time(step_naive, repeat),
        "steplab inplace": best_time(step_inplace, repeat),
    }
    # the three implementations took the same number of steps from the same start
    assert pure["state"][0].count == naive["t"] == fast["state"][0].count
    np.testing.assert_allclose(pure["params"]["w"], naive["p"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast_params["w"], naive["p"], rtol=1e-5, atol=1e-6)
    return {"bound": bound, **times}


def transformer_shapes() -> dict:
    """26 arrays, about 10^5 entries: embeddings, two blocks of attention and MLP, a head."""
    d, v, f, ctx = 64, 64, 256, 32
    shapes = {"embed": (v, d), "pos": (ctx, d), "head": (d, v), "ln_f.g": (d,), "ln_f.b": (d,), "head.b": (v,)}
    for i in range(2):
        shapes.update({f"b{i}.qkv": (d, 3 * d), f"b{i}.proj": (d, d), f"b{i}.fc1": (d, f), f"b{i}.fc2": (f, d),
                       f"b{i}.ln1.g": (d,), f"b{i}.ln1.b": (d,), f"b{i}.ln2.g": (d,), f"b{i}.ln2.b": (d,),
                       f"b{i}.fc1.b": (f,), f"b{i}.fc2.b": (d,)})
    return shapes


def bench_transformer(repeat: int = 200) -> dict:
    rng = np.random.default_rng(0)
    shapes = transformer_shapes()
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    grads = {k: rng.standard_normal(s) for k, s in shapes.items()}
    opt = optim.adamw(LR, **HYPER)
    pure = {"params": params, "state": opt.init(params)}

    def step_pure():
        updates, pure["state"] = opt.update(grads, pure["state"], pure["params"])
        pure["params"] = optim.apply_updates(pure["params"], updates)

    inplace_params = {k: a.copy() for k, a in params.items()}
    inplace = {"state": opt.init(inplace_params)}

    def step_inplace():
        inplace["state"] = optim.adamw_step_inplace(inplace_params, grads, inplace["state"], LR, **HYPER)

    flat_params = optim.flat_params(params)
    flat_grads = optim.flat_params(grads)
    flat = {"state": opt.init(flat_params)}

    def step_flat():
        flat["state"] = optim.adamw_step_inplace(flat_params, flat_grads, flat["state"], LR, **HYPER)

    times = {"readable chain": best_time(step_pure, repeat), "inplace": best_time(step_inplace, repeat),
             "flat": best_time(step_flat, repeat)}
    # every implementation took the same number of steps from the same start
    for k in params:
        np.testing.assert_allclose(inplace_params[k], pure["params"][k], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(flat_params[k], pure["params"][k], rtol=1e-9, atol=1e-12)
    times.update(torch_times(params, grads, repeat))
    return {"entries": sum(a.size for a in params.values()), "arrays": len(params), **times}


def torch_times(params: dict, grads: dict, repeat: int) -> dict:
    try:
        import torch
    except ImportError:
        return {}
    out = {}
    for mode in ("foreach", "fused"):
        tensors = [torch.tensor(params[k], requires_grad=True) for k in sorted(params)]
        for t, k in zip(tensors, sorted(params)):
            t.grad = torch.tensor(grads[k])
        opt = torch.optim.AdamW(tensors, lr=LR, betas=(HYPER["beta1"], HYPER["beta2"]), eps=HYPER["eps"],
                                weight_decay=HYPER["weight_decay"], **{mode: True})
        out[f"torch {mode}"] = best_time(opt.step, repeat)
    return out


KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(2**31 - 1), "MALLOC_TRIM_THRESHOLD_": str(2**32)}


def main():
    tuned = all(os.environ.get(k) == v for k, v in KEEP_FREED_MEMORY.items())
    print("allocator keeps freed memory" if tuned else "glibc default allocator settings")
    # one bandwidth for both tables, measured by the parent process
    bandwidth = float(os.environ.get("STEPLAB_COPY_BANDWIDTH", 0.0)) or copy_bandwidth()
    print(f"copy bandwidth (np.copyto, 256 MB, read + write): {bandwidth / 1e9:.1f} GB/s")
    print(f"{'N':>6} {'implementation':<16} {'ms':>8} {'x bound':>8}")
    for n, repeat in ((1_000_000, 30), (10_000_000, 10)):
        result = bench(n, bandwidth, repeat)
        bound = result.pop("bound")
        label = f"{n // 1_000_000}M"
        print(f"{label:>6} {'bound (7 arrays)':<16} {bound * 1e3:8.2f} {1.0:8.2f}")
        for name, t in result.items():
            print(f"{label:>6} {name:<16} {t * 1e3:8.2f} {t / bound:8.2f}")
    if tuned:
        result = bench_transformer()
        print(f"\ntransformer scale: {result.pop('arrays')} float64 arrays, {result.pop('entries')} entries")
        print(f"{'implementation':<16} {'us':>8}")
        for name, t in result.items():
            print(f"{name:<16} {t * 1e6:8.0f}")
    if not tuned:
        print()
        sys.stdout.flush()
        subprocess.run([sys.executable, __file__], env={**os.environ, **KEEP_FREED_MEMORY, "STEPLAB_COPY_BANDWIDTH": repr(bandwidth)}, check=True)


if __name__ == "__main__":
    main()
