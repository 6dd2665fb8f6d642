"""Multi-armed bandits with a softmax policy over arm logits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.problems import register
from vrbench.problems.base import DTYPE, Capability, Problem


class Pulls(NamedTuple):
    """Samples of a bandit: the arm pulled and the reward observed, each ``(R, n)``."""

    arms: Tensor
    rewards: Tensor


ARM_MEANS_10 = (0.2, -0.8, 1.5, 0.4, 1.2, -1.5, -0.1, -1.0, 0.8, -0.5)


@register("bandit_gaussian_10")
@dataclass(frozen=True)
class BanditGaussian10(Problem):
    """Ten-armed Gaussian bandit under a softmax policy: the policy-gradient bandit.

    ``a ~ softmax(θ)``, reward ``r ~ N(q_a, noise²)`` with fixed arm means
    ``q = (0.2, −0.8, 1.5, 0.4, 1.2, −1.5, −0.1, −1.0, 0.8, −0.5)``; ``J(θ) = Σ_a π_a q_a`` and
    ``∇J = π ⊙ (q − J)``. The score of a pull is ``onehot(a) − π``; the reward noise is part of
    the sample and does not depend on θ. The gradient-bandit testbed of Sutton & Barto,
    "Reinforcement Learning: An Introduction" (2nd ed., 2018), section 2.8.
    """

    noise: float = 1.0
    theta: float = 0.0

    capabilities: ClassVar = frozenset({Capability.DISCRETE})
    reference: ClassVar = "Sutton & Barto, 2018, section 2.8"

    def __post_init__(self) -> None:
        check(self.noise >= 0, self.name, f"noise={self.noise} must be non-negative")

    @property
    def means(self) -> Tensor:
        return torch.tensor(ARM_MEANS_10, dtype=DTYPE)

    @property
    def dim(self) -> int:
        return len(ARM_MEANS_10)

    def initial_theta(self) -> Tensor:
        return torch.full((self.dim,), self.theta, dtype=DTYPE)

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator) -> Pulls:
        probs = torch.softmax(theta, dim=0)
        arms = torch.multinomial(probs, shape[0] * shape[1], replacement=True, generator=generator)
        arms = arms.reshape(shape)
        noise = torch.randn(shape, generator=generator, dtype=DTYPE)
        return Pulls(arms, self.means[arms] + self.noise * noise)

    def f(self, samples: Pulls) -> Tensor:
        return samples.rewards

    def score(self, theta: Tensor, samples: Pulls) -> Tensor:
        onehot = torch.nn.functional.one_hot(samples.arms, self.dim).to(DTYPE)
        return onehot - torch.softmax(theta, dim=0)

    def value(self, theta: Tensor) -> Tensor:
        return torch.softmax(theta, dim=0) @ self.means

    def exact_grad(self, theta: Tensor) -> Tensor:
        probs = torch.softmax(theta, dim=0)
        return probs * (self.means - probs @ self.means)

    def sample_width(self) -> int:
        return 2
