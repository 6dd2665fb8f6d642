"""Univariate Gaussian problems with θ = (μ, σ)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.problems import register
from vrbench.problems.base import DTYPE, Capability, Problem


@dataclass(frozen=True)
class _Gaussian(Problem):
    """Shared sampling and score of ``x ~ N(μ, σ²)`` with ``θ = (μ, σ)``.

    With ``ε = (x − μ)/σ`` the score is ``∂μ log p = ε/σ`` and ``∂σ log p = (ε² − 1)/σ``; the
    reparameterization is ``x = μ + σ ε`` with ``ε ~ N(0, 1)``.
    """

    mu: float = 0.0
    sigma: float = 1.0

    def __post_init__(self) -> None:
        check(self.sigma > 0, self.name, f"sigma={self.sigma} must be positive")
        check(math.isfinite(self.mu), self.name, f"mu={self.mu} must be finite")

    @property
    def dim(self) -> int:
        return 2

    def initial_theta(self) -> Tensor:
        return torch.tensor([self.mu, self.sigma], dtype=DTYPE)

    def sample_noise(self, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=DTYPE)

    def transform(self, theta: Tensor, noise: Tensor) -> Tensor:
        return theta[..., 0] + theta[..., 1] * noise

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        return self.transform(theta, self.sample_noise(shape, generator))

    def score(self, theta: Tensor, samples: Tensor) -> Tensor:
        mu, sigma = theta[0], theta[1]
        eps = (samples - mu) / sigma
        return torch.stack([eps / sigma, (eps**2 - 1) / sigma], dim=-1)


@register("gaussian_quadratic")
@dataclass(frozen=True)
class GaussianQuadratic(_Gaussian):
    """Gaussian with f(x) = x²: the textbook case where the pathwise estimator shines.

    ``x ~ N(μ, σ²)``, ``J = μ² + σ²``, ``∇J = (2μ, 2σ)``. Used throughout Mohamed et al.,
    "Monte Carlo Gradient Estimation in Machine Learning", JMLR 2020, section 3, to compare the
    score-function and pathwise estimators' variances, which are known in closed form here.
    """

    mu: float = 1.0
    sigma: float = 1.5

    capabilities: ClassVar = frozenset(
        {Capability.CONTINUOUS, Capability.DIFFERENTIABLE, Capability.REPARAMETERIZABLE}
    )
    reference: ClassVar = "Mohamed et al., 2020 (JMLR), section 3"

    def f(self, samples: Tensor) -> Tensor:
        return samples**2

    def value(self, theta: Tensor) -> Tensor:
        return theta[0] ** 2 + theta[1] ** 2

    def exact_grad(self, theta: Tensor) -> Tensor:
        return 2 * theta.clone()


@register("gaussian_step")
@dataclass(frozen=True)
class GaussianStep(_Gaussian):
    """Gaussian with the step f(x) = 1[x > 0]: non-differentiable, so only score methods apply.

    ``x ~ N(μ, σ²)``, ``J = Φ(μ/σ)``, ``∇J = φ(μ/σ) (1/σ, −μ/σ²)``. The pathwise gradient of
    the step is zero almost everywhere, hence biased; the problem declares f non-differentiable.
    A standard discontinuous test function (Mohamed et al., JMLR 2020, section 5).
    """

    mu: float = 0.5
    sigma: float = 1.0

    capabilities: ClassVar = frozenset({Capability.CONTINUOUS, Capability.REPARAMETERIZABLE})
    reference: ClassVar = "Mohamed et al., 2020 (JMLR), section 5"

    def f(self, samples: Tensor) -> Tensor:
        return (samples > 0).to(DTYPE)

    def value(self, theta: Tensor) -> Tensor:
        return torch.special.ndtr(theta[0] / theta[1])

    def exact_grad(self, theta: Tensor) -> Tensor:
        mu, sigma = theta[0], theta[1]
        z = mu / sigma
        density = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
        return torch.stack([density / sigma, -density * mu / sigma**2])
