"""Exact variances (vrbench.bench.exact) against independent references, and the measured
variance of every cell where one is defined against it."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from tests.test_estimators import bernoulli_score_function_variance, gaussian_quadratic_variances
from vrbench import estimators, problems
from vrbench.bench.config import SweepConfig
from vrbench.bench.exact import exact_variance
from vrbench.bench.sweep import run_sweep
from vrbench.components import Spec


def _exact(problem_name: str, estimator_name: str, n: int, params: dict | None = None):
    problem = problems.make(problem_name, params)
    estimator = estimators.make(estimator_name)
    theta = problem.initial_theta()
    state = estimator.fit(problem, theta, torch.Generator().manual_seed(1))
    return exact_variance(problem, estimator, theta, n, state)


@pytest.mark.parametrize("n", [1, 4])
def test_closed_forms(n):
    score, pathwise = gaussian_quadratic_variances(1.0, 1.5)
    assert _exact("gaussian_quadratic", "score_function", n).trace == pytest.approx(score / n,
                                                                                   rel=1e-10)
    assert _exact("gaussian_quadratic", "reparameterization", n).trace == pytest.approx(
        pathwise / n, rel=1e-10)
    bernoulli = bernoulli_score_function_variance(0.0, 0.499) / n
    assert _exact("bernoulli_toy", "score_function", n).trace == pytest.approx(bernoulli,
                                                                              rel=1e-10)


def test_a_step_by_scipy_quadrature():
    """Score function on gaussian_step, one draw: E[f² s²] − (∇J)² per coordinate, with
    s = (ε/σ, (ε² − 1)/σ), integrated by scipy over x beyond the step (where f = 1)."""
    mu, sigma = 0.5, 1.0
    density = stats.norm(mu, sigma).pdf
    second = [integrate.quad(lambda x, k=k: density(x) * (((x - mu) / sigma) / sigma if k == 0
                                                           else (((x - mu) / sigma) ** 2 - 1)
                                                           / sigma) ** 2, 0, np.inf)[0]
              for k in (0, 1)]
    z = mu / sigma
    grad = [stats.norm.pdf(z) / sigma, -stats.norm.pdf(z) * mu / sigma**2]
    reference = [s - g**2 for s, g in zip(second, grad, strict=True)]
    exact = _exact("gaussian_step", "score_function", 1)
    np.testing.assert_allclose(exact.per_coordinate, reference, rtol=1e-9)


def test_rloo_by_brute_force_enumeration():
    """RLOO on the Bernoulli toy with n = 3, every triple of outcomes written out in numpy:
    ĝ = (1/(n(n−1))) Σ_j (n f_j − Σ_k f_k)(b_j − p)."""
    t, theta, n = 0.3, 0.6, 3
    p = 1 / (1 + math.exp(-theta))
    values, weights = [], []
    for bits in itertools.product([0, 1], repeat=n):
        f = np.array([(b - t) ** 2 for b in bits])
        g = sum((n * f[j] - f.sum()) * (bits[j] - p) for j in range(n)) / (n * (n - 1))
        values.append(g)
        weights.append(np.prod([p if b else 1 - p for b in bits]))
    values, weights = np.array(values), np.array(weights)
    mean = weights @ values
    reference = weights @ (values - mean) ** 2
    exact = _exact("bernoulli_toy", "rloo", n, {"t": 0.3, "theta": 0.6})
    assert exact.trace == pytest.approx(reference, rel=1e-12)


def test_estimators_that_draw_otherwise_get_none():
    """ARM draws its own uniforms; the pathwise estimator on the 10-d Gaussian is neither
    enumerable nor univariate."""
    assert _exact("bernoulli_toy", "arm", 2) is None
    assert _exact("gaussian_quadratic_10d", "reparameterization", 2) is None
    assert _exact("frozenlake", "score_function", 2) is None


EXACT_PROBLEMS = ["bernoulli_toy:t=0.3,theta=0.6", "bernoulli_vector:D=3", "categorical_target",
                  "bandit_bernoulli_k", "gaussian_quadratic", "gaussian_step", "gaussian_abs",
                  "gaussian_cosine", "categorical_potts"]
EXACT_ESTIMATORS = ["score_function", "score_function_baseline", "score_function_optimal_baseline",
                    "score_function_ema_baseline", "rloo", "reparameterization", "delta_method",
                    "muprop", "mvd_bernoulli", "indecater", "exact_enumeration"]


def test_the_measured_variance_covers_the_exact_one_on_every_cell_where_it_is_defined(
        tmp_path):
    """Within 4.5 standard errors of the batch-means interval (exact estimators: to rounding)."""
    from vrbench.components import parse_specs

    config = SweepConfig(
        estimators=[Spec(name) for name in EXACT_ESTIMATORS],
        problems=[s for text in EXACT_PROBLEMS for s in parse_specs(text)],
        n_samples=[1, 3], replicates=4000, seeds=[0], jobs=1, output=str(tmp_path))
    frame = run_sweep(config).frame
    cells = frame[(frame["status"] == "ok") & frame["exact_variance"].notna()]
    assert len(cells) >= 100, len(cells)
    t_quantile = stats.t.ppf(0.975, df=31)
    for row in cells.itertuples(index=False):
        where = f"{row.problem} {row.estimator} n={row.n_samples}"
        if row.exact_variance <= 1e-12 * row.true_grad_norm**2:
            assert row.variance <= 1e-12 * row.true_grad_norm**2 + 1e-300, where
            continue
        standard_error = (row.variance_ci_high - row.variance_ci_low) / 2 / t_quantile
        assert abs(row.variance - row.exact_variance) <= 4.5 * standard_error, where
        assert sum(row.exact_coordinate_variance) == pytest.approx(row.exact_variance)
