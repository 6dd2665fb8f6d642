"""Throughput of the built-in estimators (pytest-benchmark; run with ``make bench``).

Each benchmark produces ``REPLICATES`` estimates from ``N_SAMPLES`` draws in one batched call;
divide the mean time by ``REPLICATES`` for the time per estimate.
"""

from __future__ import annotations

import pytest
import torch

from vrbench import estimators, problems

REPLICATES = 10_000
N_SAMPLES = 4
CASES = [
    ("score_function", "bernoulli_toy"),
    ("rloo", "bernoulli_toy"),
    ("score_function", "bandit_gaussian_10"),
    ("rloo", "bandit_gaussian_10"),
    ("score_function", "frozenlake"),
    ("rloo", "frozenlake"),
    ("reparameterization", "gaussian_quadratic"),
]


@pytest.mark.parametrize(("estimator_name", "problem_name"), CASES)
def test_batched_estimates(benchmark, estimator_name, problem_name):
    estimator = estimators.make(estimator_name)
    problem = problems.make(problem_name)
    theta = problem.initial_theta()
    generator = torch.Generator().manual_seed(0)
    benchmark.extra_info["replicates"] = REPLICATES
    result = benchmark(estimator.estimate, problem, theta, N_SAMPLES, REPLICATES, generator)
    assert result.shape == (REPLICATES, problem.dim)
