"""Measure-valued gradients: differences of f under two distributions, no score, no ∇f."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.base import Estimator, variant_blocks
from vrbench.problems.base import DTYPE, Capability, Problem, gaussian_event_shape


@register("mvd_gaussian")
@dataclass(frozen=True)
class MVDGaussian(Estimator):
    """Measure-valued derivative of a diagonal Gaussian expectation, θ = (μ, σ) ∈ R^D × R^D.

    For each coordinate d, with the other coordinates ``x_{−d}`` of one draw ``x ~ N(μ, diag σ²)``
    held in common (f evaluated at x with ``x_d`` replaced):
    ``∂E f/∂μ_d = c_d (E f(x_d = μ_d + σ_d W) − E f(x_d = μ_d − σ_d W))``, ``W ~ Weibull(√2, 2)``,
    ``c_d = 1/(σ_d √(2π))``; ``∂E f/∂σ_d = (E f(x_d = μ_d + σ_d M) − E f(x_d = μ_d + σ_d ε))/σ_d``,
    M double-sided Maxwell and ε standard normal. Unbiased, needs neither a differentiable f
    nor a score; 4D evaluations of f per draw (4 for a univariate Gaussian, where no other
    coordinates exist). Mohamed et al., "Monte Carlo Gradient Estimation in Machine
    Learning", JMLR 2020, section 6 and table 1 (the weak derivatives of the Gaussian), applied
    coordinate by coordinate to a product measure; Pflug, "Optimization of Stochastic Models",
    1996.
    """

    display_name = "measure-valued"

    coupled: ClassVar[bool] = False

    family = "measure-valued"
    requires = frozenset({Capability.GAUSSIAN})
    evals_per_sample = 4
    reference = "Mohamed et al., 2020, section 6"

    def f_evals(self, problem: Problem, n_samples: int) -> int:
        return 4 * (problem.dim // 2) * n_samples

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        size = problem.dim // 2
        shape = (replicates, n_samples, size)
        mu, sigma = theta[:size], theta[size:]
        weibull = math.sqrt(2) * torch.sqrt(
            -torch.log1p(-torch.rand(shape, generator=generator, dtype=DTYPE)))
        chi3 = torch.randn((*shape, 3), generator=generator, dtype=DTYPE).norm(dim=-1)
        maxwell = torch.where(torch.rand(shape, generator=generator, dtype=DTYPE) < 0.5,
                              -chi3, chi3)
        if self.coupled:  # U·M is standard normal when U is uniform on (0, 1)
            normal = torch.rand(shape, generator=generator, dtype=DTYPE) * maxwell
        else:
            normal = torch.randn(shape, generator=generator, dtype=DTYPE)
        # Coordinate d of the four draws that replace x_d: (R, n, 4, D).
        replacements = mu + sigma * torch.stack([weibull, -weibull, maxwell, normal], dim=2)
        values = self._values(problem, theta, replacements, generator)
        d_mu = (values[:, :, 0] - values[:, :, 1]) / (sigma * math.sqrt(2 * math.pi))
        d_sigma = (values[:, :, 2] - values[:, :, 3]) / sigma
        return torch.cat([d_mu, d_sigma], dim=-1).mean(dim=1)

    @staticmethod
    def _values(problem: Problem, theta: Tensor, replacements: Tensor,
                generator: torch.Generator) -> Tensor:
        """f at a draw with coordinate d replaced, for every replacement, ``(R, n, 4, D)``."""
        replicates, n_samples, count, size = replacements.shape
        event = gaussian_event_shape(problem, theta)
        if size == 1:  # nothing else to hold in common
            values = problem.f(replacements.reshape(replicates, -1, *event))
            return values.reshape(replacements.shape)
        common = problem.sample(theta, (replicates, n_samples), generator)
        columns = []
        for d in range(size):  # one coordinate at a time keeps memory at 4 draws per draw
            perturbed = common[:, :, None, :].repeat(1, 1, count, 1)
            perturbed[..., d] = replacements[..., d]
            columns.append(problem.f(perturbed.reshape(replicates, -1, size)))
        return torch.stack(columns, dim=-1).reshape(replacements.shape)


@register("mvd_gaussian_coupled")
@dataclass(frozen=True)
class MVDGaussianCoupled(MVDGaussian):
    """Measure-valued derivative of a diagonal Gaussian with each σ pair coupled: ε = U·M.

    If M is double-sided Maxwell and U uniform on (0, 1), ``U·M`` is standard normal, so the
    negative part of ``∂E f/∂σ_d`` can use ``x_d = μ_d + σ_d U M`` instead of an independent
    normal; the pair then moves together and its difference varies less (common random
    numbers; Mohamed et al., JMLR 2020, section 6 and section 7 on coupling). The μ-pair
    shares W as in ``mvd_gaussian``. Unbiased; 4D evaluations of f per draw.
    """

    display_name = "measure-valued, coupled"

    coupled = True


@register("mvd_bernoulli")
@dataclass(frozen=True)
class MVDBernoulli(Estimator):
    """Measure-valued derivative for independent Bernoullis with logits θ.

    ``∂E f/∂θ_i = p_i (1 − p_i) (E f(b | b_i = 1) − E f(b | b_i = 0))``, the other bits drawn
    as usual: for each draw and coordinate, f is evaluated with bit ``i`` set and cleared.
    Unbiased; ``2D`` evaluations of f per draw. Mohamed et al., JMLR 2020, section 6.
    """

    display_name = "measure-valued (Bernoulli)"

    family = "measure-valued"
    requires = frozenset({Capability.BERNOULLI_LOGITS})
    reference = "Mohamed et al., 2020, section 6"

    def f_evals(self, problem: Problem, n_samples: int) -> int:
        return 2 * problem.dim * n_samples

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        dim = problem.dim
        p = torch.sigmoid(theta)
        bits = problem.sample(theta, (replicates, n_samples), generator)  # (R, n, D)
        eye = torch.eye(dim, dtype=torch.bool)
        differences = []
        for block in variant_blocks(problem, dim, 2):  # (R, n, block, D): bit i set or cleared
            expanded = bits[..., None, :].expand(replicates, n_samples, eye[block].shape[0], dim)
            ones = torch.where(eye[block], 1.0, expanded)
            zeros = torch.where(eye[block], 0.0, expanded)
            differences.append(problem.f(ones) - problem.f(zeros))
        return p * (1 - p) * torch.cat(differences, dim=-1).mean(dim=1)
