"""Shared helpers: the registered components and their compatible pairs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from vrbench import estimators, problems
from vrbench.testing import check_instance, sample_sizes


def compatible_pairs(unbiased_only: bool = False) -> list[tuple[str, str]]:
    """(estimator, problem) for every pair the conformance suite checks at some sample size."""
    pairs = []
    for e_name in estimators.registry.names():
        estimator = estimators.make(e_name)
        if unbiased_only and not estimator.unbiased:
            continue
        for p_name in problems.registry.names():
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


# The slow tier: ``make test`` (CI) runs every test, ``make test-fast`` (``pytest -m "not
# slow"``) all but these. Listed here, by file or by test function (every parametrization), so
# the tier is one list in one place; tests/test_tiers.py checks that each entry still names a
# test. Chosen by measurement (``pytest --durations=0``): a test is slow when it costs several
# seconds on 2 cores (processes killed or timed out, Dask clusters, pdflatex, whole sweeps,
# recipes run end to end, plugin packages installed) or when its file is dominated by such
# tests.
SLOW: tuple[str, ...] = (
)


def _slow(nodeid: str) -> bool:
    function = nodeid.split("[")[0]
    path = nodeid.split("::")[0]
    return any(entry in (function, path) for entry in SLOW)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _slow(item.nodeid):
            item.add_marker(pytest.mark.slow)
