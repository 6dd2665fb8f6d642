"""The side-by-side workloads and their three contenders: vrbench's harness path, the numpy
floor and the jitted JAX kernel, each warmed up and with its best batch size per call.

Used by ``benchmarks/side_by_side.py`` (interleaved rounds in one pinned process) and by the
pytest-benchmark run of ``make bench`` (``benchmarks/test_speed.py``). Importing this module
starts no thread pool; pin the process first (:mod:`benchmarks.pinning`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks import kernels
from vrbench import estimators, problems
from vrbench.bench.runner import estimate_in_chunks


@dataclass(frozen=True)
class Workload:
    estimator: str
    problem: str
    n: int

    @property
    def label(self) -> str:
        return f"{self.estimator}, {self.problem}, n = {self.n}"


WORKLOADS = (
    Workload("score_function", "bernoulli_toy", 16),
    Workload("score_function", "bernoulli_vector", 16),
    Workload("rloo", "bandit_bernoulli_k", 16),
    Workload("reparameterization", "gaussian_quadratic_10d", 16),
    Workload("reinforce_reward_to_go", "frozenlake", 4),
    Workload("lax", "gaussian_step", 4),
    Workload("reparameterization", "lqr_unstable", 4),
    Workload("disarm", "bernoulli_vector", 16),
)
"""The workloads of the side-by-side table: estimators and problems as the README names
them, each at the n of the comparison that motivated it."""

BATCHES = (1_000, 10_000, 100_000)


def _fitted(workload: Workload):
    problem = problems.make(workload.problem)
    estimator = estimators.make(workload.estimator)
    theta = problem.initial_theta()
    return problem, estimator, theta, estimator.fit(problem, theta,
                                                    torch.Generator().manual_seed(1))


def floor_extra(workload: Workload, state) -> dict:
    """What a floor or JAX kernel needs besides (R, n, rng): lax's surrogate, fitted by
    vrbench; the LQR system; FrozenLake's table."""
    if workload.estimator == "lax":
        return {"surrogate": [t.numpy() for t in state]}
    if workload.problem == "lqr_unstable":
        return {"system": kernels.lqr_system()}
    if workload.problem == "frozenlake":
        return {"table": kernels.frozenlake_table()}
    return {}


def vrbench_contender(workload: Workload, replicates: int):
    """``estimate_in_chunks``, the harness's path (its own chunk size), after fit and warm-up."""
    problem, estimator, theta, state = _fitted(workload)
    estimator.estimate(problem, theta, workload.n, 8, torch.Generator().manual_seed(2), state)

    def run():
        generator = torch.Generator().manual_seed(0)
        for _ in estimate_in_chunks(problem, estimator, theta, workload.n, replicates,
                                    generator, state):
            pass

    return run, None


def _fastest_batch(call: Callable[[int], object], sizes: list[int], rounds: int = 3) -> int:
    """The batch size whose one call ran fastest per estimate (best of ``rounds`` after a
    warm-up call): the rule :func:`benchmarks.jax_kernels.best_batch` applies to JAX, and a
    few calls per size rather than whole runs of R."""
    per_estimate = {}
    for size in sizes:
        call(size)
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            call(size)
            times.append((time.perf_counter() - start) / size)
        per_estimate[size] = min(times)
    return min(per_estimate, key=per_estimate.get)


def numpy_contender(workload: Workload, replicates: int):
    _, _, _, state = _fitted(workload)
    kernel = kernels.WORKLOAD_FLOOR[workload.estimator, workload.problem]
    extra = {k: v for k, v in floor_extra(workload, state).items() if k != "system"}
    rng = np.random.default_rng(0)

    def one_call(size: int) -> None:
        kernel(size, workload.n, rng, **extra).sum(0)

    def run():
        for done in range(0, replicates, chunk):
            one_call(min(chunk, replicates - done))

    chunk = _fastest_batch(one_call, [b for b in BATCHES if b <= replicates] or [replicates])
    return run, chunk


def jax_contender(workload: Workload, replicates: int):
    """The JAX kernel's run at its best batch size, and that size; raises ``ImportError``
    without JAX."""
    from benchmarks import jax_kernels

    jnp = jax_kernels.jnp

    _, _, theta, state = _fitted(workload)
    extra = floor_extra(workload, state)
    theta = jnp.asarray(theta.numpy())
    batch, kernel = jax_kernels.best_batch(
        lambda b: jax_kernels.make(workload.estimator, workload.problem, b, workload.n,
                                   **extra), theta, replicates)
    key = jax_kernels.jax.random.key(0)
    return (lambda: jax_kernels.run(kernel, theta, replicates, batch, key)), batch


CONTENDERS: dict[str, Callable] = {"vrbench": vrbench_contender, "numpy": numpy_contender,
                                   "jax": jax_contender}
"""``contender(workload, R) → (run, batch per call)``; ``run()`` computes R estimates."""
