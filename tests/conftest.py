"""Shared helpers: the registered components and their compatible pairs."""

from __future__ import annotations

import pytest
import torch

from vrbench import estimators, problems


def compatible_pairs(unbiased_only: bool = False) -> list[tuple[str, str, int]]:
    """(estimator, problem, n_samples) for every compatible pair, n the smallest allowed >= 2."""
    pairs = []
    for e_name in estimators.registry.names():
        estimator = estimators.make(e_name)
        if unbiased_only and not estimator.unbiased:
            continue
        n = max(2, estimator.min_samples)
        for p_name in problems.registry.names():
            if estimator.incompatibility(problems.make(p_name), n) is None:
                pairs.append((e_name, p_name, n))
    return pairs


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(20261129)
