"""A single categorical variable with a non-smooth reward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.problems import register
from vrbench.problems.base import DTYPE, Capability, Problem, asymmetric_theta, check_size


@register("categorical_target")
@dataclass(frozen=True)
class CategoricalTarget(Problem):
    """One categorical with K categories, logits θ, reward 1 at a target category plus a ripple.

    ``k ~ softmax(θ)``, ``f(k) = 1[k = target] + 0.1 cos(2.5 k)``: a one-hot target perturbed by
    a fixed, non-smooth pattern, so every category pays something different. ``J = Σ_k π_k f(k)``
    and ``∇J = π ⊙ (f − J)``; the score is ``onehot(k) − π``. The categorical analogue of the
    Bernoulli toy (Jang, Gu & Poole, "Categorical reparameterization with Gumbel-softmax",
    ICLR 2017; Grathwohl et al., RELAX, ICLR 2018).
    """

    display_name = "categorical, K = {K}"
    parameter_symbols: ClassVar = {"theta": "θ"}

    K: int = 10
    target: int = 3
    theta: float = 0.0

    capabilities: ClassVar = frozenset({Capability.DISCRETE, Capability.RELAXABLE})
    maximize: ClassVar = True
    reference: ClassVar = "Jang et al., 2017; Grathwohl et al., 2018"

    def __post_init__(self) -> None:
        check_size(self.name, "K", self.K, low=2)
        check(0 <= self.target < self.K, self.name,
              f"target={self.target} must lie in 0..{self.K - 1}")

    @property
    def rewards(self) -> Tensor:
        k = torch.arange(self.K, dtype=DTYPE)
        return (k == self.target).to(DTYPE) + 0.1 * torch.cos(2.5 * k)

    @property
    def dim(self) -> int:
        return self.K

    def initial_theta(self) -> Tensor:
        return torch.full((self.K,), self.theta, dtype=DTYPE)

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        probs = torch.softmax(theta, dim=0)
        draws = torch.multinomial(probs, shape[0] * shape[1], replacement=True,
                                  generator=generator)
        return draws.reshape(shape)

    def f(self, samples: Tensor) -> Tensor:
        return self.rewards[samples]

    @property
    def noise_dim(self) -> int:  # type: ignore[override]
        return self.K

    def relax(self, theta: Tensor, uniforms: Tensor, temperature: float) -> Tensor:
        """Gumbel-softmax: softmax((θ + g) / τ) with g = −log(−log u) (Jang et al., 2017)."""
        gumbel = -torch.log(-torch.log(uniforms))
        return torch.softmax((theta + gumbel) / temperature, dim=-1)

    def harden(self, relaxed: Tensor) -> Tensor:
        return torch.nn.functional.one_hot(relaxed.argmax(-1), self.K).to(DTYPE)

    def f_relaxed(self, relaxed: Tensor) -> Tensor:
        return relaxed @ self.rewards

    def embed(self, samples: Tensor) -> Tensor:
        return torch.nn.functional.one_hot(samples, self.K).to(DTYPE)

    def conditional_uniforms(self, theta: Tensor, hard: Tensor, uniforms: Tensor) -> Tensor:
        """Gumbels given their argmax k, as uniforms: ``u_k = v_k^{π_k}``, ``u_i = v_i
        v_k^{π_i}`` (the top perturbed logit is Gumbel(log Σ e^θ), the others are truncated
        below it; Maddison, Tarlow & Minka, "A* sampling", NeurIPS 2014)."""
        probs = torch.softmax(theta, dim=-1)
        v_top = (uniforms * hard).sum(-1, keepdim=True)
        return torch.where(hard > 0, v_top**probs, uniforms * v_top**probs)

    def sample_mean(self, theta: Tensor) -> Tensor:
        return torch.softmax(theta, dim=-1)

    def score(self, theta: Tensor, samples: Tensor) -> Tensor:
        onehot = torch.nn.functional.one_hot(samples, self.K).to(DTYPE)
        return onehot - torch.softmax(theta, dim=0)

    def log_prob(self, theta: Tensor, samples: Tensor) -> Tensor:
        return torch.log_softmax(theta, dim=0)[samples]

    def support(self) -> Tensor:
        return torch.arange(self.K)[None]

    def check_theta(self) -> Tensor:
        return asymmetric_theta(self.initial_theta())

    def value(self, theta: Tensor) -> Tensor:
        return torch.softmax(theta, dim=0) @ self.rewards

    def exact_grad(self, theta: Tensor) -> Tensor:
        probs = torch.softmax(theta, dim=0)
        return probs * (self.rewards - probs @ self.rewards)
