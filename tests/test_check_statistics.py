"""The conformance checks' statistics on data whose truth is known: their false-alarm rate at
a level where it can be counted, and what they must see."""

from __future__ import annotations

import math

import torch

from vrbench.problems.base import DTYPE
from vrbench.testing.report import CheckReport, PowerRecord
from vrbench.testing.statistics import call_size_test, correlation_test, mean_test

RUNS = 200
ALPHA = 0.05
BOUND = ALPHA + 4.5 * math.sqrt(ALPHA * (1 - ALPHA) / RUNS)


def _heavy(shape, generator) -> torch.Tensor:
    """Independent, skewed, heavy-tailed draws (centred lognormals, kurtosis 8) in 3
    directions."""
    return torch.exp(0.6 * torch.randn(shape, generator=generator, dtype=DTYPE)) - math.exp(0.18)


def test_the_correlation_test_holds_its_level_on_independent_heavy_tailed_replicates(generator):
    rejected = 0
    for _ in range(RUNS):
        arms = {"one call": [_heavy((512, 3), generator)],
                "calls of 2": [_heavy((2, 3), generator) for _ in range(64)]}
        rejected += not correlation_test(arms, alpha=ALPHA).passed
    assert rejected / RUNS < BOUND


def test_the_correlation_test_sees_pairs_and_halves_but_not_independent_calls(generator):
    pairs = _heavy((256, 3), generator).repeat_interleave(2, dim=0)
    assert not correlation_test({"one call": [pairs]}).passed
    halves = [torch.cat([x, x]) for x in (_heavy((1, 3), generator) for _ in range(128))]
    test = correlation_test({"calls of 2": halves})
    assert not test.passed and test.rows[test.worst[0]] == ("calls of 2", 1)
    independent = [_heavy((4, 3), generator) for _ in range(128)]
    assert correlation_test({"calls of 4": independent}).passed


def test_the_call_size_test_holds_its_level_and_sees_a_variance_that_depends_on_the_call(
        generator):
    rejected = 0
    for _ in range(RUNS):
        test = call_size_test(_heavy((2048, 3), generator),
                              {"calls of 1": _heavy((512, 3), generator)}, alpha=ALPHA)
        rejected += not test.passed
    assert rejected / RUNS < BOUND
    wider = call_size_test(_heavy((2048, 3), generator),
                           {"calls of 1": 2 * _heavy((512, 3), generator)})
    assert not wider.passed and wider.worst[0] == "calls of 1"


def test_a_mean_test_draws_the_same_count_whatever_the_clock(generator):
    """The count comes from the pilot's spread and the cap: the same seeds, the same sample."""

    def draw(count, g):
        for size in (count // 2, count - count // 2):
            yield torch.randn(size, 2, generator=g, dtype=DTYPE) + 1.0

    def run():
        return mean_test(draw, torch.ones(2, dtype=DTYPE), torch.ones(2, dtype=DTYPE), 0.05,
                         (torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)),
                         max_count=10**6)

    first, second = run(), run()
    assert first.count == second.count == first.planned and not first.stopped
    assert torch.equal(first.mean, second.mean)
    assert first.reached and first.passed and first.dispersion is not None
    assert not first.dependent


def test_a_mean_test_sees_calls_whose_replicates_share_randomness(generator):
    """Each call's draws share one random offset: their means vary far more than independent
    draws' would, and the test says so instead of reporting a bias."""

    def draw(count, g):
        for size in (count // 4,) * 3 + (count - 3 * (count // 4),):
            yield (torch.randn(size, 1, generator=g, dtype=DTYPE)
                   + torch.randn(1, 1, generator=g, dtype=DTYPE))

    test = mean_test(draw, torch.zeros(1, dtype=DTYPE), torch.ones(1, dtype=DTYPE), 0.05,
                     (torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)),
                     max_count=50_000)
    assert test.dependent


def test_the_call_size_test_does_not_separate_equal_estimates_by_their_last_bits(generator):
    """Estimates with few distinct values tie in most places; the same value computed in
    calls of two sizes may differ in its last bit (another kernel), which must not break every
    tie the same way. A spread twice as wide is still seen."""
    values = torch.tensor([-1.0, 0.1, 0.3, 2.0], dtype=DTYPE)

    def draw(count):
        return values[torch.randint(4, (count, 3), generator=generator)]

    last_bit = draw(512) * (1 + 4 * torch.finfo(DTYPE).eps)
    assert call_size_test(draw(16_384), {"calls of 2": last_bit}).passed
    wider = call_size_test(draw(16_384), {"calls of 2": 2 * draw(512)})
    assert not wider.passed


def test_the_summary_gives_the_smallest_and_largest_detectable_bias_where_1_percent_was_missed():
    report = CheckReport("estimator x", power=[
        PowerRecord("unbiased", "taxi", 1, 0.16, 0.01),
        PowerRecord("unbiased", "taxi", 16, 0.10, 0.01),
        PowerRecord("unbiased", "taxi", 2, 0.12, 0.01),
        PowerRecord("unbiased", "bernoulli_toy", 1, 0.008, 0.01),
    ])
    (line,) = report.summary_lines()
    assert "at every n on 1 of 2 problem(s)" in line
    assert line.endswith("the smallest detectable deviation was taxi 10.0% at n=16 to 16.0% at n=1")
