"""Gaussian problems: univariate with θ = (μ, σ), and diagonal in D dimensions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.problems import register
from vrbench.problems.base import (
    DTYPE,
    MAX_MAGNITUDE,
    Capability,
    Problem,
    asymmetric_theta,
    below,
    check_magnitude,
    check_scale,
    check_size,
)

_SMOOTH_GAUSSIAN_CAPABILITIES = frozenset({
    Capability.CONTINUOUS, Capability.DIFFERENTIABLE, Capability.REPARAMETERIZABLE,
    Capability.INVERSE_TRANSFORM, Capability.GAUSSIAN})
"""What a Gaussian with a differentiable f offers: every estimator family applies."""

_TEST_FUNCTION_REFERENCE = "Mohamed et al., 2020 (JMLR), section 3"
"""The test functions of Mohamed, Rosca, Figurnov & Mnih, "Monte Carlo Gradient Estimation in
Machine Learning", JMLR 2020, section 3, where the score-function and pathwise estimators'
variances are compared in closed form."""


def _check_mean_and_scale(owner: str, mu: float, sigma: float) -> None:
    """Refuse a mean and spread whose samples ``μ + σε`` float64 cannot resolve."""
    check_scale(owner, "sigma", sigma)
    check_magnitude(owner, "mu", mu)
    check_magnitude(owner, "mu/sigma", mu / sigma)


@dataclass(frozen=True)
class _Gaussian(Problem):
    """Shared sampling and score of ``x ~ N(μ, σ²)`` with ``θ = (μ, σ)``.

    With ``ε = (x − μ)/σ`` the score is ``∂μ log p = ε/σ`` and ``∂σ log p = (ε² − 1)/σ``; the
    reparameterization is ``x = μ + σ ε`` with ``ε ~ N(0, 1)``. Limits: ``|μ| <= 1e8``,
    ``1e-8 <= σ <= 1e8`` and ``|μ|/σ <= 1e8``, so that float64 resolves every sample (see
    :data:`~vrbench.problems.base.MAX_MAGNITUDE`).
    """

    mu: float = 0.0
    sigma: float = 1.0

    capabilities: ClassVar = _SMOOTH_GAUSSIAN_CAPABILITIES
    reference: ClassVar = _TEST_FUNCTION_REFERENCE

    def __post_init__(self) -> None:
        _check_mean_and_scale(self.name, self.mu, self.sigma)

    @property
    def dim(self) -> int:
        return 2

    def initial_theta(self) -> Tensor:
        return torch.tensor([self.mu, self.sigma], dtype=DTYPE)

    def sample_noise(self, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=DTYPE)

    def project(self, theta: Tensor) -> Tensor:
        return torch.cat([theta[:1], theta[1:].clamp(min=1e-3)])

    def coordinate_names(self) -> list[str]:
        return ["μ", "σ"]

    noise_dim = 1

    def from_uniforms(self, theta: Tensor, uniforms: Tensor) -> Tensor:
        return self.transform(theta, torch.special.ndtri(uniforms[..., 0]))

    def sample_mean(self, theta: Tensor) -> Tensor:
        return theta[..., 0]

    def sample_covariance(self, theta: Tensor) -> Tensor:
        return (theta[1] ** 2).reshape(1, 1)

    def transform(self, theta: Tensor, noise: Tensor) -> Tensor:
        return theta[..., 0] + theta[..., 1] * noise

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        return self.transform(theta, self.sample_noise(shape, generator))

    def score(self, theta: Tensor, samples: Tensor) -> Tensor:
        mu, sigma = theta[0], theta[1]
        eps = (samples - mu) / sigma
        return torch.stack([eps / sigma, (eps**2 - 1) / sigma], dim=-1)

    def weighted_score(self, theta: Tensor, samples: Tensor, weights: Tensor) -> Tensor:
        # Σ_j w_j ε_j / σ and Σ_j (w_j ε_j) ε_j − w_j over σ: no (R, n, 2) tensor of scores.
        eps = (samples - theta[0]) / theta[1]
        weighted = weights * eps
        sums = torch.stack([weighted.sum(1), (weighted * eps).sum(1) - weights.sum(1)], dim=-1)
        return sums / (theta[1] * weights.shape[1])

    def log_prob(self, theta: Tensor, samples: Tensor) -> Tensor:
        eps = (samples - theta[0]) / theta[1]
        return -0.5 * eps**2 - torch.log(theta[1]) - 0.5 * math.log(2 * math.pi)


@register("gaussian_quadratic")
@dataclass(frozen=True)
class GaussianQuadratic(_Gaussian):
    """Gaussian with f(x) = (x − k)², k = 0 by default: the textbook case where the pathwise
    estimator shines.

    ``x ~ N(μ, σ²)``, ``J = (μ − k)² + σ²``, ``∇J = (2(μ − k), 2σ)``. Used throughout Mohamed
    et al., "Monte Carlo Gradient Estimation in Machine Learning", JMLR 2020, section 3, to
    compare the score-function and pathwise estimators' variances (their figure 2 varies k),
    which are known in closed form here.
    """

    display_name = r"$(x - k)^2$"
    parameter_symbols: ClassVar = {"mu": "μ", "sigma": "σ", "omega": "ω"}

    mu: float = 1.0
    sigma: float = 1.5
    k: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_magnitude(self.name, "k", self.k)

    def f(self, samples: Tensor) -> Tensor:
        return (samples - self.k) ** 2

    def value(self, theta: Tensor) -> Tensor:
        return (theta[0] - self.k) ** 2 + theta[1] ** 2

    def exact_grad(self, theta: Tensor) -> Tensor:
        return torch.stack([2 * (theta[0] - self.k), 2 * theta[1]])


@register("gaussian_bump")
@dataclass(frozen=True)
class GaussianBump(_Gaussian):
    """Gaussian with the bump f(x) = exp(−k x²), k ≥ 0: smooth, bounded, and flat away from 0.

    With ``a = 1 + 2kσ²``: ``J = a^{−1/2} exp(−kμ²/a)`` (a Gaussian integral),
    ``∂J/∂μ = −(2kμ/a) J`` and ``∂J/∂σ = 4kσ (kμ²/a² − 1/(2a)) J``. The second test function
    of Mohamed et al., "Monte Carlo Gradient Estimation in Machine Learning", JMLR 2020,
    section 3 (figure 2), whose variance comparison across k this problem reproduces.
    """

    display_name = r"$\exp(-kx^2)$"
    parameter_symbols: ClassVar = {"mu": "μ", "sigma": "σ", "omega": "ω"}

    mu: float = 1.0
    sigma: float = 1.0
    k: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0.0 <= self.k <= MAX_MAGNITUDE, self.name,
              f"k={self.k} must lie in [0, {MAX_MAGNITUDE:g}]")

    def f(self, samples: Tensor) -> Tensor:
        return torch.exp(-self.k * samples**2)

    def value(self, theta: Tensor) -> Tensor:
        mu, sigma = theta[0], theta[1]
        a = 1 + 2 * self.k * sigma**2
        return torch.exp(-self.k * mu**2 / a) / torch.sqrt(a)

    def exact_grad(self, theta: Tensor) -> Tensor:
        mu, sigma = theta[0], theta[1]
        a = 1 + 2 * self.k * sigma**2
        value = self.value(theta)
        return torch.stack([-2 * self.k * mu / a * value,
                            4 * self.k * sigma * (self.k * mu**2 / a**2 - 0.5 / a) * value])


@register("gaussian_step")
@dataclass(frozen=True)
class GaussianStep(_Gaussian):
    """Gaussian with the step f(x) = 1[x > 0]: non-differentiable, so only score methods apply.

    ``x ~ N(μ, σ²)``, ``J = Φ(μ/σ)``, ``∇J = φ(μ/σ) (1/σ, −μ/σ²)``. The pathwise gradient of
    the step is zero almost everywhere, hence biased; the problem declares f non-differentiable.
    A standard discontinuous test function (Mohamed et al., JMLR 2020, section 5).
    """

    display_name = r"$1[x > 0]$"
    parameter_symbols: ClassVar = {"mu": "μ", "sigma": "σ", "omega": "ω"}

    mu: float = 0.5
    sigma: float = 1.0

    capabilities: ClassVar = frozenset({
        Capability.CONTINUOUS, Capability.REPARAMETERIZABLE, Capability.INVERSE_TRANSFORM,
        Capability.GAUSSIAN})
    reference: ClassVar = "Mohamed et al., 2020 (JMLR), section 5"

    def f(self, samples: Tensor) -> Tensor:
        return below(-samples, 0.0)

    def nonsmooth_points(self, theta: Tensor) -> list[float]:
        return [0.0]

    def value(self, theta: Tensor) -> Tensor:
        probability: Tensor = torch.special.ndtr(theta[0] / theta[1])
        return probability

    def exact_grad(self, theta: Tensor) -> Tensor:
        mu, sigma = theta[0], theta[1]
        z = mu / sigma
        density = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
        return torch.stack([density / sigma, -density * mu / sigma**2])


def _standard_normal_density(z: Tensor) -> Tensor:
    return torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)


@register("gaussian_abs")
@dataclass(frozen=True)
class GaussianAbs(_Gaussian):
    """Gaussian with f(x) = |x − c|: a kink, differentiable almost everywhere, so pathwise applies.

    With ``m = μ − c`` and ``z = m/σ``: ``J = σ √(2/π) e^{−z²/2} + m (2Φ(z) − 1)`` (the mean of
    a folded normal), ``∂J/∂μ = 2Φ(z) − 1`` and ``∂J/∂σ = 2φ(z)``. The pathwise estimator is
    unbiased because the kink has probability zero. Cf. Mohamed et al., JMLR 2020, section 3.
    """

    display_name = r"$|x - c|$"
    parameter_symbols: ClassVar = {"mu": "μ", "sigma": "σ", "omega": "ω"}

    c: float = 0.5
    mu: float = 1.0
    sigma: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_magnitude(self.name, "c", self.c)

    def f(self, samples: Tensor) -> Tensor:
        return (samples - self.c).abs()

    def nonsmooth_points(self, theta: Tensor) -> list[float]:
        return [self.c]

    def value(self, theta: Tensor) -> Tensor:
        shift, sigma = theta[0] - self.c, theta[1]
        z = shift / sigma
        value: Tensor = (sigma * 2 * _standard_normal_density(z)
                         + shift * (2 * torch.special.ndtr(z) - 1))
        return value

    def exact_grad(self, theta: Tensor) -> Tensor:
        z = (theta[0] - self.c) / theta[1]
        return torch.stack([2 * torch.special.ndtr(z) - 1, 2 * _standard_normal_density(z)])


@register("gaussian_cosine")
@dataclass(frozen=True)
class GaussianCosine(_Gaussian):
    """Gaussian with the oscillating f(x) = cos(ωx), ω = 3 by default.

    ``J = cos(ωμ) e^{−ω²σ²/2}`` (the characteristic function of the normal),
    ``∂J/∂μ = −ω sin(ωμ) e^{−ω²σ²/2}``, ``∂J/∂σ = −ω² σ cos(ωμ) e^{−ω²σ²/2}``. Higher ω makes
    the pathwise estimator's variance grow like ω², while the score function's does not depend
    on ω's smoothness: the trade-off studied by Mohamed et al., JMLR 2020, section 3.
    """

    display_name = r"$\cos(\omega x)$"
    parameter_symbols: ClassVar = {"mu": "μ", "sigma": "σ", "omega": "ω"}

    omega: float = 3.0
    mu: float = 0.5
    sigma: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        # The phase ωx must be resolved too: float64 keeps ~1e-10 of it up to |ωx| ~ 1e6.
        check_magnitude(self.name, "omega·(|mu| + sigma)",
                        self.omega * (abs(self.mu) + self.sigma), limit=1e6)

    def f(self, samples: Tensor) -> Tensor:
        return torch.cos(self.omega * samples)

    def value(self, theta: Tensor) -> Tensor:
        damping = torch.exp(-0.5 * (self.omega * theta[1]) ** 2)
        return torch.cos(self.omega * theta[0]) * damping

    def exact_grad(self, theta: Tensor) -> Tensor:
        omega, mu, sigma = self.omega, theta[0], theta[1]
        damping = torch.exp(-0.5 * (omega * sigma) ** 2)
        return torch.stack([
            -omega * torch.sin(omega * mu) * damping,
            -(omega**2) * sigma * torch.cos(omega * mu) * damping,
        ])


class DiagonalGaussianSampling(Problem):
    """Shared sampling and score of ``x ~ N(μ, diag σ²)`` in D dimensions (``self.D``).

    ``θ = (μ_1..μ_D, σ_1..σ_D)``; the score is ``(ε/σ, (ε² − 1)/σ)`` coordinate-wise with
    ``ε = (x − μ)/σ``; ``x = μ + σε`` reparameterizes it.
    """

    D: int

    @property
    def dim(self) -> int:
        return 2 * self.D

    def sample_noise(self, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        return torch.randn((*shape, self.D), generator=generator, dtype=DTYPE)

    def project(self, theta: Tensor) -> Tensor:
        return torch.cat([theta[: self.D], theta[self.D :].clamp(min=1e-3)])

    @property
    def noise_dim(self) -> int:  # type: ignore[override]
        return self.D

    def from_uniforms(self, theta: Tensor, uniforms: Tensor) -> Tensor:
        return self.transform(theta, torch.special.ndtri(uniforms))

    def sample_mean(self, theta: Tensor) -> Tensor:
        return theta[..., : self.D]

    def sample_covariance(self, theta: Tensor) -> Tensor:
        return torch.diag(theta[self.D :] ** 2)

    def transform(self, theta: Tensor, noise: Tensor) -> Tensor:
        return theta[..., : self.D] + theta[..., self.D :] * noise

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        return self.transform(theta, self.sample_noise(shape, generator))

    def score(self, theta: Tensor, samples: Tensor) -> Tensor:
        mu, sigma = theta[: self.D], theta[self.D :]
        eps = (samples - mu) / sigma
        return torch.cat([eps / sigma, (eps**2 - 1) / sigma], dim=-1)

    def weighted_score(self, theta: Tensor, samples: Tensor, weights: Tensor) -> Tensor:
        # As the univariate one, coordinate-wise: no (R, n, 2D) tensor of scores.
        sigma = theta[self.D :]
        eps = (samples - theta[: self.D]) / sigma
        weighted = weights[..., None] * eps
        sums = torch.cat([weighted.sum(1), (weighted * eps).sum(1)
                          - weights.sum(1, keepdim=True)], dim=-1)
        return sums / (torch.cat([sigma, sigma]) * weights.shape[1])

    def log_prob(self, theta: Tensor, samples: Tensor) -> Tensor:
        mu, sigma = theta[: self.D], theta[self.D :]
        eps = (samples - mu) / sigma
        return (-0.5 * eps**2 - torch.log(sigma)).sum(-1) - 0.5 * self.D * math.log(2 * math.pi)

    def check_theta(self) -> Tensor:
        # Distinct means and spreads, so that no coordinate can stand in for another.
        center = self.initial_theta()
        offsets = asymmetric_theta(torch.zeros_like(center), 0.3)
        return torch.cat([center[: self.D] + offsets[: self.D],
                          center[self.D :] * torch.exp(offsets[self.D :])])

    def parameter_groups(self) -> dict[str, slice]:
        return {"means": slice(0, self.D), "scales": slice(self.D, 2 * self.D)}

    def sample_width(self) -> int:
        return self.D


@dataclass(frozen=True)
class _DiagonalGaussian(DiagonalGaussianSampling):
    """A diagonal Gaussian in D dimensions whose defaults set every ``μ_d`` to ``mu`` and
    every ``σ_d`` to ``sigma`` (see :class:`DiagonalGaussianSampling`)."""

    D: int = 10
    mu: float = 1.0
    sigma: float = 1.0

    capabilities: ClassVar = _SMOOTH_GAUSSIAN_CAPABILITIES
    reference: ClassVar = _TEST_FUNCTION_REFERENCE

    def __post_init__(self) -> None:
        check_size(self.name, "D", self.D)
        _check_mean_and_scale(self.name, self.mu, self.sigma)

    def initial_theta(self) -> Tensor:
        return torch.cat([torch.full((self.D,), self.mu, dtype=DTYPE),
                          torch.full((self.D,), self.sigma, dtype=DTYPE)])


@register("gaussian_quadratic_10d")
@dataclass(frozen=True)
class GaussianQuadraticND(_DiagonalGaussian):
    """Diagonal Gaussian in D = 10 dimensions with f(x) = Σ_d (x_d − k)².

    ``x ~ N(μ, diag σ²)``, ``θ = (μ_1..μ_D, σ_1..σ_D)``, ``J = Σ_d (μ_d − k)² + σ_d²``,
    ``∇J = (2(μ − k), 2σ)``. The score is ``(ε/σ, (ε² − 1)/σ)`` coordinate-wise with
    ``ε = (x − μ)/σ``; ``x = μ + σε`` reparameterizes it. The multivariate quadratic of
    Mohamed et al., "Monte Carlo Gradient Estimation in Machine Learning", JMLR 2020, section 3.
    """

    display_name = r"$\|x - k\|^2$, D = {D}"
    parameter_symbols: ClassVar = {"mu": "μ", "sigma": "σ", "omega": "ω"}

    k: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_magnitude(self.name, "k", self.k)
        check_magnitude(self.name, "(mu - k)/sigma", (self.mu - self.k) / self.sigma)

    def f(self, samples: Tensor) -> Tensor:
        distance = samples - self.k
        return (distance * distance).sum(dim=-1)

    def pathwise_gradient(self, theta: Tensor, noise: Tensor) -> Tensor:
        """With ``x = μ + σε``: ``∇μ f = 2(x − k)`` and ``∇σ f = 2(x − k) ε``, averaged over n."""
        # One temporary the size of the noise, reused in place; the sums written into the
        # halves of the result.
        slope = self.transform(theta, noise).sub_(self.k).mul_(2)
        grad = slope.new_empty((noise.shape[0], 2 * self.D))
        torch.sum(slope, 1, out=grad[:, : self.D])
        torch.sum(slope.mul_(noise), 1, out=grad[:, self.D :])
        return grad.div_(noise.shape[1])

    def value(self, theta: Tensor) -> Tensor:
        return ((theta[: self.D] - self.k) ** 2 + theta[self.D :] ** 2).sum()

    def exact_grad(self, theta: Tensor) -> Tensor:
        return torch.cat([2 * (theta[: self.D] - self.k), 2 * theta[self.D :]])


@register("gaussian_cosine_10d")
@dataclass(frozen=True)
class GaussianCosineND(_DiagonalGaussian):
    """Diagonal Gaussian in D = 10 dimensions with the non-separable f(x) = cos(ω Σ_d x_d/√D).

    With ``s = Σ_d μ_d/√D`` and ``v = Σ_d σ_d²/D`` (the mean and variance of ``Σ_d x_d/√D``):
    ``J = cos(ωs) e^{−ω²v/2}``, ``∂J/∂μ_d = −(ω/√D) sin(ωs) e^{−ω²v/2}`` and
    ``∂J/∂σ_d = −(ω² σ_d/D) cos(ωs) e^{−ω²v/2}``. Every coordinate moves the same phase, so
    no estimator can treat the coordinates separately: the D-dimensional counterpart of
    ``gaussian_cosine`` (Mohamed et al., JMLR 2020, section 3), with the same defaults
    ω = 3, μ_d = 0.5, σ_d = 0.5.
    """

    display_name = "cos(ω Σx/√D), D = {D}"  # no mathtext: {D} would be filled in
    parameter_symbols: ClassVar = {"mu": "μ", "sigma": "σ", "omega": "ω"}

    omega: float = 3.0
    mu: float = 0.5
    sigma: float = 0.5

    # At the defaults the phase ωΣμ_d/√D of the check θ lies near 3π/2, where J ≈ 0 and no
    # relative error in J can be seen; here J ≈ −0.5, about the spread of f, and both the μ
    # and the σ halves of ∇J are large.
    check_params: ClassVar = MappingProxyType({"mu": 0.25, "sigma": 0.3})

    def __post_init__(self) -> None:
        super().__post_init__()
        # As for gaussian_cosine: float64 keeps ~1e-10 of the phase up to |phase| ~ 1e6.
        check_magnitude(self.name, "omega·√D·(|mu| + sigma)",
                        self.omega * math.sqrt(self.D) * (abs(self.mu) + self.sigma), limit=1e6)

    def f(self, samples: Tensor) -> Tensor:
        return torch.cos(self.omega * samples.sum(dim=-1) / math.sqrt(self.D))

    def _phase_and_damping(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        phase = self.omega * theta[: self.D].sum() / math.sqrt(self.D)
        damping = torch.exp(-0.5 * self.omega**2 * (theta[self.D :] ** 2).sum() / self.D)
        return phase, damping

    def value(self, theta: Tensor) -> Tensor:
        phase, damping = self._phase_and_damping(theta)
        return torch.cos(phase) * damping

    def exact_grad(self, theta: Tensor) -> Tensor:
        phase, damping = self._phase_and_damping(theta)
        d_mu = -self.omega / math.sqrt(self.D) * torch.sin(phase) * damping
        d_sigma = -(self.omega**2) * theta[self.D :] / self.D * torch.cos(phase) * damping
        return torch.cat([d_mu.expand(self.D), d_sigma])
