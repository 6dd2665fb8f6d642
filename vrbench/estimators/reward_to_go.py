"""Policy-gradient estimators that use the time structure of trajectories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.estimators import register
from vrbench.estimators.base import Estimator
from vrbench.problems.base import Capability, Problem


def step_estimate(problem: Any, theta: Tensor, samples: Any, weights: Tensor) -> Tensor:
    """``(1/n) Σ_j Σ_t w_jt ∇θ log π(a_t|s_t)`` for each replicate, ``(R, dim)``."""
    scores: Tensor = problem.step_score(theta, samples, weights)
    return scores.mean(dim=1)


def discounts(problem: Any, steps: int) -> Tensor:
    gamma: float = problem.gamma
    return gamma ** torch.arange(steps, dtype=torch.float64)


@register("reinforce_reward_to_go")
@dataclass(frozen=True)
class ReinforceRewardToGo(Estimator):
    """REINFORCE with reward-to-go: each action is credited only with the rewards after it.

    ``ĝ = (1/n) Σ_j Σ_t ∇θ log π(a_t|s_t) Σ_{k≥t} γ^k r_k``. Unbiased because a reward cannot
    depend on later actions (causality), and of lower variance than the full-return form
    (Williams, 1992; the "reward-to-go" of Sutton et al., NeurIPS 1999, and of most
    policy-gradient implementations).
    """

    display_name = "REINFORCE, reward-to-go"

    family = "policy gradient"
    requires = frozenset({Capability.SEQUENTIAL})
    reference = "Williams, 1992; Sutton et al., 1999"

    # ``problem: Any`` here and below: a sequential problem's members (gamma, reward_to_go,
    # ...; see Capability.SEQUENTIAL) are not members of the Problem class.
    def estimate(self, problem: Any, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        samples = problem.sample(theta, (replicates, n_samples), generator)
        return step_estimate(problem, theta, samples, problem.reward_to_go(samples))


def fitted_values(problem: Any, theta: Tensor, generator: torch.Generator,
                  episodes: int) -> Tensor:
    """Monte Carlo state values ``V_t(s)``, ``(H + 1, S)``: the mean return from ``(t, s)``
    over ``episodes`` independent episodes (0 where ``(t, s)`` was never visited)."""
    samples = problem.sample(theta, (1, episodes), generator)
    pairs = samples.pairs[0]
    steps = pairs.shape[-1]
    returns_from = problem.reward_to_go(samples)[0] / discounts(problem, steps)
    n_states = problem.policy(theta).shape[0]
    cell = (torch.arange(steps) * n_states + pairs.clamp(min=0) // problem.policy(theta).shape[1])
    alive = (pairs >= 0).to(torch.float64)
    total = torch.zeros((problem.horizon + 1) * n_states, dtype=torch.float64)
    count = torch.zeros_like(total)
    total.index_add_(0, cell.reshape(-1), (returns_from * alive).reshape(-1))
    count.index_add_(0, cell.reshape(-1), alive.reshape(-1))
    values = torch.where(count > 0, total / count.clamp(min=1), 0.0)
    return values.reshape(problem.horizon + 1, n_states)


@dataclass(frozen=True)
class _ValueBaseline(Estimator):
    family = "policy gradient"
    requires = frozenset({Capability.SEQUENTIAL})

    def estimate(self, problem: Any, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Tensor | None = None) -> Tensor:
        samples = problem.sample(theta, (replicates, n_samples), generator)
        baseline = problem.step_values(theta, samples, state)
        weights = problem.reward_to_go(samples) - discounts(
            problem, baseline.shape[-1]) * baseline
        return step_estimate(problem, theta, samples, weights)


@register("value_baseline_exact")
@dataclass(frozen=True)
class ValueBaselineExact(_ValueBaseline):
    """Reward-to-go minus the exact state value: ``Σ_t ∇log π(a_t|s_t) γ^t (G_t − V_t(s_t))``.

    ``G_t = Σ_{k≥t} γ^{k−t} r_k`` and ``V_t`` is the true value of the current policy with
    ``H − t`` steps left, from dynamic programming: the ideal state-dependent baseline
    (Sutton et al., NeurIPS 1999; Greensmith et al., JMLR 2004). Unbiased, since the baseline
    depends on the state only. An oracle: real agents must fit V (``value_baseline_fitted``).
    """

    display_name = "value baseline (exact)"

    reference = "Sutton et al., 1999; Greensmith et al., 2004"

    def fit(self, problem: Any, theta: Tensor, generator: torch.Generator) -> Tensor:
        values: Tensor = problem.exact_values(theta)
        return values


@register("value_baseline_fitted")
@dataclass(frozen=True)
class ValueBaselineFitted(_ValueBaseline):
    """Reward-to-go minus a state-value baseline learned from independent episodes.

    Like ``value_baseline_exact`` with ``V_t(s)`` replaced by the Monte Carlo average of the
    return from ``(t, s)`` over ``fit_episodes`` independent episodes (a tabular learned
    critic; the state-dependent generalization of the leave-one-out baseline). Unbiased,
    because the fitted values are independent of the measured episodes (Greensmith et al.,
    JMLR 2004).
    """

    display_name = "value baseline (fitted)"

    fit_episodes: int = 2000

    requires = frozenset({Capability.SEQUENTIAL, Capability.TABULAR})
    reference = "Greensmith et al., 2004"

    def __post_init__(self) -> None:
        check(self.fit_episodes >= 1, self.name, "fit_episodes must be >= 1")

    def fit(self, problem: Problem, theta: Tensor, generator: torch.Generator) -> Tensor:
        return fitted_values(problem, theta, generator, self.fit_episodes)


@dataclass(frozen=True)
class _GAE(Estimator):
    lam: float = 0.95

    family = "policy gradient"
    requires = frozenset({Capability.SEQUENTIAL})
    reference = "Schulman et al., 2016"

    def __post_init__(self) -> None:
        check(0.0 <= self.lam <= 1.0, self.name, f"lam={self.lam} must lie in [0, 1]")

    def estimate(self, problem: Any, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Tensor | None = None) -> Tensor:
        samples = problem.sample(theta, (replicates, n_samples), generator)
        values = problem.step_values(theta, samples, state)
        following = torch.cat([values[..., 1:], torch.zeros_like(values[..., :1])], dim=-1)
        deltas = problem.step_rewards(samples) + problem.gamma * following - values
        advantages = torch.zeros_like(deltas)
        running = torch.zeros_like(deltas[..., 0])
        for t in range(deltas.shape[-1] - 1, -1, -1):  # the horizon loop
            running = deltas[..., t] + problem.gamma * self.lam * running
            advantages[..., t] = running
        weights = discounts(problem, deltas.shape[-1]) * advantages
        return step_estimate(problem, theta, samples, weights)


@register("gae_exact")
@dataclass(frozen=True)
class GAEExact(_GAE):
    """Generalized advantage estimation with the exact value function.

    ``Â_t = Σ_l (γλ)^l δ_{t+l}``, ``δ_t = r_t + γ V_{t+1}(s_{t+1}) − V_t(s_t)``, and
    ``ĝ = Σ_t γ^t ∇log π(a_t|s_t) Â_t``. With the true V every ``δ_{t+l}``, ``l ≥ 1``, has
    mean zero given ``(s_t, a_t)``, so the estimator is unbiased for every λ; λ trades the
    variance of long returns against that of one-step TD errors. Schulman et al.,
    "High-dimensional continuous control using generalized advantage estimation", ICLR 2016.
    """

    display_name = "GAE (exact values)"
    parameter_symbols: ClassVar = {"lam": "λ"}

    def fit(self, problem: Any, theta: Tensor, generator: torch.Generator) -> Tensor:
        values: Tensor = problem.exact_values(theta)
        return values


@register("gae_fitted")
@dataclass(frozen=True)
class GAEFitted(_GAE):
    """Generalized advantage estimation with a value function fitted on independent episodes.

    As ``gae_exact`` with ``V`` the Monte Carlo average of ``fit_episodes`` independent
    episodes. With an imperfect V, GAE is biased for λ < 1 (Schulman et al., ICLR 2016,
    section 3): it declares so, and the harness measures how much.
    """

    display_name = "GAE (fitted values)"
    parameter_symbols: ClassVar = {"lam": "λ"}

    fit_episodes: int = 2000

    requires = frozenset({Capability.SEQUENTIAL, Capability.TABULAR})
    unbiased = False

    def fit(self, problem: Problem, theta: Tensor, generator: torch.Generator) -> Tensor:
        return fitted_values(problem, theta, generator, self.fit_episodes)
