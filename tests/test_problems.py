"""Every problem's exact objective and gradient, held against independent references."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest
import torch
from scipy import integrate, stats

from vrbench import problems
from vrbench.errors import ParameterError, VrbenchError
from vrbench.problems.base import DTYPE
from vrbench.problems.mdp import table_from_env

PROBLEM_NAMES = problems.registry.names()


def perturbed_theta(problem, seed: int = 0) -> torch.Tensor:
    """A generic θ near the default, so gradients are checked away from symmetric points."""
    g = torch.Generator().manual_seed(seed)
    return problem.initial_theta() + 0.3 * torch.rand(problem.dim, generator=g, dtype=DTYPE)


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_exact_gradient_matches_central_finite_differences(name):
    problem = problems.make(name)
    theta = perturbed_theta(problem)
    h = 1e-5
    basis = torch.eye(problem.dim, dtype=DTYPE)
    fd = torch.stack(
        [(problem.value(theta + h * e) - problem.value(theta - h * e)) / (2 * h) for e in basis]
    )
    # Central differences of a smooth J have error O(h²·J''') ≈ 1e-10 plus rounding ≈ 1e-11.
    torch.testing.assert_close(problem.exact_grad(theta), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_sampled_objective_has_the_exact_mean(name, generator):
    """The sampler draws from exactly the distribution whose J is computed (within 5 SE)."""
    problem = problems.make(name)
    theta = perturbed_theta(problem, seed=1)
    values = problem.f(problem.sample(theta, (200, 100), generator)).reshape(-1)
    se = values.std() / math.sqrt(values.numel())
    assert abs(values.mean() - problem.value(theta)) < 5 * se + 1e-12


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_score_has_mean_zero(name, generator):
    problem = problems.make(name)
    theta = perturbed_theta(problem, seed=2)
    scores = problem.score(theta, problem.sample(theta, (200, 100), generator)).reshape(
        -1, problem.dim
    )
    se = scores.std(dim=0) / math.sqrt(scores.shape[0])
    assert bool(((scores.mean(dim=0)).abs() <= 5 * se + 1e-12).all())


@pytest.mark.parametrize("name", ["gaussian_quadratic", "gaussian_step"])
def test_gaussian_score_is_the_gradient_of_the_log_density(name, generator):
    problem = problems.make(name)
    theta = perturbed_theta(problem, seed=3).requires_grad_(True)
    x = problem.sample(theta.detach(), (2, 3), generator)
    log_density = torch.distributions.Normal(theta[0], theta[1]).log_prob(x).sum()
    (autograd_score,) = torch.autograd.grad(log_density, theta)
    torch.testing.assert_close(problem.score(theta.detach(), x).sum(dim=(0, 1)), autograd_score)


def test_bernoulli_toy_by_enumeration():
    problem = problems.make("bernoulli_toy", {"t": "0.4", "theta": "0.7"})
    theta = problem.initial_theta()
    p = 1 / (1 + math.exp(-0.7))
    assert problem.value(theta).item() == pytest.approx(p * 0.6**2 + (1 - p) * 0.4**2, rel=1e-14)
    # d/dθ of the two-point sum, with dp/dθ = p(1 − p).
    assert problem.exact_grad(theta).item() == pytest.approx(p * (1 - p) * (0.36 - 0.16), rel=1e-13)


def test_gaussian_step_against_quadrature():
    problem = problems.make("gaussian_step", {"mu": "0.3", "sigma": "1.7"})
    theta = problem.initial_theta()
    density = stats.norm(0.3, 1.7).pdf
    value, _ = integrate.quad(density, 0, np.inf, epsabs=1e-13)
    assert problem.value(theta).item() == pytest.approx(value, abs=1e-11)
    # dJ/dμ = ∫ f(x) ∂μ p(x) dx, dJ/dσ = ∫ f(x) ∂σ p(x) dx, by quadrature.
    d_mu, _ = integrate.quad(lambda x: density(x) * (x - 0.3) / 1.7**2, 0, np.inf, epsabs=1e-13)
    d_sigma, _ = integrate.quad(
        lambda x: density(x) * (((x - 0.3) / 1.7) ** 2 - 1) / 1.7, 0, np.inf, epsabs=1e-13
    )
    np.testing.assert_allclose(problem.exact_grad(theta).numpy(), [d_mu, d_sigma], atol=1e-10)


def test_gaussian_quadratic_against_quadrature():
    problem = problems.make("gaussian_quadratic")
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()
    mu, sigma = 1.0, 1.5
    x = mu + sigma * nodes
    assert problem.value(problem.initial_theta()).item() == pytest.approx(weights @ x**2, rel=1e-13)
    grad = [weights @ (2 * x), weights @ (2 * x * nodes)]  # pathwise: E[∂x f ∂θ x]
    np.testing.assert_allclose(
        problem.exact_grad(problem.initial_theta()).numpy(), grad, rtol=1e-13
    )


def test_bandit_by_enumeration():
    problem = problems.make("bandit_gaussian_10")
    q = np.array([0.2, -0.8, 1.5, 0.4, 1.2, -1.5, -0.1, -1.0, 0.8, -0.5])
    theta = np.linspace(-1, 1, 10)
    pi = np.exp(theta) / np.exp(theta).sum()
    jacobian = np.diag(pi) - np.outer(pi, pi)  # ∂π/∂θ for a softmax
    t = torch.tensor(theta, dtype=DTYPE)
    assert problem.value(t).item() == pytest.approx(pi @ q, rel=1e-13)
    np.testing.assert_allclose(problem.exact_grad(t).numpy(), jacobian @ q, atol=1e-15)


def _frozenlake_reference(theta: np.ndarray, gamma: float, horizon: int) -> float:
    """J by backward induction written directly over gymnasium's ``P`` dictionary."""
    env = gymnasium.make("FrozenLake-v1", map_name="4x4", is_slippery=True)
    table, start = env.unwrapped.P, env.unwrapped.initial_state_distrib
    logits = theta.reshape(16, 4)
    pi = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    v = np.zeros(16)
    for _ in range(horizon):
        q = np.zeros((16, 4))
        for s in range(16):
            for a in range(4):
                for p, s_next, r, done in table[s][a]:
                    q[s, a] += p * (r + (0.0 if done else gamma * v[s_next]))
        v = (pi * q).sum(axis=1)
    return float(start @ v)


