"""vrbench, the numpy floor and a jitted JAX kernel on the same workloads, side by side.

Every contender runs in this one process, pinned to one core with one thread (as a single CLI
cell with ``--threads 1`` runs), warmed up, with its best batch size per call; rounds
interleave the contenders in a rotating order, and the table reports medians over rounds in
µs per estimate with vrbench's ratios to JAX and to the floor (the targets: ≤ 1.2× and
≤ 1.5×). On a shared machine, compare the ratios, which are measured side by side, more than
the absolute times. Run from the repository root:

    .venv/bin/python benchmarks/side_by_side.py                 # every workload, R = 10⁴, 10⁶
    .venv/bin/python benchmarks/side_by_side.py -w lax -R 1000000 --rounds 7

Without JAX installed the JAX column reads "—".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import pinning  # pins before numpy, torch and JAX start their threads

CORE = pinning.pin()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks import kernels  # noqa: E402
from vrbench import estimators, problems  # noqa: E402
from vrbench.bench.runner import estimate_in_chunks  # noqa: E402


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
    problem, estimator, theta, state = _fitted(workload)
    estimator.estimate(problem, theta, workload.n, 8, torch.Generator().manual_seed(2), state)

    def run():
        generator = torch.Generator().manual_seed(0)
        for _ in estimate_in_chunks(problem, estimator, theta, workload.n, replicates,
                                    generator, state):
            pass

    return run


def _fastest(candidates: dict, rounds: int = 3):
    """The candidate callable that ran fastest (best of ``rounds``), and its key."""
    timings = {}
    for key, call in candidates.items():
        call()
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        timings[key] = min(times)
    best = min(timings, key=timings.get)
    return best, candidates[best]


def numpy_contender(workload: Workload, replicates: int):
    _, _, _, state = _fitted(workload)
    kernel = kernels.WORKLOAD_FLOOR[workload.estimator, workload.problem]
    extra = {k: v for k, v in floor_extra(workload, state).items() if k != "system"}
    rng = np.random.default_rng(0)

    def streamed(chunk: int):
        def run():
            for done in range(0, replicates, chunk):
                kernel(min(chunk, replicates - done), workload.n, rng, **extra).sum(0)
        return run

    sizes = [b for b in BATCHES if b <= replicates] or [replicates]
    chunk, run = _fastest({size: streamed(size) for size in sizes})
    return run, chunk


def jax_contender(workload: Workload, replicates: int):
    try:
        from benchmarks import jax_kernels
    except ImportError:
        return None, None
    import jax.numpy as jnp

    _, _, theta, state = _fitted(workload)
    extra = floor_extra(workload, state)
    theta = jnp.asarray(theta.numpy())
    batch, kernel = jax_kernels.best_batch(
        lambda b: jax_kernels.make(workload.estimator, workload.problem, b, workload.n,
                                   **extra), theta, replicates)
    key = jax_kernels.jax.random.key(0)
    return (lambda: jax_kernels.run(kernel, theta, replicates, batch, key)), batch


def measure(workload: Workload, replicates: int, rounds: int) -> dict:
    vrbench = vrbench_contender(workload, replicates)
    floor, floor_chunk = numpy_contender(workload, replicates)
    jax_run, jax_batch = jax_contender(workload, replicates)
    contenders = {"vrbench": vrbench, "numpy": floor}
    if jax_run is not None:
        contenders["jax"] = jax_run
    calls = max(1, 200_000 // replicates)  # ≥ 2·10⁵ estimates per timing
    for run in contenders.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for index in range(rounds):
        order = names[index % len(names):] + names[: index % len(names)]
        for name in order:
            start = time.perf_counter()
            for _ in range(calls):
                contenders[name]()
            times[name].append((time.perf_counter() - start) / (calls * replicates))
    result = {name: statistics.median(values) * 1e6 for name, values in times.items()}
    result.update(floor_chunk=floor_chunk, jax_batch=jax_batch,
                  spread={name: (min(v) * 1e6, max(v) * 1e6) for name, v in times.items()})
    return result


def _cell(result: dict, name: str) -> str:
    if name not in result:
        return "—"
    low, high = result["spread"][name]
    return f"{result[name]:.3g} ({low:.3g}–{high:.3g})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-w", "--workload", action="append", default=[],
                        help="only workloads whose label contains this (repeatable)")
    parser.add_argument("-R", "--replicates", type=int, action="append", default=[])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    chosen = [w for w in WORKLOADS
              if not args.workload or any(part in w.label for part in args.workload)]
    sizes = args.replicates or [10_000, 1_000_000]
    print(f"core {CORE}, torch threads {torch.get_num_threads()}, {args.rounds} rounds, "
          "µs per estimate (median; min–max over rounds)\n")
    print("| workload | R | vrbench | JAX | numpy | ×JAX | ×numpy |")
    print("|---|---|---|---|---|---|---|")
    for workload in chosen:
        for replicates in sizes:
            r = measure(workload, replicates, args.rounds)
            jax_time = r.get("jax")
            print(f"| {workload.label} | {replicates:,} | {_cell(r, 'vrbench')} "
                  f"| {_cell(r, 'jax')} | {_cell(r, 'numpy')} | "
                  + (f"{r['vrbench'] / jax_time:.2f}" if jax_time else "—")
                  + f" | {r['vrbench'] / r['numpy']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
