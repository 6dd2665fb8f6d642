"""What a cell's time covers: a warm-up from a stream of its own, run only where the time is
kept, and a check of the estimates that costs one pass yet refuses every non-finite value."""

from __future__ import annotations

import math

import pytest
import torch

from vrbench import estimators, problems
from vrbench.bench import runner
from vrbench.bench.cells import Cell
from vrbench.components import Spec

CALLS: list[int] = []


class _Counting(estimators.make("score_function").__class__):
    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        CALLS.append(replicates)
        return super().estimate(problem, theta, n_samples, replicates, generator, state)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def test_the_warm_up_runs_only_where_the_time_is_kept_and_changes_no_metric(monkeypatch):
    monkeypatch.setattr(runner, "WARMUP_SECONDS", math.inf)  # the same calls on any machine
    problem = problems.make("bernoulli_toy")
    cell = Cell(Spec("bernoulli_toy"), Spec("score_function"), 4, 2000, 0)
    CALLS.clear()
    timed, _, _ = runner.measure(problem, _Counting(), cell)
    timed_calls = list(CALLS)
    CALLS.clear()
    untimed, _, _ = runner.measure(problem, _Counting(), cell, timed=False)
    chunk = runner.chunk_size(problem, 4, 2000)
    assert timed_calls == [chunk] * runner.WARMUP_CALLS + CALLS
    assert timed.keys() == untimed.keys()
    assert all(_same(timed[key], untimed[key]) for key in timed), \
        {key: (timed[key], untimed[key]) for key in timed if not _same(timed[key], untimed[key])}


def _check(values: torch.Tensor) -> torch.Tensor:
    problem = problems.make("bernoulli_vector")
    return runner.checked_estimates(values, estimators.make("score_function"), problem,
                                    values.shape[0])


def test_finite_estimates_whose_sum_overflows_pass():
    dim = problems.make("bernoulli_vector").dim
    large = torch.full((3, dim), 1e308, dtype=torch.float64)
    assert torch.equal(_check(large), large)


@pytest.mark.parametrize("scale", [1.0, 1e308])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_one_non_finite_value_is_refused(bad, scale):
    dim = problems.make("bernoulli_vector").dim
    values = torch.full((3, dim), scale, dtype=torch.float64)
    values[1, dim - 1] = bad
    with pytest.raises(FloatingPointError, match="score_function returned non-finite"):
        _check(values)
