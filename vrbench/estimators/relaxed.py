"""Relaxed (biased) gradients of discrete samples: Gumbel-softmax and straight-through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.estimators import register
from vrbench.estimators.base import Estimator, per_replicate_gradient
from vrbench.problems.base import DTYPE, Capability, Problem

EPSILON = 1e-12


@register("gumbel_softmax")
@dataclass(frozen=True)
class GumbelSoftmax(Estimator):
    """Gumbel-softmax / Concrete: the pathwise gradient of f at a relaxed sample.

    ``z = softmax((θ + g)/τ)`` with Gumbel noise g (for a Bernoulli, the binary Concrete
    ``sigmoid((θ + log u − log(1 − u))/τ)``), ``ĝ = (1/n) Σ_j ∇θ f̃(z_j)`` with f̃ the problem's
    extension of f to relaxed samples. Biased: it differentiates the relaxed objective, which
    tends to the true one as the temperature τ → 0 while the variance grows. Jang, Gu & Poole,
    "Categorical reparameterization with Gumbel-softmax", ICLR 2017; Maddison, Mnih & Teh,
    "The Concrete distribution", ICLR 2017.
    """

    display_name = "Gumbel-softmax (τ = {temperature})"
    parameter_symbols: ClassVar = {"temperature": "τ"}

    temperature: float = 0.5

    family = "relaxation"
    requires = frozenset({Capability.RELAXABLE})
    unbiased = False
    reference = "Jang et al., 2017; Maddison et al., 2017"

    def __post_init__(self) -> None:
        check(self.temperature > 0, self.name, f"temperature={self.temperature} must be > 0")

    def relaxed_value(self, problem: Problem, copies: Tensor, uniforms: Tensor) -> Tensor:
        return problem.f_relaxed(problem.relax(copies, uniforms, self.temperature))

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        uniforms = torch.rand((replicates, n_samples, problem.noise_dim), generator=generator,
                              dtype=DTYPE).clamp(EPSILON, 1 - EPSILON)
        return per_replicate_gradient(
            theta, replicates,
            lambda copies: self.relaxed_value(problem, copies, uniforms).mean(dim=1))


@register("straight_through")
@dataclass(frozen=True)
class StraightThrough(GumbelSoftmax):
    """Straight-through Gumbel: f at the discrete sample, gradient through the relaxation.

    The forward pass rounds the relaxed sample ``z`` to its discrete value, the backward pass
    treats the rounding as the identity: ``ĝ = ∇θ f̃(z + stop_gradient(hard(z) − z))``. Biased
    at every temperature (Bengio, Léonard & Courville, "Estimating or propagating gradients
    through stochastic neurons", 2013; Jang et al., ICLR 2017).
    """

    display_name = "straight-through (τ = {temperature})"
    parameter_symbols: ClassVar = {"temperature": "τ"}

    reference = "Bengio et al., 2013; Jang et al., 2017"

    def relaxed_value(self, problem: Problem, copies: Tensor, uniforms: Tensor) -> Tensor:
        relaxed = problem.relax(copies, uniforms, self.temperature)
        return problem.f_relaxed(relaxed + (problem.harden(relaxed) - relaxed).detach())
