"""Speed of vrbench's batched estimators against the naive loop and the numpy floor.

Run with ``make bench``; ``python benchmarks/report.py`` then turns the JSON into the table
of ``benchmarks/README.md``. Every benchmark records ``replicates`` in ``extra_info`` so
times convert to estimates per second. Nothing here asserts a time.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import kernels
from vrbench import estimators, problems
from vrbench.bench.runner import estimate_in_chunks

N_SAMPLES = 4
CASES = [(e, p) for p in ("bernoulli_toy", "bandit_gaussian_10", "frozenlake",
                          "sigmoid_belief_vae_digits")
         for e in ("score_function", "rloo")]
REPLICATES = {"bernoulli_toy": (10_000, 1_000_000), "bandit_gaussian_10": (10_000, 1_000_000),
              "frozenlake": (10_000, 100_000), "sigmoid_belief_vae_digits": (1_000, 10_000)}
NAIVE_REPLICATES = {"bernoulli_toy": 200, "bandit_gaussian_10": 200, "frozenlake": 20}
FLOOR = {"bernoulli_toy": kernels.floor_bernoulli, "bandit_gaussian_10": kernels.floor_bandit,
         "frozenlake": kernels.floor_frozenlake}


def _run_vrbench(estimator, problem, theta, replicates):
    generator = torch.Generator().manual_seed(0)
    for _ in estimate_in_chunks(problem, estimator, theta, N_SAMPLES, replicates, generator):
        pass


@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize(("estimator_name", "problem_name"), CASES)
def test_vrbench(benchmark, estimator_name, problem_name, size):
    estimator, problem = estimators.make(estimator_name), problems.make(problem_name)
    replicates = REPLICATES[problem_name][size == "large"]
    benchmark.group = f"{problem_name} {estimator_name}"
    benchmark.extra_info.update(replicates=replicates, kind="vrbench")
    benchmark.pedantic(_run_vrbench, args=(estimator, problem, problem.initial_theta(),
                                           replicates), rounds=3, warmup_rounds=1)


@pytest.mark.parametrize(("estimator_name", "problem_name"),
                         [c for c in CASES if c[1] in FLOOR])
def test_numpy_floor(benchmark, estimator_name, problem_name):
    replicates = REPLICATES[problem_name][0]
    rng = np.random.default_rng(0)
    extra = {"table": kernels.frozenlake_table()} if problem_name == "frozenlake" else {}
    benchmark.group = f"{problem_name} {estimator_name}"
    benchmark.extra_info.update(replicates=replicates, kind="numpy floor")
    benchmark.pedantic(FLOOR[problem_name], args=(estimator_name, replicates, N_SAMPLES, rng),
                       kwargs=extra, rounds=3, warmup_rounds=1)


@pytest.mark.parametrize(("estimator_name", "problem_name"),
                         [c for c in CASES if c[1] in kernels.NAIVE])
def test_naive_loop(benchmark, estimator_name, problem_name):
    replicates = NAIVE_REPLICATES[problem_name]
    benchmark.group = f"{problem_name} {estimator_name}"
    benchmark.extra_info.update(replicates=replicates, kind="naive loop")
    benchmark.pedantic(kernels.naive, args=(problem_name, estimator_name, replicates,
                                            N_SAMPLES), rounds=1, warmup_rounds=0)
