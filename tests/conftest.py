"""Shared helpers: the registered components and their compatible pairs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from vrbench import estimators, problems
from vrbench.testing import check_instance, sample_sizes

MATRIX_SIBLINGS = {"binary_vae_linear": "binary_vae_nonlinear"}
"""Problems whose estimator pairs the matrix leaves to a sibling that runs the same code:
binary_vae_linear is binary_vae_nonlinear without its hidden layers (each pair costs seconds,
and both problems pass the problem conformance suite)."""


def compatible_pairs(unbiased_only: bool = False) -> list[tuple[str, str]]:
    """(estimator, problem) for every pair the conformance suite checks at some sample size."""
    pairs = []
    for e_name in estimators.registry.names():
        estimator = estimators.make(e_name)
        if unbiased_only and not estimator.unbiased:
            continue
        for p_name in problems.registry.names():
            if p_name in MATRIX_SIBLINGS:
                continue
            problem = check_instance(p_name)
            if any(estimator.incompatibility(problem, n) is None
                   for n in sample_sizes(estimator)):
                pairs.append((e_name, p_name))
    return pairs


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(20261129)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run torch on one thread, as ``vrbench check`` does: the conformance suite's many small
    tensor operations are slower on more threads when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
