"""Every problem's exact objective and gradient, held against independent references."""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium
import numpy as np
import pytest
import torch
from scipy import integrate, stats

from vrbench import problems
from vrbench.bench.reference import compute_reference
from vrbench.errors import ParameterError, VrbenchError
from vrbench.problems.base import DTYPE
from vrbench.problems.bernoulli import BernoulliVector
from vrbench.problems.mdp import table_from_env
from vrbench.testing import check_problem, finite_difference_error

PROBLEM_NAMES = problems.registry.names()


def perturbed_theta(problem, seed: int = 0) -> torch.Tensor:
    """A generic θ near the default, so gradients are checked away from symmetric points."""
    g = torch.Generator().manual_seed(seed)
    return problem.initial_theta() + 0.3 * torch.rand(problem.dim, generator=g, dtype=DTYPE)


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_exact_gradient_matches_central_finite_differences(name):
    problem = problems.make(name)
    # Central differences err by O(h²) times J's third derivative, plus rounding ~1e-16 |J|/h;
    # relative to the gradient's size that is at most ~1e-7 here (bernoulli_vector's ∇J is
    # 10⁻⁴ of J), a hundred times below the conformance threshold.
    assert finite_difference_error(problem, perturbed_theta(problem)) < 1e-6


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_sampled_objective_has_the_exact_mean(name, generator):
    """The sampler draws from exactly the distribution whose J is computed (within 5 SE)."""
    problem = problems.make(name)
    theta = perturbed_theta(problem, seed=1)
    values = problem.f(problem.sample(theta, (100, 100), generator)).reshape(-1)
    se = values.std() / math.sqrt(values.numel())
    value = compute_reference(problem, theta).value  # exact, or quadrature (tiny error)
    assert abs(values.mean() - value) < 5 * se + 1e-12


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_score_has_mean_zero(name, generator):
    problem = problems.make(name)
    theta = perturbed_theta(problem, seed=2)
    scores = problem.score(theta, problem.sample(theta, (100, 100), generator)).reshape(
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
        ("gaussian_quadratic", {"sigma": "-1"}, "sigma=-1 must lie in"),
        ("gaussian_step", {"mu": "abc"}, "mu='abc' must be a finite number"),
        ("frozenlake", {"gamma": "1.5"}, "gamma=1.5 must lie in"),
        ("frozenlake", {"horizon": "0"}, "horizon=0 must lie in 1..10000"),
        ("random_mdp", {"S": "100000"}, "S=100000 must lie in 1..10000 .larger sizes would not"),
    ],
)
def test_bad_parameters_are_named(name, params, message):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(")):
        problems.make(name, params)


def _quadrature(fun, mu, sigma):
    """E[fun(x)] for x ~ N(μ, σ²) by adaptive quadrature (kinks split at the breakpoints)."""
    density = stats.norm(mu, sigma).pdf
    value, _ = integrate.quad(lambda x: fun(x) * density(x), -np.inf, np.inf, epsabs=1e-12,
                              limit=200)
    return value


@pytest.mark.parametrize(
    ("name", "params", "fun"),
    [
        ("gaussian_abs", {"c": 0.5, "mu": 1.0, "sigma": 1.0}, lambda x: abs(x - 0.5)),
        ("gaussian_abs", {"c": -0.2, "mu": 0.3, "sigma": 0.7}, lambda x: abs(x + 0.2)),
        ("gaussian_cosine", {"omega": 3.0, "mu": 0.5, "sigma": 0.5}, lambda x: np.cos(3 * x)),
        ("gaussian_cosine", {"omega": 1.5, "mu": -0.4, "sigma": 1.2}, lambda x: np.cos(1.5 * x)),
        ("gaussian_quadratic", {"k": -1.5, "mu": 1.0, "sigma": 1.0}, lambda x: (x + 1.5) ** 2),
        ("gaussian_bump", {"k": 0.5, "mu": 0.7, "sigma": 1.3}, lambda x: np.exp(-0.5 * x * x)),
        ("gaussian_bump", {"k": 3.0, "mu": -1.0, "sigma": 1.0}, lambda x: np.exp(-3 * x * x)),
        ("gaussian_bump", {"k": 0.0, "mu": 1.0, "sigma": 1.0}, lambda x: 1.0),
    ],
)
def test_univariate_gaussian_objectives_against_quadrature(name, params, fun):
    problem = problems.make(name, params)
    theta = problem.initial_theta()
    mu, sigma = params["mu"], params["sigma"]
    assert problem.value(theta).item() == pytest.approx(_quadrature(fun, mu, sigma), abs=1e-9)
    h = 1e-4  # quadrature of J at shifted (μ, σ): a reference that shares no code with vrbench
    d_mu = (_quadrature(fun, mu + h, sigma) - _quadrature(fun, mu - h, sigma)) / (2 * h)
    d_sigma = (_quadrature(fun, mu, sigma + h) - _quadrature(fun, mu, sigma - h)) / (2 * h)
    np.testing.assert_allclose(problem.exact_grad(theta).numpy(), [d_mu, d_sigma], atol=1e-6)


def test_multivariate_gaussian_quadratic_closed_form():
    problem = problems.make("gaussian_quadratic_10d", {"D": 3, "k": 0.25})
    mu, sigma = np.array([1.0, -0.5, 2.0]), np.array([0.5, 1.5, 1.0])
    theta = torch.tensor(np.concatenate([mu, sigma]), dtype=DTYPE)
    # E[(x − k)²] = (μ − k)² + σ² per coordinate.
    assert problem.value(theta).item() == pytest.approx(((mu - 0.25) ** 2 + sigma**2).sum())
    np.testing.assert_allclose(problem.exact_grad(theta).numpy(),
                               np.concatenate([2 * (mu - 0.25), 2 * sigma]))
    assert problem.dim == 6 and problems.make("gaussian_quadratic_10d").dim == 20


def test_bernoulli_vector_by_enumeration():
    import itertools

    problem = problems.make("bernoulli_vector", {"D": 3, "t": 0.45})
    theta = np.array([0.3, -1.0, 2.0])
    p = 1 / (1 + np.exp(-theta))

    def objective(th):
        q = 1 / (1 + np.exp(-th))
        return sum(np.prod(np.where(b, q, 1 - q)) * np.mean((np.array(b) - 0.45) ** 2)
                   for b in itertools.product([0, 1], repeat=3))

    t = torch.tensor(theta, dtype=DTYPE)
    assert problem.value(t).item() == pytest.approx(objective(theta), rel=1e-13)
    h = 1e-6
    fd = [(objective(theta + h * e) - objective(theta - h * e)) / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(problem.exact_grad(t).numpy(), fd, atol=1e-9)
    assert p.shape == (3,)


@pytest.mark.parametrize("t", [0.49, 0.499, 0.4])
def test_bernoulli_toy_targets(t):
    problem = problems.make("bernoulli_toy", {"t": t, "theta": -1.5})
    p = 1 / (1 + math.exp(1.5))
    assert problem.exact_grad(problem.initial_theta()).item() == pytest.approx(
        p * (1 - p) * (1 - 2 * t), rel=1e-12)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _enumerated_softmax_objective(theta: np.ndarray, rewards: np.ndarray) -> float:
    return float(_softmax(theta) @ rewards)


@pytest.mark.parametrize(
    ("name", "params", "rewards"),
    [
        ("categorical_target", {},
         np.array([float(k == 3) + 0.1 * math.cos(2.5 * k) for k in range(10)])),
        ("bandit_bernoulli_k", {"arms": 5}, np.array([0.05, 0.275, 0.5, 0.725, 0.95])),
        ("bandit_bernoulli_k", {"arms": 100}, 0.05 + 0.9 * np.arange(100) / 99),
    ],
)
def test_softmax_problems_by_enumeration(name, params, rewards):
    problem = problems.make(name, params)
    theta = np.linspace(-1, 1, problem.dim)
    t = torch.tensor(theta, dtype=DTYPE)
    assert problem.value(t).item() == pytest.approx(_enumerated_softmax_objective(theta, rewards))
    h = 1e-6
    fd = [(_enumerated_softmax_objective(theta + h * e, rewards)
           - _enumerated_softmax_objective(theta - h * e, rewards)) / (2 * h)
          for e in np.eye(problem.dim)]
    np.testing.assert_allclose(problem.exact_grad(t).numpy(), fd, atol=1e-9)


def test_contextual_bandit_by_enumeration():
    problem = problems.make("contextual_bandit", {"contexts": 3, "actions": 4, "features": 2})
    phi, q = (x.numpy() for x in problem.tables)

    def objective(th):
        policy = _softmax(phi @ th.reshape(4, 2).T)
        return float((policy * q).sum(1).mean())

    theta = np.linspace(-0.5, 0.5, 8)
    t = torch.tensor(theta, dtype=DTYPE)
    assert problem.value(t).item() == pytest.approx(objective(theta), rel=1e-12)
    h = 1e-6
    fd = [(objective(theta + h * e) - objective(theta - h * e)) / (2 * h) for e in np.eye(8)]
    np.testing.assert_allclose(problem.exact_grad(t).numpy(), fd, atol=1e-9)


def _dict_dynamic_program(table, start, theta, gamma, horizon) -> float:
    """J by backward induction over a ``P[s][a] = [(p, s', r, done), ...]`` dictionary."""
    n_states, n_actions = len(table), len(table[0])
    pi = _softmax(theta.reshape(n_states, n_actions))
    v = np.zeros(n_states)
    for _ in range(horizon):
        q = np.zeros((n_states, n_actions))
        for s in range(n_states):
            for a in range(n_actions):
                for p, s_next, r, done in table[s][a]:
                    q[s, a] += p * (r + (0.0 if done else gamma * v[s_next]))
        v = (pi * q).sum(axis=1)
    return float(np.asarray(start) @ v)


def _chain_dictionary(n, small, large, slip):
    """The N-chain written out from its definition (Strens, 2000)."""
    table = {}
    for s in range(n):
        forward = [(1 - slip, min(s + 1, n - 1), large if s == n - 1 else 0.0, False),
                   (slip, 0, small, False)]
        back = [(slip, min(s + 1, n - 1), large if s == n - 1 else 0.0, False),
                (1 - slip, 0, small, False)]
        table[s] = {0: forward, 1: back}
    return table, np.eye(n)[0]


@pytest.mark.parametrize(
    ("name", "params", "reference"),
    [
        ("frozenlake_8x8", {"horizon": 20}, ("FrozenLake-v1", {"map_name": "8x8"})),
        ("cliffwalking", {"horizon": 15, "gamma": 0.9}, ("CliffWalking-v1", {})),
        ("taxi", {"horizon": 8}, ("Taxi-v4", {})),
        ("chain_mdp", {"horizon": 12}, None),
    ],
)
def test_mdps_against_an_independent_dynamic_program(name, params, reference):
    problem = problems.make(name, params)
    if reference is None:
        table, start = _chain_dictionary(5, 2.0, 10.0, 0.2)
    else:
        env = gymnasium.make(reference[0], **reference[1])
        table, start = env.unwrapped.P, env.unwrapped.initial_state_distrib
    theta = perturbed_theta(problem, seed=5).numpy()
    gamma, horizon = problem.gamma, problem.horizon
    t = torch.tensor(theta, dtype=DTYPE)
    expected = _dict_dynamic_program(table, start, theta, gamma, horizon)
    assert problem.value(t).item() == pytest.approx(expected, rel=1e-11, abs=1e-13)
    direction = np.random.default_rng(0).standard_normal(theta.size)
    h = 1e-5
    fd = (_dict_dynamic_program(table, start, theta + h * direction, gamma, horizon)
          - _dict_dynamic_program(table, start, theta - h * direction, gamma, horizon)) / (2 * h)
    assert float(problem.exact_grad(t) @ torch.tensor(direction)) == pytest.approx(fd, rel=1e-6,
                                                                                  abs=1e-9)


def test_random_mdp_is_a_garnet():
    problem = problems.make("random_mdp", {"seed": 3})
    table = problem.table()
    assert table.prob.shape == (20, 4, 20)
    assert bool(((table.prob > 0).sum(-1) == 3).all())
    torch.testing.assert_close(table.prob.sum(-1), torch.ones(20, 4, dtype=DTYPE))
    assert float(table.reward.min()) >= 0 and float(table.reward.max()) <= 1
    assert not torch.equal(table.prob, problems.make("random_mdp", {"seed": 4}).table().prob)


def test_vae_against_brute_force_enumeration():
    import itertools

    from sklearn.datasets import load_digits

    problem = problems.make("sigmoid_belief_vae_digits", {"batch": 3})
    images = (load_digits().data[:3] > 8).astype(float)
    _, decoder, offset, _, _ = (x.numpy() for x in problem._model)
    theta = perturbed_theta(problem, seed=6).numpy()
    codes = np.array(list(itertools.product([0, 1], repeat=10)), dtype=float)

    def log_bernoulli(bits, logits):
        return (bits * logits - np.logaddexp(0, logits)).sum(-1)

    def elbo(th):
        weights, bias = th[:640].reshape(10, 64), th[640:]
        total = 0.0
        for x in images:
            log_q = log_bernoulli(codes, weights @ x + bias)
            log_joint = log_bernoulli(x, codes @ decoder.T + offset) - 10 * math.log(2)
            total += np.sum(np.exp(log_q) * (log_joint - log_q))
        return total / len(images)

    t = torch.tensor(theta, dtype=DTYPE)
    assert problem.value(t).item() == pytest.approx(elbo(theta), rel=1e-12)
    direction = np.random.default_rng(1).standard_normal(theta.size)
    h = 1e-5
    fd = (elbo(theta + h * direction) - elbo(theta - h * direction)) / (2 * h)
    assert float(problem.exact_grad(t) @ torch.tensor(direction)) == pytest.approx(fd, rel=1e-6)


@dataclass(frozen=True)
class _WrongWeightedScore(BernoulliVector):
    """bernoulli_vector whose shortcut for the weighted score forgets to divide by n."""

    name = "wrong_weighted_score_for_test"

    def weighted_score(self, theta, samples, weights):
        return torch.einsum("rn,rnd->rd", weights, self.score(theta, samples))


def test_conformance_catches_a_weighted_score_shortcut_that_disagrees_with_score():
    failures = check_problem(_WrongWeightedScore(), time_budget=None, max_draws=10_000).failures
    assert failures[0].startswith("weighted score equals"), failures


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_log_prob_is_the_log_density_up_to_a_constant_in_theta(name, generator):
    """The score is ∇θ log_prob (checked by the conformance suite); here log_prob itself is held
    against torch.distributions where one applies, and against exp-summing to one over the
    support where there is one."""
    problem = problems.make(name)
    theta = problem.check_theta()
    samples = problem.sample(theta, (3, 4), generator)
    assert problem.log_prob(theta, samples).shape == (3, 4)
    try:
        support = problem.support()
    except NotImplementedError:
        return
    total = problem.log_prob(theta, support).exp().sum()
    assert float(total) == pytest.approx(1.0, abs=1e-12)


def test_gaussian_log_prob_against_torch_distributions(generator):
    problem = problems.make("gaussian_quadratic_10d", {"D": 3})
    theta = problem.check_theta()
    x = problem.sample(theta, (2, 5), generator)
    reference = torch.distributions.Normal(theta[:3], theta[3:]).log_prob(x).sum(-1)
    torch.testing.assert_close(problem.log_prob(theta, x), reference)



def test_multivariate_gaussian_cosine_against_tensor_product_quadrature():
    """E cos(ω Σ_d x_d/√D) by Gauss–Hermite quadrature over every coordinate (D = 3), and its
    central differences, against the closed form."""
    problem = problems.make("gaussian_cosine_10d", {"D": 3, "omega": 2.0})
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()
    grid = np.stack(np.meshgrid(nodes, nodes, nodes, indexing="ij"), axis=-1)
    mass = np.einsum("i,j,k->ijk", weights, weights, weights)

    def objective(th):
        x = th[:3] + th[3:] * grid
        return float((mass * np.cos(2.0 * x.sum(-1) / math.sqrt(3))).sum())

    theta = np.array([0.3, -0.2, 0.9, 0.4, 0.7, 0.5])
    t = torch.tensor(theta, dtype=DTYPE)
    assert problem.value(t).item() == pytest.approx(objective(theta), abs=1e-12)
    h = 1e-5
    fd = [(objective(theta + h * e) - objective(theta - h * e)) / (2 * h) for e in np.eye(6)]
    np.testing.assert_allclose(problem.exact_grad(t).numpy(), fd, atol=1e-8)
