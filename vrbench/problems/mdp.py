"""Finite-horizon tabular MDPs under a softmax policy, with exact gradients by dynamic programming.

Any environment that exposes a full transition table (gymnasium's toy-text ``env.unwrapped.P``)
becomes a problem through :func:`table_from_env`. Trajectories are sampled in batches: all
``R × n`` episodes step together as tensors, so the only Python loop is over time steps.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor

from vrbench.components import check
from vrbench.errors import VrbenchError
from vrbench.problems import register
from vrbench.problems.base import DTYPE, Capability, Problem


class MDPTable(NamedTuple):
    """A tabular MDP as outcome lists: from ``(s, a)``, outcome ``k`` has probability
    ``prob[s, a, k]``, leads to ``next_state[s, a, k]``, pays ``reward[s, a, k]`` and ends the
    episode if ``done[s, a, k]``. ``initial`` is the start-state distribution."""

    prob: Tensor  # (S, A, K) float64
    next_state: Tensor  # (S, A, K) int64
    reward: Tensor  # (S, A, K) float64
    done: Tensor  # (S, A, K) bool
    initial: Tensor  # (S,) float64

    @property
    def n_states(self) -> int:
        return self.prob.shape[0]

    @property
    def n_actions(self) -> int:
        return self.prob.shape[1]


class Trajectories(NamedTuple):
    """Sampled episodes: per-episode visit counts of each (state, action) and the return."""

    counts: Tensor  # (R, n, S*A) float64
    returns: Tensor  # (R, n) float64


def table_from_env(env: Any) -> MDPTable:
    """Read and check the transition table of an environment with ``env.unwrapped.P``.

    ``P[s][a]`` must list ``(probability, next_state, reward, terminated)`` outcomes for every
    state and action, with probabilities summing to one and next states in range.
    """
    core = getattr(env, "unwrapped", env)
    table = getattr(core, "P", None)
    env_name = getattr(getattr(env, "spec", None), "id", type(core).__name__)
    if not isinstance(table, dict) or not table:
        raise VrbenchError(
            f"environment {env_name!r} exposes no transition table (env.unwrapped.P); "
            "only environments with a full table, such as gymnasium's toy-text ones, "
            "can be solved exactly"
        )
    n_states = len(table)
    n_actions = len(table[0])
    n_outcomes = max(len(outcomes) for actions in table.values() for outcomes in actions.values())
    prob = np.zeros((n_states, n_actions, n_outcomes))
    next_state = np.zeros((n_states, n_actions, n_outcomes), dtype=np.int64)
    reward = np.zeros((n_states, n_actions, n_outcomes))
    done = np.zeros((n_states, n_actions, n_outcomes), dtype=bool)
    for s in range(n_states):
        if s not in table or sorted(table[s]) != list(range(n_actions)):
            raise VrbenchError(f"{env_name}: state {s} does not list actions 0..{n_actions - 1}")
        for a in range(n_actions):
            for k, (p, s_next, r, terminated) in enumerate(table[s][a]):
                if not 0 <= s_next < n_states:
                    raise VrbenchError(
                        f"{env_name}: P[{s}][{a}] leads to state {s_next}, "
                        f"outside 0..{n_states - 1}"
                    )
                prob[s, a, k], next_state[s, a, k] = p, s_next
                reward[s, a, k], done[s, a, k] = r, terminated
            total = prob[s, a].sum()
            if abs(total - 1.0) > 1e-9:
                raise VrbenchError(f"{env_name}: P[{s}][{a}] probabilities sum to {total}, not 1")
    initial = np.asarray(getattr(core, "initial_state_distrib", np.eye(n_states)[0]), float)
    if initial.shape != (n_states,) or abs(initial.sum() - 1.0) > 1e-9:
        raise VrbenchError(f"{env_name}: initial state distribution is not a distribution")
    return MDPTable(
        torch.as_tensor(prob, dtype=DTYPE),
        torch.as_tensor(next_state),
        torch.as_tensor(reward, dtype=DTYPE),
        torch.as_tensor(done),
        torch.as_tensor(initial, dtype=DTYPE),
    )


@functools.cache
def gymnasium_table(env_id: str, **kwargs: Any) -> MDPTable:
    """The checked transition table of a registered gymnasium environment (cached)."""
    import gymnasium

    env = gymnasium.make(env_id, **kwargs)
    try:
        return table_from_env(env)
    finally:
        env.close()


@dataclass(frozen=True)
class TabularMDP(Problem):
    """Softmax policy ``π(a|s) ∝ exp θ[s, a]`` on a tabular MDP, finite horizon ``H``.

    ``J(θ) = E[Σ_{t<H} γ^t r_t]``, episodes ending at termination or after ``H`` steps. The score
    of an episode is ``Σ_t ∇ log π(a_t|s_t) = N − n ⊗ π`` with ``N[s, a]`` the visit counts
    and ``n[s] = Σ_a N[s, a]``. ``J`` comes from backward induction,
    ``Q_t = r̄ + γ P V_{t+1}``, ``V_t = Σ_a π Q_t``, ``V_H = 0``; the exact gradient from the
    finite-horizon policy-gradient theorem (Sutton et al., "Policy gradient methods for
    reinforcement learning with function approximation", NeurIPS 1999):
    ``∂J/∂θ[s, a] = Σ_t γ^t d_t(s) π(a|s) (Q_t(s, a) − V_t(s))``, with ``d_t`` the probability
    of being in ``s`` at step ``t`` with the episode still running.
    """

    gamma: float = 0.99
    horizon: int = 100
    theta: float = 0.0

    capabilities: ClassVar = frozenset({Capability.DISCRETE, Capability.SEQUENTIAL})

    def __post_init__(self) -> None:
        check(0.0 < self.gamma <= 1.0, self.name, f"gamma={self.gamma} must lie in (0, 1]")
        check(self.horizon >= 1, self.name, f"horizon={self.horizon} must be at least 1")

    def table(self) -> MDPTable:
        raise NotImplementedError

    @functools.cached_property
    def _table(self) -> MDPTable:
        return self.table()

    @property
    def dim(self) -> int:
        return self._table.n_states * self._table.n_actions

    def initial_theta(self) -> Tensor:
        return torch.full((self.dim,), self.theta, dtype=DTYPE)

    def policy(self, theta: Tensor) -> Tensor:
        """``π(a|s)`` as an ``(S, A)`` matrix."""
        table = self._table
        return torch.softmax(theta.reshape(table.n_states, table.n_actions), dim=-1)

    def sample_width(self) -> int:
        return self.dim + 1

    def sample(
        self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator
    ) -> Trajectories:
        table = self._table
        n_states, n_actions = table.n_states, table.n_actions
        batch = shape[0] * shape[1]
        policy_cdf = torch.cumsum(self.policy(theta), dim=-1)
        outcome_cdf = torch.cumsum(table.prob, dim=-1).reshape(n_states * n_actions, -1)
        last_action, last_outcome = n_actions - 1, outcome_cdf.shape[1] - 1
        flat_next = table.next_state.reshape(-1)
        flat_reward = table.reward.reshape(-1)
        flat_done = table.done.reshape(-1)

        state = torch.multinomial(table.initial, batch, replacement=True, generator=generator)
        alive = torch.ones(batch, dtype=torch.bool)
        returns = torch.zeros(batch, dtype=DTYPE)
        counts = torch.zeros(batch * n_states * n_actions, dtype=DTYPE)
        row_offset = torch.arange(batch) * (n_states * n_actions)
        discount = 1.0
        for _ in range(self.horizon):
            uniforms = torch.rand((2, batch), generator=generator, dtype=DTYPE)
            action = (uniforms[0, :, None] > policy_cdf[state]).sum(-1).clamp_(max=last_action)
            pair = state * n_actions + action
            outcome = (uniforms[1, :, None] > outcome_cdf[pair]).sum(-1).clamp_(max=last_outcome)
            flat = pair * outcome_cdf.shape[1] + outcome
            alive_f = alive.to(DTYPE)
            returns += discount * alive_f * flat_reward[flat]
            counts.index_add_(0, row_offset + pair, alive_f)
            alive &= ~flat_done[flat]
            state = flat_next[flat]
            discount *= self.gamma
            if not bool(alive.any()):
                break
        return Trajectories(counts.reshape(*shape, n_states * n_actions), returns.reshape(shape))

    def f(self, samples: Trajectories) -> Tensor:
        return samples.returns

    def score(self, theta: Tensor, samples: Trajectories) -> Tensor:
        table = self._table
        counts = samples.counts.reshape(*samples.counts.shape[:-1], table.n_states, -1)
        visits = counts.sum(-1, keepdim=True)
        return (counts - visits * self.policy(theta)).flatten(-2)

    def _backward_induction(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(Q, V, π)`` with ``Q[t]`` and ``V[t]`` for every step ``t < H`` (V has H+1 rows)."""
        table = self._table
        policy = self.policy(theta)
        continuing = table.prob * (~table.done)
        transition = torch.zeros(table.n_states, table.n_actions, table.n_states, dtype=DTYPE)
        transition.scatter_add_(2, table.next_state, continuing)
        mean_reward = (table.prob * table.reward).sum(-1)
        values = [torch.zeros(table.n_states, dtype=DTYPE)]
        q_values = []
        for _ in range(self.horizon):
            q = mean_reward + self.gamma * transition @ values[-1]
            q_values.append(q)
            values.append((policy * q).sum(-1))
        q_values.reverse()
        values.reverse()
        return torch.stack(q_values), torch.stack(values), transition

    def value(self, theta: Tensor) -> Tensor:
        _, values, _ = self._backward_induction(theta)
        return self._table.initial @ values[0]

    def exact_grad(self, theta: Tensor) -> Tensor:
        q_values, values, transition = self._backward_induction(theta)
        policy = self.policy(theta)
        occupancy = self._table.initial.clone()
        grad = torch.zeros_like(policy)
        discount = 1.0
        for t in range(self.horizon):
            advantage = q_values[t] - values[t][:, None]
            grad += discount * occupancy[:, None] * policy * advantage
            occupancy = torch.einsum("s,sa,sat->t", occupancy, policy, transition)
            discount *= self.gamma
        return grad.reshape(-1)


@register("frozenlake")
@dataclass(frozen=True)
class FrozenLake(TabularMDP):
    """gymnasium's FrozenLake-v1, 4x4 and slippery: sparse reward, holes end the episode.

    Reward 1 on reaching the goal, 0 elsewhere; each move slips to a perpendicular direction
    with probability 2/3. θ ∈ R^{16×4} (flattened), γ = 0.99, H = 100 by default. The MDP is
    read from the environment's own transition table, so sampling and the exact gradient use
    exactly gymnasium's dynamics (Towers et al., "Gymnasium: A Standard Interface for
    Reinforcement Learning Environments", 2024).
    """

    slippery: bool = True

    reference: ClassVar = "Towers et al., 2024 (Gymnasium), FrozenLake-v1"

    def table(self) -> MDPTable:
        return gymnasium_table("FrozenLake-v1", map_name="4x4", is_slippery=self.slippery)
