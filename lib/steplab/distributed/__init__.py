r"""Distributed and private SGD, simulated in one process.

Nothing here talks to a network: "workers" and "clients" are index sets into one finite-sum
problem (``n``, ``value``, ``grad_batch(theta, idx)``, ``per_example_grads(theta, idx)``), and
the communication a real system performs (an all-reduce of gradients, a round of model
averaging, a compressed message) is replaced by the arithmetic it computes. The simulations
therefore show what each scheme does to the *iterates*, exactly; what it costs in wall-clock
time is modelled separately in :mod:`steplab.batching`.

Modules: :mod:`~steplab.distributed.data_parallel`, :mod:`~steplab.distributed.federated`,
:mod:`~steplab.distributed.compression`; DP-SGD lives in :mod:`steplab.privacy` and is
re-exported here.

Simulations (return a :class:`~steplab.records.SimulationHistory`):
    :func:`simulate_data_parallel`  synchronous data-parallel SGD over K workers, with gradient
                                    accumulation and optional gradient compression
    :func:`simulate_local_sgd`      H local steps per round, then model averaging
    :func:`simulate_fedavg`         federated averaging over client data sets
    :func:`simulate_fedprox`        FedAvg with ``mu > 0``: the proximal term (mu/2)||theta - theta_global||^2
    :func:`simulate_dp_sgd`         DP-SGD: per-example clipping and Gaussian noise
One-step building blocks (usable on their own):
    :func:`accumulated_grad`, :func:`data_parallel_grad`, :func:`iid_shards`,
    :func:`client_drift`, :func:`top_k`, :func:`stochastic_quantize`,
    :func:`quantization_variance_bound`, :func:`error_feedback_step`, :func:`top_k_compressor`,
    :func:`quantize_compressor`, :func:`clip_per_example`, :func:`dp_sgd_gradient`.

Where an optimizer makes sense (the update applied to the averaged gradient, the server step
of federated averaging) any :mod:`steplab.optim` transformation may be passed; otherwise the
step is plain SGD with ``lr``.
"""

from ..privacy import clip_per_example, dp_sgd_gradient, simulate_dp_sgd
from ..records import SimulationHistory
from .compression import (
    error_feedback_step,
    quantization_variance_bound,
    quantize_compressor,
    stochastic_quantize,
    top_k,
    top_k_compressor,
)
from .data_parallel import accumulated_grad, data_parallel_grad, iid_shards, simulate_data_parallel
from .federated import client_drift, simulate_fedavg, simulate_fedprox, simulate_local_sgd

__all__ = [
    "SimulationHistory",
    "iid_shards",
    "accumulated_grad",
    "data_parallel_grad",
    "simulate_data_parallel",
    "simulate_local_sgd",
    "simulate_fedavg",
    "simulate_fedprox",
    "client_drift",
    "top_k",
    "stochastic_quantize",
    "quantization_variance_bound",
    "error_feedback_step",
    "top_k_compressor",
    "quantize_compressor",
    "clip_per_example",
    "dp_sgd_gradient",
    "simulate_dp_sgd",
]
