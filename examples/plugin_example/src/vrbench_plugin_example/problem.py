"""A Poisson count with a capped reward."""

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from vrbench.problems import DTYPE, Capability, Problem


@dataclass(frozen=True)
class PoissonCapped(Problem):
    """Poisson count with log-rate θ and the capped reward f(k) = min(k, cap).

    ``k ~ Poisson(λ)``, ``λ = exp(θ)``, ``P(k) = λ^k e^{−λ} / k!``. Since ``f − cap`` vanishes
    from ``k = cap`` on, ``J = cap + Σ_{k<cap} (k − cap) P(k)``, and with
    ``∂θ P(k) = P(k) (k − λ)``, ``∇J = Σ_{k<cap} (k − cap) P(k) (k − λ)``: exact finite sums.
    The score is ``∂θ log P(k) = k − λ``.
    """

    cap: int = 3
    theta: float = 0.5

    capabilities = frozenset({Capability.DISCRETE})
    display_name = "Poisson, capped at {cap}"

    @property
    def dim(self) -> int:
        return 1

    def initial_theta(self) -> Tensor:
        return torch.tensor([self.theta], dtype=DTYPE)

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        rate = torch.exp(theta[0]).expand(shape)
        return torch.poisson(rate, generator=generator)

    def f(self, samples: Tensor) -> Tensor:
        return samples.clamp(max=self.cap)

    def score(self, theta: Tensor, samples: Tensor) -> Tensor:
        return (samples - torch.exp(theta[0])).unsqueeze(-1)

    def log_prob(self, theta: Tensor, samples: Tensor) -> Tensor:
        # Optional: lets `vrbench check` hold the score against autograd exactly.
        return samples * theta[0] - torch.exp(theta[0]) - torch.lgamma(samples + 1)

    def _probabilities(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        rate = torch.exp(theta[0])
        k = torch.arange(self.cap, dtype=DTYPE)
        log_factorial = torch.tensor([math.lgamma(i + 1) for i in range(self.cap)], dtype=DTYPE)
        return k, torch.exp(k * torch.log(rate) - rate - log_factorial)

    def value(self, theta: Tensor) -> Tensor:
        # f − cap vanishes from k = cap on, so J = cap + Σ_{k<cap} (k − cap) P(k).
        k, prob = self._probabilities(theta)
        return self.cap + ((k - self.cap) * prob).sum()

    def exact_grad(self, theta: Tensor) -> Tensor:
        # ∂θ P(k) = P(k) (k − λ).
        k, prob = self._probabilities(theta)
        rate = torch.exp(theta[0])
        return ((k - self.cap) * prob * (k - rate)).sum().reshape(1)
