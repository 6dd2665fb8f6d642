"""The LQR problems against references that share no code with them: the state's mean and
covariance propagated forward in numpy, finite differences of that forward J, the
infinite-horizon Lyapunov solution (scipy), autograd of the Gaussian policy's log-density, and
sampled returns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg

from vrbench import problems
from vrbench.errors import ParameterError
from vrbench.problems.base import DTYPE

SETTINGS = [
    ("lqr_stable", {}),
    ("lqr_stable", {"gamma": 1.0, "horizon": 30, "gain": 2.0}),
    ("lqr_unstable", {}),
    ("lqr_unstable", {"gamma": 0.9, "horizon": 12, "sigma": 1.5, "gain": 0.3}),
]


def _system(problem) -> dict[str, np.ndarray]:
    s = problem.system()
    return {"A": s.A.numpy(), "B": s.B.numpy(), "Q": s.Q.numpy(), "R": s.R.numpy(),
            "W": (s.noise_factor @ s.noise_factor.T).numpy(), "m0": s.initial_mean.numpy(),
            "S0": (s.initial_factor @ s.initial_factor.T).numpy()}


def _policy(problem, theta: np.ndarray) -> tuple[np.ndarray, float]:
    return theta[:-1].reshape(problem.actions, problem.states), math.exp(theta[-1])


def forward_objective(problem, theta: np.ndarray) -> float:
    """J = Σ_t γ^t E[x_tᵀQx_t + u_tᵀRu_t] from the mean and covariance of x_t, propagated
    forward: μ' = (A − BK)μ, S' = (A − BK)S(A − BK)ᵀ + σ²BBᵀ + W, u ~ N(−Kμ, KSKᵀ + σ²I)."""
    sys = _system(problem)
    gain, sigma = _policy(problem, theta)
    closed = sys["A"] - sys["B"] @ gain
    mean, cov, total = sys["m0"], sys["S0"], 0.0
    for t in range(problem.horizon):
        action_mean = -gain @ mean
        action_cov = gain @ cov @ gain.T + sigma**2 * np.eye(problem.actions)
        total += problem.gamma**t * (np.trace(sys["Q"] @ cov) + mean @ sys["Q"] @ mean
                                     + np.trace(sys["R"] @ action_cov)
                                     + action_mean @ sys["R"] @ action_mean)
        mean = closed @ mean
        cov = closed @ cov @ closed.T + sigma**2 * sys["B"] @ sys["B"].T + sys["W"]
    return total


def _theta(problem, seed: int) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return (problem.initial_theta() + 0.1 * torch.rand(problem.dim, generator=g,
                                                       dtype=DTYPE)).numpy()


@pytest.mark.parametrize(("name", "params"), SETTINGS)
def test_backward_recursion_equals_forward_moment_propagation(name, params):
    problem = problems.make(name, params)
    theta = _theta(problem, 0)
    value = problem.value(torch.tensor(theta)).item()
    assert value == pytest.approx(forward_objective(problem, theta), rel=1e-12)


@pytest.mark.parametrize(("name", "params"), SETTINGS)
def test_exact_gradient_equals_differences_of_the_forward_objective(name, params):
    problem = problems.make(name, params)
    theta = _theta(problem, 1)
    h = 1e-6
    fd = np.array([(forward_objective(problem, theta + h * e)
                    - forward_objective(problem, theta - h * e)) / (2 * h)
                   for e in np.eye(problem.dim)])
    exact = problem.exact_grad(torch.tensor(theta)).numpy()
    # central differences err by ~h²·J''' plus rounding ~1e-16·J/h: ~1e-8 relative here
    np.testing.assert_allclose(exact, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())


@pytest.mark.parametrize(("name", "gain"), [("lqr_stable", 0.0), ("lqr_unstable", 0.5)])
def test_long_horizons_reach_the_infinite_horizon_lyapunov_solution(name, gain):
    """With γ = 0.9 and H = 600 (γ^H ~ 1e-28) J and ∇J are the infinite-horizon ones:
    P = Q + KᵀRK + γLᵀPL and Σ_K = M_0 + γLΣ_KLᵀ + γN/(1 − γ) (discrete Lyapunov equations),
    J = tr(P M_0) + (σ² tr R + γ tr(PN))/(1 − γ), ∇_K J = 2[(R + γBᵀPB)K − γBᵀPA]Σ_K (Fazel et
    al., ICML 2018, lemma 1, with discount and noise), ∂J/∂log σ = 2σ²(tr R + γ tr BᵀPB)/(1 − γ).
    """
    gamma = 0.9
    problem = problems.make(name, {"gamma": gamma, "horizon": 600, "gain": gain})
    sys = _system(problem)
    theta = problem.initial_theta().numpy()
    gain_matrix, sigma = _policy(problem, theta)
    A, B, Q, R = sys["A"], sys["B"], sys["Q"], sys["R"]
    closed = A - B @ gain_matrix
    noise = sigma**2 * B @ B.T + sys["W"]
    moment = sys["S0"] + np.outer(sys["m0"], sys["m0"])
    P = linalg.solve_discrete_lyapunov(math.sqrt(gamma) * closed.T, Q + gain_matrix.T @ R
                                       @ gain_matrix)
    visits = linalg.solve_discrete_lyapunov(math.sqrt(gamma) * closed,
                                            moment + gamma / (1 - gamma) * noise)
    value = np.trace(P @ moment) + (sigma**2 * np.trace(R) + gamma * np.trace(P @ noise)) / (
        1 - gamma)
    d_gain = 2 * ((R + gamma * B.T @ P @ B) @ gain_matrix - gamma * B.T @ P @ A) @ visits
    d_log_sigma = 2 * sigma**2 * (np.trace(R) + gamma * np.trace(B.T @ P @ B)) / (1 - gamma)
    t = torch.tensor(theta)
    assert problem.value(t).item() == pytest.approx(value, rel=1e-10)
    np.testing.assert_allclose(problem.exact_grad(t).numpy(),
                               np.append(d_gain.reshape(-1), d_log_sigma), rtol=1e-9)


@pytest.mark.parametrize("name", ["lqr_stable", "lqr_unstable"])
def test_score_is_the_gradient_of_the_gaussian_policy_log_density(name, generator):
    problem = problems.make(name, {"horizon": 6})
    theta = torch.tensor(_theta(problem, 2))
    samples = problem.sample(theta, (2, 3), generator)
    variable = theta.clone().requires_grad_(True)
    gain, sigma = variable[:-1].reshape(problem.actions, problem.states), variable[-1].exp()
    states, actions = samples[..., : problem.states], samples[..., problem.states :]
    log_density = torch.distributions.Normal(-(states @ gain.T), sigma).log_prob(actions).sum()
    (autograd_score,) = torch.autograd.grad(log_density, variable)
    torch.testing.assert_close(problem.score(theta, samples).sum(dim=(0, 1)), autograd_score)


def test_step_scores_weight_each_step(generator):
    """Σ_t w_t ∇log π(u_t|x_t) against the scores of one-step trajectories, step by step."""
    problem = problems.make("lqr_unstable", {"horizon": 5})
    theta = torch.tensor(_theta(problem, 3))
    samples = problem.sample(theta, (2, 3), generator)
    weights = torch.randn(2, 3, 5, generator=generator, dtype=DTYPE)
    one_step = problems.make("lqr_unstable", {"horizon": 1})
    expected = sum(weights[..., t, None] * one_step.score(theta, samples[..., t : t + 1, :])
                   for t in range(5))
    torch.testing.assert_close(problem.step_score(theta, samples, weights), expected)


@pytest.mark.parametrize(("name", "params"), SETTINGS)
def test_mean_and_covariance_of_the_trajectory_match_the_forward_recursion(name, params):
    problem = problems.make(name, {**params, "horizon": 8})
    theta = _theta(problem, 4)
    sys = _system(problem)
    gain, sigma = _policy(problem, theta)
    closed = sys["A"] - sys["B"] @ gain
    t = torch.tensor(theta)
    mean = problem.sample_mean(t).numpy()
    cov = problem.sample_covariance(t).numpy()
    width = problem.states + problem.actions
    state_mean, state_cov = sys["m0"], sys["S0"]
    for step in range(problem.horizon):
        block = slice(step * width, step * width + problem.states)
        np.testing.assert_allclose(mean[step, : problem.states], state_mean, atol=1e-12)
        np.testing.assert_allclose(mean[step, problem.states :], -gain @ state_mean, atol=1e-12)
        np.testing.assert_allclose(cov[block, block], state_cov, rtol=1e-11, atol=1e-14)
        state_mean = closed @ state_mean
        state_cov = closed @ state_cov @ closed.T + sigma**2 * sys["B"] @ sys["B"].T + sys["W"]


@pytest.mark.parametrize("name", ["lqr_stable", "lqr_unstable"])
def test_exact_values_are_the_expected_returns_from_each_step(name, generator):
    """Σ_{k≥t} γ^{k−t} c_k − V_t(x_t) has mean zero at every step (5-SE test per step)."""
    problem = problems.make(name, {"horizon": 10})
    theta = torch.tensor(_theta(problem, 5))
    samples = problem.sample(theta, (1, 40_000), generator)
    discounts = problem.gamma ** torch.arange(10, dtype=DTYPE)
    residual = (problem.reward_to_go(samples) / discounts
                - problem.step_values(theta, samples, problem.exact_values(theta)))[0]
    se = residual.std(dim=0) / math.sqrt(residual.shape[0])
    assert bool((residual.mean(dim=0).abs() < 5 * se).all()), residual.mean(dim=0) / se


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("lqr_stable", {"horizon": "0"}, "horizon=0 must lie in 1..10000"),
        ("lqr_stable", {"gamma": "0"}, "gamma=0.0 must lie in"),
        ("lqr_unstable", {"sigma": "-1"}, "sigma=-1 must lie in"),
        ("lqr_unstable", {"gain": "1e9"}, "gain=1e.09 is out of range"),
        ("lqr_unstable", {"horizon": "2000"}, "the state grows to a root-mean-square of .* "
                                              "within horizon=2000"),
    ],
)
def test_bad_parameters_are_named(name, params, message):
    with pytest.raises(ParameterError, match=message):
        problems.make(name, params)


@pytest.mark.parametrize(("name", "params"), [("lqr_unstable", {}), ("lqr_unstable", {"gain": 0.3}),
                                              ("lqr_stable", {"horizon": 7})])
def test_hand_written_pathwise_gradient_is_autograds(name, params):
    """The adjoint recursion of ``pathwise_gradient`` against autograd through the rollout
    (the base class's), at a θ whose K differs in every entry, per replicate."""
    from vrbench.problems.base import Problem

    problem = problems.make(name, params)
    theta = problem.check_theta()
    noise = problem.sample_noise((6, 3), torch.Generator().manual_seed(0))
    autograd = Problem.pathwise_gradient(problem, theta, noise)
    torch.testing.assert_close(problem.pathwise_gradient(theta, noise), autograd,
                               rtol=1e-12, atol=1e-12 * float(autograd.abs().max()))
