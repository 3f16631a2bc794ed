"""The named optimizers against torch.optim and Optax, at every one of 100 steps.

The fixtures come from tests/data/make_reference_trajectories.py (run where torch and optax are
installed); they store the gradient of every step, so this test replays the same gradients
through steplab and compares the parameters after each step, including a step whose
gradients are all zero and one where a single array's gradient is zero, in float64 and float32.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from steplab import optim

DATA = Path(__file__).resolve().parent / "data"
FIXTURES = sorted(DATA.glob("ref_*.npz"))
# float32 references accumulate their own rounding over 100 steps
RTOL = {"float64": 1e-10, "float32": 2e-4}
ATOL = {"float64": 1e-12, "float32": 2e-5}


def _load(path):
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        keys = sorted(k[3:] for k in z.files if k.startswith("p0/"))
        p0 = {k: z[f"p0/{k}"] for k in keys}
        grads = {k: z[f"g/{k}"] for k in keys}
        traj = {k: z[f"p/{k}"] for k in keys}
    return meta, p0, grads, traj


def test_every_named_optimizer_has_fixtures():
    named = {json.loads(str(np.load(p)["meta"]))["optimizer"] for p in FIXTURES}
    assert named == {"sgd", "adagrad", "rmsprop", "adam", "adamw", "adafactor", "lars", "lamb"}
    assert {p.stem.rsplit("_", 1)[1] for p in FIXTURES} == {"float64", "float32"}


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem[4:] for p in FIXTURES])
def test_same_parameters_after_every_step(path):
    meta, p0, grads, traj = _load(path)
    dtype = path.stem.rsplit("_", 1)[1]
    opt = getattr(optim, meta["optimizer"])(**meta["kwargs"])
    params = {k: v.copy() for k, v in p0.items()}
    state = opt.init(params)
    zero = meta["zero_step"]
    assert all(not grads[k][zero].any() for k in grads)
    for t in range(meta["steps"]):
        g = {k: grads[k][t] for k in grads}
        updates, state = opt.update(g, state, params)
        params = optim.apply_updates(params, updates)
        for k in params:
            assert params[k].dtype == np.dtype(dtype)
            np.testing.assert_allclose(
                params[k], traj[k][t], rtol=RTOL[dtype], atol=ATOL[dtype],
                err_msg=f"{path.stem}: params[{k!r}] after step {t + 1}",
            )
