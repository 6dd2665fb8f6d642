"""Multi-armed and contextual bandits under softmax policies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.devices import device_cached
from vrbench.problems import register
from vrbench.problems.base import (
    DTYPE,
    Capability,
    Problem,
    asymmetric_theta,
    below,
    check_magnitude,
    check_size,
)


class Pulls(NamedTuple):
    """Samples of a bandit: context (0 without contexts), arm pulled and reward, each ``(R, n)``."""

    contexts: Tensor
    arms: Tensor
    rewards: Tensor


@dataclass(frozen=True)
class _SoftmaxBandit(Problem):
    """Softmax policy over arm logits θ; subclasses give the arm means and draw the rewards.

    ``a ~ π = softmax(θ)``, ``J = Σ_a π_a q_a``, ``∇J = π ⊙ (q − J)``; the score of a pull is
    ``onehot(a) − π``. The reward's randomness is part of the sample and does not depend on θ.
    """

    theta: float = 0.0

    capabilities: ClassVar = frozenset({Capability.DISCRETE})
    maximize: ClassVar = True

    @property
    def means(self) -> Tensor:
        raise NotImplementedError

    def draw_rewards(self, arms: Tensor, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        raise NotImplementedError  # the number of arms, known without building the means

    def initial_theta(self) -> Tensor:
        return torch.full((self.dim,), self.theta, dtype=DTYPE)

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator) -> Pulls:
        # Inverse-CDF sampling, several times faster than torch.multinomial.
        cdf = torch.cumsum(torch.softmax(theta, dim=0), dim=0)
        uniforms = torch.rand(shape, generator=generator, dtype=DTYPE)
        arms = inverse_cdf(cdf, uniforms)
        no_context = arms.new_zeros(()).expand(shape)  # one stored zero, read everywhere
        return Pulls(no_context, arms, self.draw_rewards(arms, generator))

    def f(self, samples: Pulls) -> Tensor:
        return samples.rewards

    def score(self, theta: Tensor, samples: Pulls) -> Tensor:
        onehot = torch.nn.functional.one_hot(samples.arms, self.dim).to(DTYPE)
        return onehot - torch.softmax(theta, dim=0)

    def weighted_score(self, theta: Tensor, samples: Pulls, weights: Tensor) -> Tensor:
        # Σ_j w_j (e_{a_j} − π) = (weights summed per arm) − (Σ_j w_j) π: no one-hot tensor.
        per_arm = torch.zeros(weights.shape[0], self.dim, dtype=DTYPE)
        per_arm.scatter_add_(1, samples.arms, weights)
        total = weights.sum(dim=1, keepdim=True)
        return per_arm.sub_(total * torch.softmax(theta, dim=0)).div_(weights.shape[1])

    def log_prob(self, theta: Tensor, samples: Pulls) -> Tensor:
        # log π(a); the reward's density does not depend on θ.
        return _lookup(torch.log_softmax(theta, dim=0), samples.arms)

    def check_theta(self) -> Tensor:
        return asymmetric_theta(self.initial_theta())

    def value(self, theta: Tensor) -> Tensor:
        return torch.softmax(theta, dim=0) @ self.means

    def exact_grad(self, theta: Tensor) -> Tensor:
        probs = torch.softmax(theta, dim=0)
        return probs * (self.means - probs @ self.means)

    def sample_width(self) -> int:
        return 3


FEW_ARMS = 16
"""Up to this many arms :func:`inverse_cdf` compares with each bound in turn (a few µs per
pass over the draws) rather than binary-searching (``torch.searchsorted``, about 10 ns per
draw on the CPU whatever the number of arms)."""


def inverse_cdf(cdf: Tensor, uniforms: Tensor) -> Tensor:
    """The arm ``a`` with ``cdf[a − 1] ≤ u < cdf[a]`` for each uniform (int64, the uniforms'
    shape), the last arm where rounding leaves ``u ≥ cdf[−1]``.

    That arm is the number of bounds ``cdf[:−1]`` at or below ``u`` (the cdf of positive
    probabilities never decreases): with few arms, counted in float64 by one comparison and
    one addition per bound written into the same two tensors (comparisons into booleans and
    sums of booleans are slower passes on the CPU), then converted once.
    """
    bounds = cdf[:-1]
    if bounds.numel() > FEW_ARMS:
        return torch.searchsorted(cdf, uniforms, right=True).clamp_(max=bounds.numel())
    count = torch.zeros_like(uniforms)
    above = torch.empty_like(uniforms)
    for bound in bounds:
        count += torch.ge(uniforms, bound, out=above)
    return count.long()


def _lookup(values: Tensor, index: Tensor) -> Tensor:
    """``values[index]`` for a 1-D ``values``; index_select is several times faster on CPU."""
    return values.index_select(0, index.reshape(-1)).reshape(index.shape)


ARM_MEANS_10 = (0.2, -0.8, 1.5, 0.4, 1.2, -1.5, -0.1, -1.0, 0.8, -0.5)


@register("bandit_gaussian_10")
@dataclass(frozen=True)
class BanditGaussian10(_SoftmaxBandit):
    """Ten-armed Gaussian bandit under a softmax policy: the policy-gradient bandit.

    ``a ~ softmax(θ)``, reward ``r ~ N(q_a, noise²)`` with fixed arm means
    ``q = (0.2, −0.8, 1.5, 0.4, 1.2, −1.5, −0.1, −1.0, 0.8, −0.5)``; ``J(θ) = Σ_a π_a q_a`` and
    ``∇J = π ⊙ (q − J)``. The gradient-bandit testbed of Sutton & Barto, "Reinforcement
    Learning: An Introduction" (2nd ed., 2018), section 2.8.
    """

    display_name = "Gaussian bandit"
    parameter_symbols: ClassVar = {"theta": "θ"}

    noise: float = 1.0

    reference: ClassVar = "Sutton & Barto, 2018, section 2.8"

    def __post_init__(self) -> None:
        check(self.noise >= 0, self.name, f"noise={self.noise} must be non-negative")
        check_magnitude(self.name, "noise", self.noise)

    @property
    def dim(self) -> int:
        return len(ARM_MEANS_10)

    @device_cached
    def means(self) -> Tensor:
        return torch.tensor(ARM_MEANS_10, dtype=DTYPE)

    def draw_rewards(self, arms: Tensor, generator: torch.Generator) -> Tensor:
        noise = torch.randn(arms.shape, generator=generator, dtype=DTYPE)
        return _lookup(self.means, arms) + self.noise * noise


@register("bandit_bernoulli_k")
@dataclass(frozen=True)
class BanditBernoulliK(_SoftmaxBandit):
    """K-armed Bernoulli bandit (K = 5 by default, 100 for the wide version) under a softmax.

    Arm ``a`` pays 1 with probability ``q_a = 0.05 + 0.9 a/(K − 1)`` (evenly spaced from 0.05
    to 0.95; for K = 5: 0.05, 0.275, 0.5, 0.725, 0.95), else 0. ``J = Σ_a π_a q_a``,
    ``∇J = π ⊙ (q − J)``. The Bernoulli bandit of Lattimore & Szepesvári, "Bandit Algorithms"
    (2020), chapter 4; with K = 100 the softmax spreads the signal over many arms.
    """

    display_name = "Bernoulli bandit, K = {arms}"
    parameter_symbols: ClassVar = {"theta": "θ"}

    arms: int = 5

    reference: ClassVar = "Lattimore & Szepesvári, 2020, chapter 4"

    def __post_init__(self) -> None:
        check_size(self.name, "arms", self.arms, low=2)

    @property
    def dim(self) -> int:
        return self.arms

    @device_cached
    def means(self) -> Tensor:
        return 0.05 + 0.9 * torch.arange(self.arms, dtype=DTYPE) / (self.arms - 1)

    def draw_rewards(self, arms: Tensor, generator: torch.Generator) -> Tensor:
        uniforms = torch.rand(arms.shape, generator=generator, dtype=DTYPE)
        return below(uniforms, _lookup(self.means, arms), out=uniforms)

    def log_prob(self, theta: Tensor, samples: Pulls) -> Tensor:
        # Exact, so that the support's probabilities add up: log π(a) + log P(r | a).
        means = _lookup(self.means, samples.arms)
        reward = torch.where(samples.rewards > 0, means, 1 - means)
        return super().log_prob(theta, samples) + torch.log(reward)

    def support(self) -> Pulls:
        arms = torch.arange(self.arms).repeat_interleave(2)[None]
        rewards = torch.arange(2, dtype=DTYPE).repeat(self.arms)[None]
        return Pulls(torch.zeros_like(arms), arms, rewards)


@register("contextual_bandit")
@dataclass(frozen=True)
class ContextualBandit(Problem):
    """Linear-softmax policy over a fixed set of contexts with Gaussian rewards.

    Context ``c`` is uniform over C fixed feature vectors ``φ_c ∈ R^F``; ``π(a|c) =
    softmax_a(θ_a · φ_c)`` with ``θ ∈ R^{A×F}``; reward ``r ~ N(q[c, a], 1)``. Features and
    means are drawn once from ``seed`` (standard normal). ``J = (1/C) Σ_c Σ_a π(a|c) q[c, a]``,
    ``∇θ_a J = (1/C) Σ_c π(a|c) (q[c, a] − V_c) φ_c`` with ``V_c = Σ_a π(a|c) q[c, a]``; the
    score is ``(onehot(a) − π(·|c)) ⊗ φ_c``. The linear contextual bandit of Li et al., "A
    contextual-bandit approach to personalized news article recommendation", WWW 2010, with
    a softmax (policy-gradient) learner.
    """

    display_name = "contextual bandit"
    parameter_symbols: ClassVar = {"theta": "θ"}

    contexts: int = 8
    actions: int = 5
    features: int = 4
    seed: int = 0
    theta: float = 0.0

    capabilities: ClassVar = frozenset({Capability.DISCRETE})
    maximize: ClassVar = True
    reference: ClassVar = "Li et al., 2010"

    def __post_init__(self) -> None:
        for key in ("contexts", "features"):
            check_size(self.name, key, getattr(self, key), high=10_000)
        check_size(self.name, "actions", self.actions, low=2, high=10_000)
        check_size(self.name, "actions × features", self.actions * self.features)

    @device_cached
    def tables(self) -> tuple[Tensor, Tensor]:
        """Context features ``(C, F)`` and mean rewards ``(C, A)``, fixed by ``seed``."""
        g = torch.Generator().manual_seed(self.seed)
        phi = torch.randn(self.contexts, self.features, generator=g, dtype=DTYPE)
        q = torch.randn(self.contexts, self.actions, generator=g, dtype=DTYPE)
        return phi, q

    @property
    def dim(self) -> int:
        return self.actions * self.features

    def initial_theta(self) -> Tensor:
        return torch.full((self.dim,), self.theta, dtype=DTYPE)

    def policy(self, theta: Tensor) -> Tensor:
        """``π(a|c)`` as a ``(C, A)`` matrix."""
        phi, _ = self.tables
        return torch.softmax(phi @ theta.reshape(self.actions, self.features).T, dim=-1)

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator) -> Pulls:
        _, q = self.tables
        total = shape[0] * shape[1]
        contexts = torch.randint(self.contexts, (total,), generator=generator)
        cdf = torch.cumsum(self.policy(theta), dim=-1)[contexts]
        uniforms = torch.rand((total, 1), generator=generator, dtype=DTYPE)
        arms = (uniforms > cdf).sum(-1).clamp_(max=self.actions - 1)
        rewards = q[contexts, arms] + torch.randn(total, generator=generator, dtype=DTYPE)
        return Pulls(contexts.reshape(shape), arms.reshape(shape), rewards.reshape(shape))

    def f(self, samples: Pulls) -> Tensor:
        return samples.rewards

    def score(self, theta: Tensor, samples: Pulls) -> Tensor:
        phi, _ = self.tables
        onehot = torch.nn.functional.one_hot(samples.arms, self.actions).to(DTYPE)
        centered = onehot - self.policy(theta)[samples.contexts]
        return (centered[..., :, None] * phi[samples.contexts][..., None, :]).flatten(-2)

    def log_prob(self, theta: Tensor, samples: Pulls) -> Tensor:
        # log π(a|c); the context's and the reward's densities do not depend on θ.
        log_policy = torch.log_softmax(
            self.tables[0] @ theta.reshape(self.actions, self.features).T, dim=-1)
        return log_policy.reshape(-1)[samples.contexts * self.actions + samples.arms]

    def check_theta(self) -> Tensor:
        return asymmetric_theta(self.initial_theta())

    def value(self, theta: Tensor) -> Tensor:
        _, q = self.tables
        return (self.policy(theta) * q).sum(-1).mean()

    def exact_grad(self, theta: Tensor) -> Tensor:
        phi, q = self.tables
        policy = self.policy(theta)
        advantage = policy * (q - (policy * q).sum(-1, keepdim=True))
        return (advantage.T @ phi / self.contexts).reshape(-1)

    def sample_width(self) -> int:
        return 3
