"""Streaming statistics and cell metrics against direct computations and known truths."""

from __future__ import annotations

import math

import pytest
import torch

from tests.test_estimators import bernoulli_score_function_variance, gaussian_quadratic_variances
from vrbench import estimators, problems
from vrbench.bench.metrics import EstimateAccumulator, Moments, bias_test
from vrbench.problems.base import DTYPE
from vrbench.reports import format_interval


def test_chan_merge_equals_direct_moments(generator):
    data = torch.randn(1000, 5, generator=generator, dtype=DTYPE) * 3 + 7
    merged = Moments.empty(5)
    for part in torch.split(data, [1, 10, 300, 689]):
        merged = merged.merge(Moments.of(part))
    assert merged.count == 1000
    torch.testing.assert_close(merged.mean, data.mean(dim=0), rtol=1e-13, atol=0)
    torch.testing.assert_close(merged.variance(), data.var(dim=0), rtol=1e-12, atol=0)


def test_metrics_do_not_depend_on_chunking(generator):
    data = torch.randn(1001, 3, generator=generator, dtype=DTYPE)
    truth = torch.tensor([0.1, 0.0, -0.2], dtype=DTYPE)
    whole = EstimateAccumulator(truth, 1001)
    whole.update(data)
    pieces = EstimateAccumulator(truth, 1001)
    for part in torch.split(data, 97):
        pieces.update(part)
    for key, value in whole.metrics().items():
        assert pieces.metrics()[key] == pytest.approx(value, rel=1e-10), key


def test_metrics_match_direct_definitions(generator):
    data = torch.randn(500, 4, generator=generator, dtype=DTYPE) * 2 + 0.3
    truth = torch.tensor([0.3, 0.3, 0.0, 0.3], dtype=DTYPE)
    acc = EstimateAccumulator(truth, 500)
    acc.update(data)
    metrics = acc.metrics()
    assert metrics["variance"] == pytest.approx(float(data.var(dim=0).sum()), rel=1e-12)
    assert metrics["bias_norm"] == pytest.approx(float((data.mean(0) - truth).norm()), rel=1e-12)
    assert metrics["mse"] == pytest.approx(float(((data - truth) ** 2).sum(1).mean()), rel=1e-12)
    assert metrics["true_grad_norm"] == pytest.approx(float(truth.norm()))
    cosines = (data @ truth) / (data.norm(dim=1) * truth.norm())
    assert metrics["cosine"] == pytest.approx(float(cosines.mean()), rel=1e-12)


def test_wrong_number_of_estimates_is_an_error():
    acc = EstimateAccumulator(torch.zeros(2, dtype=DTYPE), 10)
    acc.update(torch.zeros(4, 2, dtype=DTYPE))
    with pytest.raises(RuntimeError, match="expected 10 estimates, got 4"):
        acc.metrics()


@pytest.mark.parametrize("case", ["bernoulli_score_function", "gaussian_pathwise"])
def test_variance_interval_covers_the_exact_variance_about_95_percent(case):
    """Over 400 independent cells, coverage of the exact variance is 95% ± 4.5 SE."""
    if case == "bernoulli_score_function":
        problem, estimator = problems.make("bernoulli_toy"), estimators.make("score_function")
        exact = bernoulli_score_function_variance(0.0, 0.499) / 4
    else:
        problem, estimator = (
            problems.make("gaussian_quadratic"),
            estimators.make("reparameterization"),
        )
        exact = gaussian_quadratic_variances(1.0, 1.5)[1] / 4
    cells, replicates = 400, 1000
    theta = problem.initial_theta()
    estimates = estimator.estimate(
        problem, theta, 4, cells * replicates, torch.Generator().manual_seed(7)
    )
    covered = 0
    for block in estimates.split(replicates):
        acc = EstimateAccumulator(problem.exact_grad(theta), replicates)
        acc.update(block)
        m = acc.metrics()
        covered += m["variance_ci_low"] <= exact <= m["variance_ci_high"]
    tolerance = 4.5 * math.sqrt(0.95 * 0.05 / cells)
    assert abs(covered / cells - 0.95) < tolerance


def _pvalue(estimates: torch.Tensor, truth: torch.Tensor) -> float:
    acc = EstimateAccumulator(truth, estimates.shape[0])
    acc.update(estimates)
    return acc.metrics()["bias_pvalue"]


@pytest.mark.parametrize("dim", [3, 40])
def test_bias_pvalue_is_calibrated_and_powerful(dim, generator):
    truth = torch.full((dim,), 0.1, dtype=DTYPE)
    pvalues = [_pvalue(torch.randn(200, dim, generator=generator, dtype=DTYPE) + truth, truth)
               for _ in range(400)]
    rejected = sum(p < 0.05 for p in pvalues) / 400
    # Bonferroni is conservative: at most 5% rejections (+4.5 SE), and not wildly fewer.
    assert 0.0 < rejected < 0.05 + 4.5 * math.sqrt(0.05 * 0.95 / 400)
    # A bias in one coordinate is caught in low dimension; in high dimension the test looks
    # at projections, which catch biases spread over many coordinates.
    shifted = torch.randn(200, dim, generator=generator, dtype=DTYPE) + truth
    if dim <= 16:
        shifted[:, 0] += 1.0
    else:
        shifted += 0.3 * torch.randn(dim, generator=generator, dtype=DTYPE)
    assert _pvalue(shifted, truth) < 1e-6
    assert _pvalue(1.2 * (torch.randn(200, dim, generator=generator, dtype=DTYPE) * 0.01 + truth),
                   truth) < 1e-6


