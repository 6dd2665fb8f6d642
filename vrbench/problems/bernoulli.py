"""The one-Bernoulli toy problem of the REBAR paper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.problems import register
from vrbench.problems.base import DTYPE, Capability, Problem


@register("bernoulli_toy")
@dataclass(frozen=True)
class BernoulliToy(Problem):
    """One Bernoulli with logit θ and f(b) = (b − t)²: a tiny signal buried in noise.

    ``b ~ Bernoulli(p)``, ``p = sigmoid(θ)``, ``f(b) = (b − t)²``, so
    ``J(θ) = p (1 − t)² + (1 − p) t²`` and ``∇J = p (1 − p) (1 − 2t)``. The score is
    ``∂θ log p(b; θ) = b − p``. With ``t = 0.499`` the gradient is 500 times smaller than f
    itself, which makes the score-function estimator's signal-to-noise ratio tiny.
    Introduced by Tucker et al., "REBAR: Low-variance, unbiased gradient estimates for discrete
    latent variable models", NeurIPS 2017, section 5.1.
    """

    t: float = 0.499
    theta: float = 0.0

    capabilities: ClassVar = frozenset({Capability.DISCRETE})
    reference: ClassVar = "Tucker et al., 2017 (REBAR), section 5.1"

    def __post_init__(self) -> None:
        check(0.0 <= self.t <= 1.0, self.name, f"t={self.t} must lie in [0, 1]")
        check(abs(self.theta) < 30.0, self.name, f"theta={self.theta} must lie in (-30, 30)")

    @property
    def dim(self) -> int:
        return 1

    def initial_theta(self) -> Tensor:
        return torch.tensor([self.theta], dtype=DTYPE)

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        p = torch.sigmoid(theta[0])
        return (torch.rand(shape, generator=generator, dtype=DTYPE) < p).to(DTYPE)

    def f(self, samples: Tensor) -> Tensor:
        return (samples - self.t) ** 2

    def score(self, theta: Tensor, samples: Tensor) -> Tensor:
        return (samples - torch.sigmoid(theta[0])).unsqueeze(-1)

    def value(self, theta: Tensor) -> Tensor:
        p = torch.sigmoid(theta[0])
        return p * (1 - self.t) ** 2 + (1 - p) * self.t**2

    def exact_grad(self, theta: Tensor) -> Tensor:
        p = torch.sigmoid(theta[0])
        return (p * (1 - p) * (1 - 2 * self.t)).reshape(1)
