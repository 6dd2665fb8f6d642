"""Finite-horizon tabular MDPs under a softmax policy, with exact gradients by dynamic programming.

Any environment that exposes a full transition table (gymnasium's toy-text ``env.unwrapped.P``)
becomes a problem through :func:`table_from_env`. Trajectories are sampled in batches: all
``R × n`` episodes step together as tensors, so the only Python loop is over time steps.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor

from vrbench.components import check
from vrbench.devices import device_cached
from vrbench.errors import VrbenchError
from vrbench.problems import register
from vrbench.problems.base import (
    DTYPE,
    MAX_HORIZON,
    Capability,
    Problem,
    asymmetric_theta,
    check_magnitude,
    check_size,
)


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
    """Sampled episodes, step by step: the (state, action) pair index ``s·A + a`` taken at each
    step (−1 once the episode has ended), the reward received, and the discounted return."""

    pairs: Tensor  # (R, n, T) int64, T ≤ H steps
    rewards: Tensor  # (R, n, T) float64, 0 after the end
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
        torch.as_tensor(prob, dtype=DTYPE, device="cpu"),
        torch.as_tensor(next_state, device="cpu"),
        torch.as_tensor(reward, dtype=DTYPE, device="cpu"),
        torch.as_tensor(done, device="cpu"),
        torch.as_tensor(initial, dtype=DTYPE, device="cpu"),
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
    and ``n[s] = Σ_a N[s, a]`` (see :meth:`step_score`). ``J`` comes from backward induction,
    ``Q_t = r̄ + γ P V_{t+1}``, ``V_t = Σ_a π Q_t``, ``V_H = 0``; the exact gradient from the
    finite-horizon policy-gradient theorem (Sutton et al., "Policy gradient methods for
    reinforcement learning with function approximation", NeurIPS 1999):
    ``∂J/∂θ[s, a] = Σ_t γ^t d_t(s) π(a|s) (Q_t(s, a) − V_t(s))``, with ``d_t`` the probability
    of being in ``s`` at step ``t`` with the episode still running. The horizon is at most
    :data:`~vrbench.problems.base.MAX_HORIZON` (10,000) steps.
    """

    gamma: float = 0.99
    horizon: int = 100
    theta: float = 0.0

    capabilities: ClassVar = frozenset({Capability.DISCRETE, Capability.SEQUENTIAL,
                                        Capability.TABULAR})
    maximize: ClassVar = True

    def __post_init__(self) -> None:
        check(0.0 < self.gamma <= 1.0, self.name, f"gamma={self.gamma} must lie in (0, 1]")
        check_size(self.name, "horizon", self.horizon, high=MAX_HORIZON)

    def table(self) -> MDPTable:
        raise NotImplementedError

    @device_cached
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
        return self.dim + 2 * self.horizon

    def sample(
        self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator
    ) -> Trajectories:
        table = self._table
        n_states, n_actions = table.n_states, table.n_actions
        batch = shape[0] * shape[1]
        # Bounds of the inverse-CDF draws: each cdf but its last entry (see _count_below).
        action_bounds = torch.cumsum(self.policy(theta), dim=-1)[:, :-1].contiguous()
        outcome_cdf = torch.cumsum(table.prob, dim=-1).reshape(n_states * n_actions, -1)
        outcome_bounds = outcome_cdf[:, :-1].contiguous()
        outcomes = outcome_cdf.shape[1]
        flat_next = table.next_state.reshape(-1)
        flat_reward = table.reward.reshape(-1)
        flat_done = table.done.reshape(-1)

        state = torch.multinomial(table.initial, batch, replacement=True, generator=generator)
        # Episodes leave the batch as they end: each step draws and computes for the running
        # ones only (``running`` holds their indices), and the steps taken are written into
        # time-major steps × episodes tables once the last episode has ended.
        running = torch.arange(batch)
        positions, taken_pairs, taken_rewards = [], [], []
        steps = 0
        # index_select rather than tensor[index]: the latter is many times slower on CPU here.
        for t in range(self.horizon):
            uniforms = torch.rand((2, running.shape[0]), generator=generator, dtype=DTYPE)
            pair = state * n_actions + _count_below(uniforms[0], action_bounds, state)
            flat = pair * outcomes + _count_below(uniforms[1], outcome_bounds, pair)
            positions.append(running + t * batch)
            taken_pairs.append(pair)
            taken_rewards.append(flat_reward.index_select(0, flat))
            steps = t + 1
            state = flat_next.index_select(0, flat)
            ended = flat_done.index_select(0, flat)
            if bool(ended.any()):
                going_on = ~ended
                remaining = int(going_on.sum())
                if remaining == 0:
                    break
                # Packed in order by scatter (ended episodes to a spare last slot), not by
                # nonzero(), whose output shape no device can know before reading the data.
                slot = torch.where(going_on, going_on.cumsum(0) - 1, remaining)
                running = running.new_empty(remaining + 1).scatter_(0, slot, running)
                state = state.new_empty(remaining + 1).scatter_(0, slot, state)
                running, state = running[:remaining], state[:remaining]
        where = torch.cat(positions)
        pairs = torch.full((steps * batch,), -1, dtype=torch.int64).index_copy_(
            0, where, torch.cat(taken_pairs)).reshape(steps, batch)
        rewards = torch.zeros(steps * batch, dtype=DTYPE).index_copy_(
            0, where, torch.cat(taken_rewards)).reshape(steps, batch)
        reward_steps = rewards.T
        discounts = self.gamma ** torch.arange(steps, dtype=DTYPE)
        return Trajectories(
            pairs.T.reshape(*shape, steps),
            reward_steps.reshape(*shape, steps),
            (reward_steps @ discounts).reshape(shape),
        )

    def f(self, samples: Trajectories) -> Tensor:
        return samples.returns

    def step_score(self, theta: Tensor, samples: Trajectories, weights: Tensor) -> Tensor:
        """``Σ_t w_t ∇θ log π(a_t|s_t)`` per episode, shape ``(R, n, dim)``.

        ``weights`` has the steps' shape ``(R, n, T)``; steps after the end are ignored. With
        ``N_w[s, a] = Σ_t w_t 1[(s_t, a_t) = (s, a)]`` the result is
        ``N_w − (Σ_a N_w[s, a]) π(·|s)``, since ``∇θ[s,·] log π(a|s) = e_a − π(·|s)``.
        """
        table = self._table
        pair_count = table.n_states * table.n_actions
        lead, steps = samples.pairs.shape[:-1], samples.pairs.shape[-1]
        # Time-major, as sample() lays the steps out: one index_add_ reads them in memory
        # order, and each (episode, pair) cell adds its steps in time order.
        pairs = samples.pairs.movedim(-1, 0).reshape(steps, -1)
        episodes = pairs.shape[1]
        step_weights = weights.expand(samples.pairs.shape).movedim(-1, 0).reshape(steps, -1)
        # Cell 1 + e·SA + pair of a table with one spare cell in front: a step after the end
        # (pair −1) adds a zero to the cell before, which a zero leaves unchanged.
        cells = pairs + torch.arange(1, episodes * pair_count + 1, pair_count)
        weighted = torch.zeros(episodes * pair_count + 1, dtype=DTYPE)
        step_weights = torch.where(pairs >= 0, step_weights, 0.0)
        weighted.index_add_(0, cells.reshape(-1), step_weights.reshape(-1))
        weighted = weighted[1:].reshape(*lead, table.n_states, table.n_actions)
        visits = weighted.sum(-1, keepdim=True)
        return (weighted - visits * self.policy(theta)).flatten(-2)

    def score(self, theta: Tensor, samples: Trajectories) -> Tensor:
        return self.step_score(theta, samples, torch.ones_like(samples.rewards))

    def log_prob(self, theta: Tensor, samples: Trajectories) -> Tensor:
        # Σ_t log π(a_t|s_t) over the steps taken; the dynamics do not depend on θ.
        log_policy = torch.log_softmax(
            theta.reshape(self._table.n_states, self._table.n_actions), dim=-1).reshape(-1)
        steps = log_policy.index_select(0, samples.pairs.clamp(min=0).reshape(-1))
        return torch.where(samples.pairs >= 0, steps.reshape(samples.pairs.shape), 0.0).sum(-1)

    def check_theta(self) -> Tensor:
        return asymmetric_theta(self.initial_theta())

    def greedy_actions(self) -> Tensor:
        """The best first action in each state for the remaining horizon, shape ``(S,)``: the
        optimal policy of the finite-horizon MDP, by value iteration."""
        transition, mean_reward = self._dynamics
        values = torch.zeros(self._table.n_states, dtype=DTYPE)
        for _ in range(self.horizon):
            q = mean_reward + self.gamma * (transition @ values)
            values = q.max(dim=-1).values
        return q.argmax(dim=-1)

    def leaning_theta(self, strength: float) -> Tensor:
        """:func:`asymmetric_theta` plus ``strength`` on the greedy action of every state."""
        greedy = torch.nn.functional.one_hot(self.greedy_actions(), self._table.n_actions)
        return asymmetric_theta(self.initial_theta()) + strength * greedy.to(DTYPE).reshape(-1)

    def step_rewards(self, samples: Trajectories) -> Tensor:
        """The reward ``r_t`` of each step, shape ``(R, n, T)`` (0 after the end)."""
        return samples.rewards

    def reward_to_go(self, samples: Trajectories) -> Tensor:
        """``Σ_{k ≥ t} γ^k r_k`` for each step ``t``, shape ``(R, n, T)``."""
        steps = samples.rewards.shape[-1]
        discounts = self.gamma ** torch.arange(steps, dtype=DTYPE)
        # Summed from the last step back, one step of every episode at a time, time-major as
        # sample() lays the steps out (and step_score reads them): the sums of a reversed
        # cumsum, in its order (0 + the last term first), without its reversed copies.
        discounted = (samples.rewards * discounts).movedim(-1, 0)
        to_go = torch.empty_like(discounted)
        if steps:
            torch.add(discounted[-1], 0.0, out=to_go[-1])
        for t in range(steps - 2, -1, -1):
            torch.add(to_go[t + 1], discounted[t], out=to_go[t])
        return to_go.movedim(0, -1)

    def step_values(self, theta: Tensor, samples: Trajectories, values: Tensor) -> Tensor:
        """``V_t(s_t)`` at each step from a table ``values[t, s]`` (``(H + 1, S)``); 0 after
        the end."""
        steps = samples.pairs.shape[-1]
        states = samples.pairs.clamp(min=0) // self._table.n_actions
        time = torch.arange(steps).expand_as(states)
        looked_up = values[:steps].reshape(-1)[(time * values.shape[1] + states).reshape(-1)]
        return torch.where(samples.pairs >= 0, looked_up.reshape(states.shape), 0.0)

    def exact_values(self, theta: Tensor) -> Tensor:
        """The exact ``V_t(s)`` of the current policy, ``(H + 1, S)`` (``V_H = 0``)."""
        return self._backward_induction(theta)[1]

    @device_cached
    def _dynamics(self) -> tuple[Tensor, Tensor]:
        """Dense continuing transitions ``P[s, a, s']`` (terminations removed) and mean rewards."""
        table = self._table
        transition = torch.zeros(table.n_states, table.n_actions, table.n_states, dtype=DTYPE)
        transition.scatter_add_(2, table.next_state, table.prob * (~table.done))
        return transition, (table.prob * table.reward).sum(-1)

    def _backward_induction(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """``Q[t]`` for every step ``t < H`` and ``V[t]`` for ``t ≤ H``."""
        transition, mean_reward = self._dynamics
        policy = self.policy(theta)
        values = [torch.zeros(self._table.n_states, dtype=DTYPE)]
        q_values = []
        for _ in range(self.horizon):
            q = mean_reward + self.gamma * (transition @ values[-1])
            q_values.append(q)
            values.append((policy * q).sum(-1))
        q_values.reverse()
        values.reverse()
        return torch.stack(q_values), torch.stack(values)

    def value(self, theta: Tensor) -> Tensor:
        _, values = self._backward_induction(theta)
        return self._table.initial @ values[0]

    def exact_grad(self, theta: Tensor) -> Tensor:
        q_values, values = self._backward_induction(theta)
        transition, _ = self._dynamics
        flat_transition = transition.reshape(-1, transition.shape[-1])
        policy = self.policy(theta)
        occupancy = self._table.initial.clone()
        grad = torch.zeros_like(policy)
        discount = 1.0
        for t in range(self.horizon):
            advantage = q_values[t] - values[t][:, None]
            grad += discount * occupancy[:, None] * policy * advantage
            occupancy = (occupancy[:, None] * policy).reshape(-1) @ flat_transition
            discount *= self.gamma
        return grad.reshape(-1)


FEW_BOUNDS, MANY_DRAWS = 8, 2048
"""With up to ``FEW_BOUNDS`` bounds and at least ``MANY_DRAWS`` draws :func:`_count_below`
compares with each bound in turn; otherwise with the gathered rows of bounds at once, in
fewer operations (each costs a few µs however few the draws: the last episodes running)."""


def _count_below(uniforms: Tensor, bounds: Tensor, rows: Tensor) -> Tensor:
    """``Σ_k 1[bounds[row, k] < u]`` for each uniform and its row (int64): the outcome ``k``
    with ``cdf[k − 1] < u ≤ cdf[k]`` drawn by inverse CDF, for ``bounds`` all of each cdf but
    its last entry (``(rows, K − 1)``), so that rounding never counts past ``K − 1``.

    With few bounds and many draws, one gather, one comparison and one addition per bound
    into float64 (comparisons into booleans, and sums over a short last axis, are slower
    passes here).
    """
    if bounds.shape[1] > FEW_BOUNDS or uniforms.shape[0] < MANY_DRAWS:
        return (uniforms[:, None] > bounds.index_select(0, rows)).sum(-1)
    count = torch.zeros_like(uniforms)
    above = torch.empty_like(uniforms)
    for k in range(bounds.shape[1]):
        count += torch.gt(uniforms, bounds[:, k].index_select(0, rows), out=above)
    return count.long()


def dense_table(prob: Tensor, reward: Tensor, initial: Tensor) -> MDPTable:
    """An MDP without terminal transitions from dense ``(S, A, S')`` probabilities and rewards.

    Outcome ``k`` of ``(s, a)`` is next state ``k``; ``reward[s, a, s']`` is paid on that move.
    """
    n_states, n_actions, _ = prob.shape
    return MDPTable(
        prob,
        torch.arange(n_states).expand(n_states, n_actions, n_states).clone(),
        reward,
        torch.zeros_like(prob, dtype=torch.bool),
        initial,
    )


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

    display_name = "FrozenLake 4×4"
    parameter_symbols: ClassVar = {"gamma": "γ", "theta": "θ"}

    slippery: bool = True

    reference: ClassVar = "Towers et al., 2024 (Gymnasium), FrozenLake-v1"
    check_params: ClassVar = MappingProxyType({"horizon": 40})

    def check_theta(self) -> Tensor:
        # Near the uniform policy the goal is rarely reached and ∇J is lost in the estimates'
        # spread; a policy leaning towards the best actions reaches it one time in five.
        return self.leaning_theta(3.0)

    def table(self) -> MDPTable:
        return gymnasium_table("FrozenLake-v1", map_name="4x4", is_slippery=self.slippery)


@register("frozenlake_8x8")
@dataclass(frozen=True)
class FrozenLake8x8(TabularMDP):
    """gymnasium's FrozenLake-v1 on the 8x8 map, slippery: the goal is 14 moves away.

    Same dynamics as ``frozenlake`` on a larger map with ten holes; θ ∈ R^{64×4}. Under the
    uniform policy the return is tiny, so gradients are small and noisy (Towers et al., 2024).
    """

    display_name = "FrozenLake 8×8"
    parameter_symbols: ClassVar = {"gamma": "γ", "theta": "θ"}

    slippery: bool = True

    reference: ClassVar = "Towers et al., 2024 (Gymnasium), FrozenLake-v1 8x8"
    check_params: ClassVar = MappingProxyType({"horizon": 60})

    def check_theta(self) -> Tensor:
        # As for frozenlake: near the uniform policy one episode in a thousand succeeds.
        return self.leaning_theta(3.0)

    def table(self) -> MDPTable:
        return gymnasium_table("FrozenLake-v1", map_name="8x8", is_slippery=self.slippery)


@register("cliffwalking")
@dataclass(frozen=True)
class CliffWalking(TabularMDP):
    """gymnasium's CliffWalking-v1: 4x12 grid, −1 per step, −100 and back to start off the cliff.

    The episode ends at the goal; θ ∈ R^{48×4}. Rewards are large and negative, which makes
    baselines essential. Sutton & Barto, "Reinforcement Learning: An Introduction" (2nd ed.,
    2018), example 6.6; gymnasium's implementation (Towers et al., 2024).
    """

    display_name = "CliffWalking"
    parameter_symbols: ClassVar = {"gamma": "γ", "theta": "θ"}

    horizon: int = 50

    reference: ClassVar = "Sutton & Barto, 2018, example 6.6"
    # Returns over 50 steps swamp ∇J in noise; over 10 steps a 1% bias is visible in seconds.
    check_params: ClassVar = MappingProxyType({"horizon": 10})

    def table(self) -> MDPTable:
        return gymnasium_table("CliffWalking-v1")


@register("taxi")
@dataclass(frozen=True)
class Taxi(TabularMDP):
    """gymnasium's Taxi-v4: 500 states, 6 actions, pick up and drop off a passenger.

    −1 per step, −10 for an illegal pick-up or drop-off, +20 for delivering (which ends the
    episode); θ ∈ R^{500×6}. Dietterich, "Hierarchical reinforcement learning with the MAXQ
    value function decomposition", JAIR 2000; gymnasium's implementation.
    """

    display_name = "Taxi"
    parameter_symbols: ClassVar = {"gamma": "γ", "theta": "θ"}

    horizon: int = 50

    reference: ClassVar = "Dietterich, 2000"
    # θ has 3,000 entries, so every estimate is costly; a short horizon keeps episodes cheap.
    check_params: ClassVar = MappingProxyType({"horizon": 5})

    def table(self) -> MDPTable:
        return gymnasium_table("Taxi-v4")


@register("chain_mdp")
@dataclass(frozen=True)
class ChainMDP(TabularMDP):
    """The N-chain: a small sure reward nearby, a large one at the far end of the chain.

    States ``0..N−1``, start at 0. Action 0 ("forward") moves one state right, paying 0, or
    ``large`` when already at the end (where it stays); action 1 ("back") returns to state 0
    paying ``small``. With probability ``slip`` the other action is taken. Defaults N = 5,
    small = 2, large = 10, slip = 0.2 (Strens, "A Bayesian framework for reinforcement
    learning", ICML 2000). The large reward needs N − 1 forward moves in a row: a hard
    exploration problem whose score-function gradients have huge variance.
    """

    display_name = "N-chain"
    parameter_symbols: ClassVar = {"gamma": "γ", "theta": "θ"}

    n_states: int = 5
    small: float = 2.0
    large: float = 10.0
    slip: float = 0.2

    reference: ClassVar = "Strens, 2000"
    check_params: ClassVar = MappingProxyType({"horizon": 8, "gamma": 0.9})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_size(self.name, "n_states", self.n_states, low=2, high=10_000)
        for key in ("small", "large"):
            check_magnitude(self.name, key, getattr(self, key))
        check(0.0 <= self.slip <= 1.0, self.name, f"slip={self.slip} must lie in [0, 1]")

    def table(self) -> MDPTable:
        n = self.n_states
        prob = torch.zeros(n, 2, n, dtype=DTYPE)
        reward = torch.zeros(n, 2, n, dtype=DTYPE)
        for s in range(n):
            forward, back = min(s + 1, n - 1), 0
            pay_forward = self.large if s == n - 1 else 0.0
            for action, p_forward in ((0, 1 - self.slip), (1, self.slip)):
                prob[s, action, forward] += p_forward
                prob[s, action, back] += 1 - p_forward
                reward[s, action, forward] = pay_forward
                reward[s, action, back] = self.small
        initial = torch.zeros(n, dtype=DTYPE)
        initial[0] = 1.0
        return dense_table(prob, reward, initial)


@register("random_mdp")
@dataclass(frozen=True)
class RandomMDP(TabularMDP):
    """A Garnet random MDP: S states, A actions, each (s, a) reaching ``branching`` next states.

    For each ``(s, a)``, ``branching`` distinct next states are drawn uniformly and their
    probabilities by cutting [0, 1] at ``branching − 1`` uniform points; the reward
    ``r(s, a)`` is uniform on [0, 1]; the start state is uniform. All are drawn from ``seed``.
    Defaults S = 20, A = 4, branching = 3 (Archibald, McKinnon & Thomas, "On the generation of
    Markov decision processes", J. Oper. Res. Soc. 1995; Bhatnagar et al., "Natural
    actor-critic algorithms", Automatica 2009).
    """

    display_name = "random MDP"
    parameter_symbols: ClassVar = {"gamma": "γ", "theta": "θ"}

    S: int = 20
    A: int = 4
    branching: int = 3
    seed: int = 0

    reference: ClassVar = "Archibald et al., 1995; Bhatnagar et al., 2009"
    # Every step pays, so returns grow with the horizon and so does the estimates' spread.
    check_params: ClassVar = MappingProxyType({"horizon": 5})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_size(self.name, "S", self.S, high=10_000)
        check_size(self.name, "A", self.A, high=1_000)
        check_size(self.name, "S × A", self.S * self.A)
        check(1 <= self.branching <= self.S, self.name,
              f"branching={self.branching} must lie in 1..S={self.S}")

    def table(self) -> MDPTable:
        g = torch.Generator().manual_seed(self.seed)
        prob = torch.zeros(self.S, self.A, self.S, dtype=DTYPE)
        for s in range(self.S):
            for a in range(self.A):
                targets = torch.randperm(self.S, generator=g)[: self.branching]
                cuts = torch.sort(torch.rand(self.branching - 1, generator=g, dtype=DTYPE)).values
                edges = torch.cat([torch.zeros(1, dtype=DTYPE), cuts, torch.ones(1, dtype=DTYPE)])
                prob[s, a, targets] = edges.diff()
        reward = torch.rand(self.S, self.A, generator=g, dtype=DTYPE)
        reward = reward[:, :, None].expand(-1, -1, self.S).clone()
        return dense_table(prob, reward, torch.full((self.S,), 1 / self.S, dtype=DTYPE))