def test_bias_pvalue_holds_its_level_when_replicates_come_in_identical_pairs(generator):
    """Each estimate twice in a row: the variance is right, but s²/N understates the variance
    of the mean by half. The batch means of contiguous groups do not, so a correct estimator
    is flagged at most at the nominal rate; the plain t-test would flag it far more often."""
    truth = torch.full((3,), 0.1, dtype=DTYPE)
    runs = 400
    pvalues, plain = [], []
    for _ in range(runs):
        estimates = (torch.randn(100, 3, generator=generator, dtype=DTYPE) + truth
                     ).repeat_interleave(2, dim=0)
        acc = EstimateAccumulator(truth, 200)
        acc.update(estimates)
        pvalues.append(acc.bias_test()[1])
        plain.append(bias_test(acc.projected, acc.directions @ truth)[1])
    bound = 0.05 + 4.5 * math.sqrt(0.05 * 0.95 / runs)
    assert sum(p < 0.05 for p in pvalues) / runs < bound
    assert sum(p < 0.05 for p in plain) / runs > bound


def test_a_references_standard_error_counts_in_both_bias_tests(generator):
    """Against a reference of standard error s, the plain and the batch-means t-tests compare
    in units of √(se² + s²): a mean 0.3 from a reference of s = 0.3 is no evidence of bias,
    though it is 6 of the mean's own standard errors; a reference's directions are used."""
    truth = torch.full((2,), 0.1, dtype=DTYPE)
    directions = torch.eye(2, dtype=DTYPE)
    estimates = torch.randn(400, 2, generator=generator, dtype=DTYPE) + truth + 0.3
    exact = EstimateAccumulator(truth, 400, directions, None)
    referenced = EstimateAccumulator(truth, 400, directions, torch.full((2,), 0.3, dtype=DTYPE))
    for accumulator in (exact, referenced):
        accumulator.update(estimates)
    assert torch.equal(referenced.directions, directions)
    assert exact.bias_test()[1] < 1e-6
    t_stat, pvalue = referenced.bias_test()
    assert t_stat < 1.5 and pvalue > 0.1
    # Deterministic estimates against an uncertain reference are tested, not compared exactly.
    constant = EstimateAccumulator(truth, 2, directions, torch.full((2,), 0.3, dtype=DTYPE))
    constant.update(torch.stack([truth + 0.3, truth + 0.3]))
    assert constant.bias_test()[1] > 0.1


def test_bias_test_of_deterministic_estimates():
    constant = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=DTYPE)
    assert _pvalue(constant, torch.tensor([1.0, 0.0], dtype=DTYPE)) == 1.0
    assert _pvalue(constant, torch.tensor([1.0, 0.5], dtype=DTYPE)) == 0.0


def test_bias_test_is_not_fooled_by_rare_event_coordinates(generator):
    """Coordinate 0 is noise plus rare large jumps never seen in this sample: its t-test
    alone would reject; the projections over 40 coordinates do not."""
    dim, count = 40, 10_000
    estimates = torch.randn(count, dim, generator=generator, dtype=DTYPE) * 1e-2
    estimates[:, 0] *= 1e-2
    truth = torch.full((dim,), 1e-3, dtype=DTYPE)
    estimates[:, 1:] += truth[1:]
    truth[0] = -6e-6  # carried by events of probability ~1e-5 per replicate
    z0 = abs(float(estimates[:, 0].mean() - truth[0])) / float(estimates[:, 0].std() / 100)
    assert z0 > 5
    assert _pvalue(estimates, truth) > 1e-3


@pytest.mark.parametrize(
    ("value", "low", "high", "text"),
    [
        (1.234e-3, 1.194e-3, 1.274e-3, "1.23(4)e-3"),
        (31.4, 30.2, 32.6, "3.14(12)e1"),
        (5.0, 4.0, 6.0, "5.0(10)e0"),
        (2.5, math.nan, math.nan, "2.500e0"),
    ],
)
def test_format_interval(value, low, high, text):
    assert format_interval(value, low, high) == text


def test_per_coordinate_variances_sum_to_the_trace_and_match_closed_forms():
    """Score function on gaussian_quadratic, one draw: Var[x² ε/σ] for μ and Var[x²(ε²−1)/σ]
    for σ in closed form (the two terms of gaussian_quadratic_variances), each within 4.5
    standard errors of its batch-means interval."""
    from vrbench.bench.cells import Cell
    from vrbench.bench.runner import run_cell
    from vrbench.components import Spec

    mu, sigma = 1.0, 1.5
    row = run_cell(Cell(Spec("gaussian_quadratic"), Spec("score_function"), 1, 40_000, 3))
    assert row["status"] == "ok", row["error"]
    exact = [(mu**4 + 18 * mu**2 * sigma**2 + 15 * sigma**4) / sigma**2 - 4 * mu**2,
             (2 * mu**4 + 60 * mu**2 * sigma**2 + 78 * sigma**4) / sigma**2 - 4 * sigma**2]
    assert sum(exact) == pytest.approx(gaussian_quadratic_variances(mu, sigma)[0])
    assert sum(row["coordinate_variance"]) == pytest.approx(row["variance"], rel=1e-12)
    assert row["true_grad"] == pytest.approx([2 * mu, 2 * sigma])
    assert math.hypot(*row["coordinate_bias"]) == pytest.approx(row["bias_norm"], rel=1e-12)
    t_quantile = 2.04  # t_{0.975, 31}: the half-width is this many standard errors
    for k, value in enumerate(exact):
        low, high = row["coordinate_variance_ci_low"][k], row["coordinate_variance_ci_high"][k]
        standard_error = (high - low) / 2 / t_quantile
        assert abs(row["coordinate_variance"][k] - value) < 4.5 * standard_error, k
