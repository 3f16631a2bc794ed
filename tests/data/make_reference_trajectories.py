"""Record reference trajectories of torch.optim and Optax for tests/test_reference_trajectories.py.

torch and optax are not dependencies of steplab: run this script in a separate environment
where they are installed, outside the project's own venv, for example

    python3 -m venv ../refenv && ../refenv/bin/pip install torch optax numpy
    ../refenv/bin/python tests/data/make_reference_trajectories.py

It writes one ``ref_<config>_<dtype>.npz`` per configuration into this folder. Each file holds
the starting parameters ``p0/<key>``, the gradient of every step ``g/<key>`` (shape
``(STEPS, *shape)``) and the parameters after every step ``p/<key>``, for dict parameters
with a matrix, a vector and a 3-D array. The gradients are a fixed function of the reference
iterate (a quadratic pull plus seeded noise), all zero at step ``ZERO_STEP`` and zero for
one array at step ``ZERO_KEY_STEP``; the test replays them, so it needs neither torch nor
optax.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

STEPS = 100
ZERO_STEP = 40  # every gradient is zero at this step
ZERO_KEY_STEP = 70  # the gradient of "b" alone is zero at this step
SHAPES = {"b": (5,), "k": (2, 3, 4), "w": (6, 5)}
HERE = Path(__file__).resolve().parent

# name -> (library, reference constructor name, reference kwargs, steplab constructor, steplab kwargs)
CONFIGS = {
    "sgd_momentum": ("torch", "SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01),
                     "sgd", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    "sgd_nesterov": ("torch", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
                     "sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "adagrad": ("torch", "Adagrad", dict(lr=0.1, eps=1e-10, initial_accumulator_value=0.1, weight_decay=0.01),
                "adagrad", dict(lr=0.1, eps=1e-10, initial_accumulator_value=0.1, weight_decay=0.01)),
    "rmsprop_centered": ("torch", "RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-8, centered=True, weight_decay=0.01),
                         "rmsprop", dict(lr=0.01, alpha=0.9, eps=1e-8, centered=True, weight_decay=0.01)),
    "rmsprop_momentum": ("torch", "RMSprop", dict(lr=0.01, alpha=0.99, eps=1e-8, momentum=0.9),
                         "rmsprop", dict(lr=0.01, alpha=0.99, eps=1e-8, momentum=0.9)),
    "adam": ("torch", "Adam", dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01),
             "adam", dict(lr=0.01, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.01)),
    "adam_amsgrad": ("torch", "Adam", dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, amsgrad=True),
                     "adam", dict(lr=0.01, beta1=0.9, beta2=0.99, eps=1e-8, amsgrad=True)),
    "adamw": ("torch", "AdamW", dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
              "adamw", dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)),
    "adafactor": ("optax", "adafactor", dict(learning_rate=0.01, min_dim_size_to_factor=3),
                  "adafactor", dict(lr=0.01, min_dim_size_to_factor=3)),
    "adafactor_momentum": ("optax", "adafactor",
                           dict(learning_rate=0.01, min_dim_size_to_factor=3, momentum=0.9,
                                weight_decay_rate=0.01, clipping_threshold=0.5),
                           "adafactor", dict(lr=0.01, min_dim_size_to_factor=3, momentum=0.9,
                                             weight_decay=0.01, clipping_threshold=0.5)),
    "lars": ("optax", "lars", dict(learning_rate=0.1, weight_decay=0.01, trust_coefficient=0.01, momentum=0.9),
             "lars", dict(lr=0.1, weight_decay=0.01, trust_coefficient=0.01, momentum=0.9)),
    "lamb": ("optax", "lamb", dict(learning_rate=0.01, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01),
             "lamb", dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.01)),
}


def gradient(params: dict, step: int, rng: np.random.Generator) -> dict:
    """The gradient at the reference iterate: a pull towards 1 plus noise, with zero steps."""
    noise = {k: rng.standard_normal(SHAPES[k]) for k in sorted(SHAPES)}  # drawn every step
    if step == ZERO_STEP:
        return {k: np.zeros(SHAPES[k]) for k in SHAPES}
    g = {k: 0.5 * (params[k] - 1.0) + 0.3 * noise[k] for k in sorted(SHAPES)}
    if step == ZERO_KEY_STEP:
        g["b"] = np.zeros(SHAPES["b"])
    return g


def run_torch(name: str, kwargs: dict, p0: dict, dtype):
    import torch

    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tensors = {k: torch.tensor(p0[k], dtype=tdtype, requires_grad=True) for k in sorted(p0)}
    opt = getattr(torch.optim, name)([tensors[k] for k in sorted(tensors)], **kwargs)
    rng = np.random.default_rng(0)
    grads, traj = [], []
    for t in range(STEPS):
        g = gradient({k: v.detach().numpy().astype(np.float64) for k, v in tensors.items()}, t, rng)
        g = {k: v.astype(dtype) for k, v in g.items()}
        for k, v in tensors.items():
            v.grad = torch.tensor(g[k], dtype=tdtype)
        opt.step()
        grads.append(g)
        traj.append({k: v.detach().numpy().copy() for k, v in tensors.items()})
    return grads, traj


def run_optax(name: str, kwargs: dict, p0: dict, dtype):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import optax

    if name == "adafactor" and dtype == np.float64:
        # Optax computes Adafactor's decay 1 - (t + 1)^(-0.8) and keeps its momentum in float32
        # whatever the parameters' dtype; for the float64 fixtures both are done in float64,
        # the same math as steplab's, so the comparison tests the rule and not float32 rounding.
        from optax._src import factorized

        def decay_rate_pow(i, exponent=0.8):
            return 1.0 - jnp.asarray(i + 1, jnp.float64) ** (-exponent)

        plain = factorized.scale_by_factored_rms
        factorized.scale_by_factored_rms = lambda *a, **k: plain(*a, decay_rate_fn=decay_rate_pow, **k)
        try:
            opt = optax.adafactor(**dict(kwargs, dtype_momentum=jnp.float64))
        finally:
            factorized.scale_by_factored_rms = plain
    else:
        opt = getattr(optax, name)(**kwargs)
    params = {k: jnp.asarray(p0[k], dtype=dtype) for k in p0}
    state = opt.init(params)
    rng = np.random.default_rng(0)
    grads, traj = [], []
    for t in range(STEPS):
        g = gradient({k: np.asarray(v, dtype=np.float64) for k, v in params.items()}, t, rng)
        g = {k: v.astype(dtype) for k, v in g.items()}
        updates, state = opt.update({k: jnp.asarray(v) for k, v in g.items()}, state, params)
        params = optax.apply_updates(params, updates)
        grads.append(g)
        traj.append({k: np.asarray(v).copy() for k, v in params.items()})
    return grads, traj


def main() -> None:
    p0_64 = {k: np.random.default_rng(1).standard_normal(SHAPES[k]) for k in sorted(SHAPES)}
    for name, (library, ref, ref_kwargs, ours, our_kwargs) in CONFIGS.items():
        for dtype in (np.float64, np.float32):
            p0 = {k: v.astype(dtype) for k, v in p0_64.items()}
            runner = run_torch if library == "torch" else run_optax
            grads, traj = runner(ref, ref_kwargs, p0, dtype)
            arrays = {f"p0/{k}": p0[k] for k in p0}
            for k in p0:
                arrays[f"g/{k}"] = np.stack([g[k] for g in grads])
                arrays[f"p/{k}"] = np.stack([p[k] for p in traj])
            meta = dict(library=library, reference=ref, reference_kwargs=ref_kwargs, optimizer=ours,
                        kwargs=our_kwargs, steps=STEPS, zero_step=ZERO_STEP, zero_key_step=ZERO_KEY_STEP)
            arrays["meta"] = np.array(json.dumps(meta))
            out = HERE / f"ref_{name}_{np.dtype(dtype).name}.npz"
            np.savez_compressed(out, **arrays)
            print(f"{out.name}: {out.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