def test_frozenlake_value_and_gradient_against_an_independent_dynamic_program():
    problem = problems.make("frozenlake", {"horizon": "30", "gamma": "0.95"})
    theta = perturbed_theta(problem, seed=4).numpy()
    reference = _frozenlake_reference(theta, 0.95, 30)
    t = torch.tensor(theta, dtype=DTYPE)
    assert problem.value(t).item() == pytest.approx(reference, rel=1e-12)
    h = 1e-6
    fd = np.array(
        [
            (
                _frozenlake_reference(theta + h * e, 0.95, 30)
                - _frozenlake_reference(theta - h * e, 0.95, 30)
            )
            / (2 * h)
            for e in np.eye(64)
        ]
    )
    np.testing.assert_allclose(problem.exact_grad(t).numpy(), fd, atol=1e-9)


def test_frozenlake_horizon_truncates_returns():
    """With H = 1 no episode can reach the goal (6 steps away), so J = 0 exactly."""
    problem = problems.make("frozenlake", {"horizon": "1"})
    assert problem.value(problem.initial_theta()).item() == 0.0


class _TablelessEnv:
    unwrapped = object()


def test_adapter_refuses_environment_without_transition_table():
    with pytest.raises(VrbenchError, match="exposes no transition table"):
        table_from_env(_TablelessEnv())


def test_adapter_checks_probabilities_and_state_range():
    class Broken:
        def __init__(self, table):
            self.P = table
            self.unwrapped = self

    with pytest.raises(VrbenchError, match=r"sum to 0\.9"):
        table_from_env(Broken({0: {0: [(0.9, 0, 0.0, False)]}}))
    with pytest.raises(VrbenchError, match=r"outside 0\.\.0"):
        table_from_env(Broken({0: {0: [(1.0, 3, 0.0, False)]}}))


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("bernoulli_toy", {"t": "2"}, "t=2.0 must lie in"),
        ("bernoulli_toy", {"tt": "0.4"}, "unknown parameter 'tt'; valid parameters: t, theta"),
        ("gaussian_quadratic", {"sigma": "-1"}, "sigma=-1.0 must be positive"),
        ("gaussian_step", {"mu": "abc"}, "mu='abc' is not a valid float"),
        ("frozenlake", {"gamma": "1.5"}, "gamma=1.5 must lie in"),
        ("frozenlake", {"horizon": "0"}, "horizon=0 must be at least 1"),
    ],
)
def test_bad_parameters_are_named(name, params, message):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(")):
        problems.make(name, params)
