"""Measure-valued, second-order delta-method and LAX estimators: closed-form variances, exact
cases and the identities their fits rely on."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from vrbench import estimators, problems
from vrbench.estimators.lax import Surrogate, lax_regression
from vrbench.problems.base import DTYPE
from vrbench.testing import check_problem


def _variance_and_se(estimates: torch.Tensor) -> tuple[float, float]:
    squared = ((estimates - estimates.mean(dim=0)) ** 2).sum(dim=1)
    return float(squared.mean()), float(squared.std() / math.sqrt(len(squared)))


def test_mvd_gaussian_keeps_the_univariate_estimator():
    """On a univariate Gaussian the estimator is Mohamed et al.'s (table 1), draw for draw:
    Weibull(√2, 2) for μ, double-sided Maxwell against an independent normal for σ."""
    problem = problems.make("gaussian_cosine")
    theta = problem.initial_theta()
    estimates = estimators.make("mvd_gaussian").estimate(
        problem, theta, 3, 50, torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    mu, sigma = theta
    weibull = math.sqrt(2) * torch.sqrt(-torch.log1p(-torch.rand((50, 3), generator=g,
                                                                 dtype=DTYPE)))
    chi = torch.randn((50, 3, 3), generator=g, dtype=DTYPE).norm(dim=-1)
    maxwell = chi * torch.where(torch.rand((50, 3), generator=g, dtype=DTYPE) < 0.5, -1.0, 1.0)
    normal = torch.randn((50, 3), generator=g, dtype=DTYPE)
    f = problem.f
    d_mu = (f(mu + sigma * weibull) - f(mu - sigma * weibull)) / (sigma * math.sqrt(2 * math.pi))
    d_sigma = (f(mu + sigma * maxwell) - f(mu + sigma * normal)) / sigma
    torch.testing.assert_close(estimates, torch.stack([d_mu, d_sigma], -1).mean(1),
                               rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize(("name", "sigma_term"), [("mvd_gaussian", 16 * 0.25 + 8.0),
                                                  ("mvd_gaussian_coupled", 4 * 0.25 + 4.0)])
def test_mvd_variance_on_a_separable_quadratic(name, sigma_term, generator):
    """f = Σ_d (x_d − k)², μ − k = 0.5, σ = 1: with the other coordinates shared, coordinate d's
    estimates are c_d·4σW(μ − k) and 2(μ − k)(M − ε) + σ(M² − ε²), of variances
    16(μ − k)²(2 − π/2)/(2π) (Var W = 2 − π/2) and, since M² ~ χ²₃, 16(μ − k)² + 8σ² for an
    independent ε, or 4(μ − k)² + 4σ² for the coupled ε = U·M (E[M²(1 − U)²] = 1,
    Var[M²(1 − U²)] = 4). Estimates that did not share the other coordinates would carry
    their variance too."""
    problem = problems.make("gaussian_quadratic_10d", {"D": 4})
    mu_term = 16 * 0.25 * (2 - math.pi / 2) / (2 * math.pi)
    estimates = estimators.make(name).estimate(problem, problem.initial_theta(), 1, 40_000,
                                               generator)
    variance, se = _variance_and_se(estimates)
    assert abs(variance - 4 * (mu_term + sigma_term)) < 5 * se


@pytest.mark.parametrize(("name", "params"), [
    ("gaussian_quadratic", {}), ("gaussian_quadratic_10d", {}), ("lqr_stable", {"horizon": 20}),
    ("lqr_unstable", {"horizon": 10}),
])
def test_second_order_delta_method_is_exact_on_quadratic_objectives(name, params, generator):
    """A quadratic f equals its second-order expansion, so every estimate is ∇J (the LQR
    return is quadratic in the trajectory, whose covariance the problem supplies)."""
    problem = problems.make(name, params)
    theta = problem.initial_theta()
    estimator = estimators.make("delta_method_second_order")
    state = estimator.fit(problem, theta, torch.Generator().manual_seed(1))
    estimates = estimator.estimate(problem, theta, 4, 20, generator, state)
    exact = problem.exact_grad(theta)
    torch.testing.assert_close(estimates, exact.expand(20, -1), rtol=1e-8,
                               atol=1e-9 * float(exact.abs().max()))


def test_second_order_delta_method_reduces_to_first_order_without_curvature():
    problem = problems.make("gaussian_abs")  # f'' = 0 away from the kink
    theta = problem.initial_theta()
    second = estimators.make("delta_method_second_order")
    state = second.fit(problem, theta, torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        second.estimate(problem, theta, 4, 100, torch.Generator().manual_seed(2), state),
        estimators.make("delta_method").estimate(problem, theta, 4, 100,
                                                 torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("name", ["gaussian_abs", "gaussian_cosine_10d", "lqr_stable"])
def test_lax_fit_regresses_on_the_estimator_itself(name):
    """The least-squares design of the fit gives, for any weights φ, exactly the LAX estimate
    (n = 1) that the estimator computes from the same noise."""
    problem = problems.make(name, {"horizon": 5} if name.startswith("lqr") else {})
    theta = problem.initial_theta()
    estimator = estimators.make("lax", {"fit_samples": 40})
    fitted = estimator.fit(problem, theta, torch.Generator().manual_seed(1))
    state = fitted._replace(weights=torch.randn(fitted.weights.shape,
                                                generator=torch.Generator().manual_seed(2),
                                                dtype=DTYPE))
    estimates = estimator.estimate(problem, theta, 1, 6, torch.Generator().manual_seed(3), state)
    noise = problem.sample_noise((6, 1), torch.Generator().manual_seed(3)).transpose(0, 1)
    design, target = lax_regression(problem, theta, state, noise)
    torch.testing.assert_close(target - design @ state.weights, estimates)


def test_lax_with_the_objective_as_surrogate_is_the_pathwise_estimator():
    """c_φ = f makes the score-function terms cancel (Grathwohl et al., 2018, section 3):
    f = Σ_d (x_d − k)² is (s z + c − k)² in the standardized z = (x − c)/s."""
    problem = problems.make("gaussian_quadratic_10d", {"D": 3, "k": 0.25})
    theta = problem.initial_theta() + 0.1
    centre, scale = torch.tensor([0.9, 1.1, 1.0], dtype=DTYPE), torch.full((3,), 2.0,
                                                                             dtype=DTYPE)
    weights = torch.cat([((centre - 0.25) ** 2).sum().reshape(1), 2 * scale * (centre - 0.25),
                         scale**2])
    surrogate = Surrogate(centre, scale, torch.zeros(3, 0, dtype=DTYPE),
                          torch.zeros(0, dtype=DTYPE), weights)
    lax = estimators.make("lax").estimate(problem, theta, 4, 50,
                                          torch.Generator().manual_seed(5), surrogate)
    pathwise = estimators.make("reparameterization").estimate(
        problem, theta, 4, 50, torch.Generator().manual_seed(5))
    torch.testing.assert_close(lax, pathwise)


def test_lax_beats_every_baseline_on_a_step(generator):
    """On the non-differentiable step the fitted surrogate carries most of the gradient through
    its pathwise term: measured at ~0.16 of the best baseline's variance, asserted below 0.5
    (each variance is estimated to ~2%)."""
    problem = problems.make("gaussian_step")
    theta = problem.initial_theta()
    variances = {}
    for name in ("lax", "score_function_baseline", "score_function_optimal_baseline"):
        estimator = estimators.make(name)
        state = estimator.fit(problem, theta, torch.Generator().manual_seed(1))
        estimates = estimator.estimate(problem, theta, 4, 20_000, generator, state)
        variances[name] = _variance_and_se(estimates)[0]
    assert variances["lax"] < 0.5 * min(variances["score_function_baseline"],
                                        variances["score_function_optimal_baseline"])


@pytest.mark.parametrize(("name", "params", "message"), [
    ("lax", {"horizon": 200}, "all 1200 entries of a sample, more than 1000"),
    ("delta_method_second_order", {"horizon": 700}, "all 4200 entries of a sample, more than 2000"),
])
def test_surrogates_refuse_samples_too_large_to_fit(name, params, message):
    reason = estimators.make(name).incompatibility(problems.make("lqr_unstable", {
        **params, "gain": 0.5}), 4)
    assert reason is not None and message in reason


OWN_PATHWISE = sorted(name for name in problems.registry.names()
                      if type(problems.make(name)).pathwise_gradient
                      is not problems.Problem.pathwise_gradient)


def test_problems_that_write_out_their_pathwise_gradient_are_known():
    assert {"lqr_unstable", "lqr_stable", "gaussian_quadratic_10d"} <= set(OWN_PATHWISE)


@pytest.mark.parametrize("name", OWN_PATHWISE)
def test_written_out_pathwise_gradient_is_autograds(name):
    """A problem's own ``pathwise_gradient`` against autograd through its transform (the base
    class's), at the check θ, replicate by replicate."""
    problem = problems.make(name)
    theta = problem.check_theta()
    noise = problem.sample_noise((6, 3), torch.Generator().manual_seed(0))
    autograd = problems.Problem.pathwise_gradient(problem, theta, noise)
    torch.testing.assert_close(problem.pathwise_gradient(theta, noise), autograd,
                               rtol=1e-12, atol=1e-12 * float(autograd.abs().max()))


@dataclass(frozen=True)
class _PathwiseWithoutNoise(problems.registry.get("gaussian_quadratic_10d")):
    """gaussian_quadratic_10d whose written-out pathwise gradient forgets the ε of ∂x/∂σ."""

    name = "pathwise_without_noise_for_test"

    def pathwise_gradient(self, theta, noise):
        slope = 2 * (self.transform(theta, noise) - self.k)
        return torch.cat([slope.mean(1), slope.mean(1)], dim=-1)


PATHWISE_CHECK = "pathwise_gradient equals autograd through transform"


def test_conformance_holds_a_written_out_pathwise_gradient_to_autograd():
    """``vrbench check`` compares a problem's own pathwise_gradient with autograd: a wrong one
    fails that check, the right one passes it (the sampled checks on few draws here; every
    registered problem runs the whole suite in test_estimators.py)."""
    wrong = check_problem(_PathwiseWithoutNoise(), time_budget=None, max_draws=1_000)
    assert any(f.startswith(PATHWISE_CHECK) for f in wrong.failures), wrong.failures
    right = check_problem("gaussian_quadratic_10d", time_budget=None, max_draws=1_000)
    assert PATHWISE_CHECK in right.passed, right.passed
