"""Bernoulli problems of the discrete-gradient literature: one logit, or a vector of them."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.problems import register
from vrbench.problems.base import (
    DTYPE,
    Capability,
    Problem,
    asymmetric_theta,
    below,
    check_size,
)

MAX_SUPPORT_BITS = 12
"""Up to this many bits the support (2^D vectors) is enumerated."""


@dataclass(frozen=True)
class IndependentBernoullis(Problem):
    """Shared sampling, score and relaxation of ``dim`` independent bits ``b_i ~
    Bernoulli(sigmoid(θ_i))``, for problems whose sample is the bits themselves.

    ``b = 1[u < sigmoid(θ)]`` inverts uniforms; the score is ``b − sigmoid(θ)`` and
    ``log p(b; θ) = Σ_i b_i θ_i − softplus(θ_i)``. Subclasses supply θ, f, J and ∇J.
    """

    capabilities: ClassVar = frozenset({
        Capability.DISCRETE, Capability.INVERSE_TRANSFORM, Capability.BERNOULLI_LOGITS,
        Capability.RELAXABLE})

    @property
    def noise_dim(self) -> int:  # type: ignore[override]
        return self.dim

    def from_uniforms(self, theta: Tensor, uniforms: Tensor) -> Tensor:
        return below(uniforms, torch.sigmoid(theta))

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        uniforms = torch.rand((*shape, self.dim), generator=generator, dtype=DTYPE)
        return below(uniforms, torch.sigmoid(theta), out=uniforms)  # the bits replace u

    def relax(self, theta: Tensor, uniforms: Tensor, temperature: float) -> Tensor:
        """Binary Concrete: sigmoid((θ + log u − log(1 − u)) / τ) (Maddison et al., 2017)."""
        return torch.sigmoid((theta + torch.log(uniforms) - torch.log1p(-uniforms)) / temperature)

    def harden(self, relaxed: Tensor) -> Tensor:
        return (relaxed > 0.5).to(DTYPE)

    def conditional_uniforms(self, theta: Tensor, hard: Tensor, uniforms: Tensor) -> Tensor:
        """``u`` given ``b = 1[u > 1 − p]``: uniform on ``(1 − p, 1)`` or ``(0, 1 − p)``."""
        p = torch.sigmoid(theta)
        return torch.where(hard > 0, 1 - p + uniforms * p, uniforms * (1 - p))

    def sample_mean(self, theta: Tensor) -> Tensor:
        return torch.sigmoid(theta)

    def score(self, theta: Tensor, samples: Tensor) -> Tensor:
        return samples - torch.sigmoid(theta)

    def weighted_score(self, theta: Tensor, samples: Tensor, weights: Tensor) -> Tensor:
        # Σ_j w_j (b_j − p) = Σ_j w_j b_j − p Σ_j w_j: no (R, n, D) tensor of scores.
        weighted = (weights[..., None] * samples).sum(1)
        return (weighted - weights.sum(1, keepdim=True) * torch.sigmoid(theta)) / weights.shape[1]

    def log_prob(self, theta: Tensor, samples: Tensor) -> Tensor:
        return (samples * theta - torch.nn.functional.softplus(theta)).sum(-1)

    def support(self) -> Tensor:
        if self.dim > MAX_SUPPORT_BITS:
            raise NotImplementedError(f"{self.name}: 2^{self.dim} outcomes are too many to list")
        bits = (torch.arange(2**self.dim)[:, None] >> torch.arange(self.dim)) & 1
        return bits.to(DTYPE)[None]

    def sample_width(self) -> int:
        return self.dim


@register("bernoulli_toy")
@dataclass(frozen=True)
class BernoulliToy(IndependentBernoullis):
    """One Bernoulli with logit θ and f(b) = (b − t)²: a tiny signal buried in noise.

    ``b ~ Bernoulli(p)``, ``p = sigmoid(θ)``, ``f(b) = (b − t)²``, so
    ``J(θ) = p (1 − t)² + (1 − p) t²`` and ``∇J = p (1 − p) (1 − 2t)``. The score is
    ``∂θ log p(b; θ) = b − p``. With ``t = 0.499`` the gradient is 500 times smaller than f
    itself, which makes the score-function estimator's signal-to-noise ratio tiny; the papers
    also use ``t ∈ {0.49, 0.4}``. Introduced by Tucker et al., "REBAR: Low-variance, unbiased
    gradient estimates for discrete latent variable models", NeurIPS 2017, section 5.1.
    """

    display_name = "Bernoulli, t = {t}"
    parameter_symbols: ClassVar = {"theta": "θ"}

    t: float = 0.499
    theta: float = 0.0

    reference: ClassVar = "Tucker et al., 2017 (REBAR), section 5.1"
    # At t = 0.499 the gradient is 1/250 of the estimates' spread, so a 1% bias would take
    # 10^10 estimates to see; at t = 0.3 it is 1/2, and p = sigmoid(0.6) ≠ 1/2 keeps p and
    # 1 − p apart.
    check_params: ClassVar = MappingProxyType({"t": 0.3, "theta": 0.6})

    def __post_init__(self) -> None:
        check(0.0 <= self.t <= 1.0, self.name, f"t={self.t} must lie in [0, 1]")
        check(abs(self.theta) < 30.0, self.name, f"theta={self.theta} must lie in (-30, 30)")

    @property
    def dim(self) -> int:
        return 1

    def initial_theta(self) -> Tensor:
        return torch.full((self.dim,), self.theta, dtype=DTYPE)

    def f(self, samples: Tensor) -> Tensor:
        if samples.shape[-1] == 1:  # one bit: its own mean, without a reduction's cost
            distance = samples[..., 0] - self.t
            return distance * distance
        distance = samples - self.t
        return (distance * distance).mean(dim=-1)

    def value(self, theta: Tensor) -> Tensor:
        p = torch.sigmoid(theta)
        return (p * (1 - self.t) ** 2 + (1 - p) * self.t**2).mean()

    def exact_grad(self, theta: Tensor) -> Tensor:
        p = torch.sigmoid(theta)
        return p * (1 - p) * (1 - 2 * self.t) / self.dim


@register("bernoulli_vector")
@dataclass(frozen=True)
class BernoulliVector(BernoulliToy):
    """D independent Bernoullis with f(b) = mean_i (b_i − t)²: the toy problem in D dimensions.

    ``b_i ~ Bernoulli(sigmoid(θ_i))``, ``J = mean_i [p_i (1 − t)² + (1 − p_i) t²]``,
    ``∂J/∂θ_i = p_i (1 − p_i) (1 − 2t) / D``; the score is ``b − p``. The multi-dimensional
    version of the REBAR toy used to compare ARM (Yin & Zhou, ICLR 2019), RELAX (Grathwohl et
    al., ICLR 2018) and DisARM (Dong, Mnih & Tucker, NeurIPS 2020).
    """

    display_name = "Bernoulli, D = {D}, t = {t}"
    parameter_symbols: ClassVar = {"theta": "θ"}

    D: int = 20

    reference: ClassVar = "Yin & Zhou, 2019 (ARM); Dong et al., 2020 (DisARM)"
    # Eight coordinates, each tested on its own, with distinct logits (see check_theta).
    check_params: ClassVar = MappingProxyType({"t": 0.3, "theta": 0.3, "D": 8})

    def check_theta(self) -> Tensor:
        return asymmetric_theta(self.initial_theta(), 0.8)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_size(self.name, "D", self.D)

    @property
    def dim(self) -> int:
        return self.D
