"""Measure-valued gradients: differences of f under two distributions, no score, no ∇f."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.base import Estimator
from vrbench.problems.base import DTYPE, Capability, Problem


@register("mvd_gaussian")
@dataclass(frozen=True)
class MVDGaussian(Estimator):
    """Measure-valued derivative of a Gaussian expectation, θ = (μ, σ).

    ``∂μ E f = c_μ (E f(μ + σW) − E f(μ − σW))`` with ``W ~ Weibull(√2, 2)``,
    ``c_μ = 1/(σ√(2π))``; ``∂σ E f = (1/σ)(E f(μ + σM) − E f(μ + σε))`` with M double-sided
    Maxwell and ε standard normal. Unbiased, needs neither a differentiable f nor a score;
    four evaluations of f per draw. Mohamed et al., "Monte Carlo Gradient Estimation in
    Machine Learning", JMLR 2020, section 6 and table 1; Pflug, "Optimization of Stochastic
    Models", 1996.
    """

    family = "measure-valued"
    requires = frozenset({Capability.GAUSSIAN})
    evals_per_sample = 4
    reference = "Mohamed et al., 2020, section 6"

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        shape = (replicates, n_samples)
        mu, sigma = theta[0], theta[1]
        weibull = math.sqrt(2) * torch.sqrt(
            -torch.log1p(-torch.rand(shape, generator=generator, dtype=DTYPE)))
        chi3 = torch.randn((*shape, 3), generator=generator, dtype=DTYPE).norm(dim=-1)
        sign = torch.where(torch.rand(shape, generator=generator, dtype=DTYPE) < 0.5, -1.0, 1.0)
        normal = torch.randn(shape, generator=generator, dtype=DTYPE)
        d_mu = (problem.f(mu + sigma * weibull) - problem.f(mu - sigma * weibull)) / (
            sigma * math.sqrt(2 * math.pi))
        d_sigma = (problem.f(mu + sigma * sign * chi3) - problem.f(mu + sigma * normal)) / sigma
        return torch.stack([d_mu.mean(dim=1), d_sigma.mean(dim=1)], dim=-1)


@register("mvd_bernoulli")
@dataclass(frozen=True)
class MVDBernoulli(Estimator):
    """Measure-valued derivative for independent Bernoullis with logits θ.

    ``∂E f/∂θ_i = p_i (1 − p_i) (E f(b | b_i = 1) − E f(b | b_i = 0))``, the other bits drawn
    as usual: for each draw and coordinate, f is evaluated with bit ``i`` set and cleared.
    Unbiased; ``2D`` evaluations of f per draw. Mohamed et al., JMLR 2020, section 6.
    """

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
        expanded = bits[..., None, :].expand(replicates, n_samples, dim, dim)
        eye = torch.eye(dim, dtype=torch.bool)
        ones = torch.where(eye, 1.0, expanded)
        zeros = torch.where(eye, 0.0, expanded)
        difference = problem.f(ones) - problem.f(zeros)  # (R, n, D)
        return p * (1 - p) * difference.mean(dim=1)
