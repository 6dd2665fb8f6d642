"""Gumbel-Rao: straight-through Gumbel-softmax with the relaxation's Jacobian averaged over the
Gumbel noise given the discrete sample."""

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


@register("gumbel_rao")
@dataclass(frozen=True)
class GumbelRao(Estimator):
    """Gumbel-Rao: straight-through Gumbel-softmax, Rao-Blackwellized over the noise.

    Draw ``D = hard(softmax((θ + G)/τ))``, an exact sample (Gumbel-max); then ``mc_samples``
    Gumbel vectors ``G_m`` from their distribution given ``D`` (the top perturbed logit is
    Gumbel(log Σ e^θ) and the others are Gumbels truncated below it) and
    ``ĝ = ∇f̃(D) · (1/M) Σ_m ∂θ softmax((θ + G_m)/τ)``, computed as the gradient of
    ``f̃(D + s̄ − stop_gradient(s̄))`` with ``s̄`` the mean relaxed sample. In expectation it
    equals straight-through Gumbel-softmax (``M = 1`` is exactly that estimator), so it
    keeps ST's bias, but conditioning on D removes the variance of the Jacobian: never more
    variance than ST. Biased; one evaluation of f (and its gradient) per draw. Paulus,
    Maddison & Krause, "Rao-Blackwellizing the straight-through Gumbel-softmax gradient
    estimator", ICLR 2021, section 3 (the estimator and its Monte Carlo form).
    """

    display_name = "Gumbel-Rao (τ = {temperature})"
    parameter_symbols: ClassVar = {"temperature": "τ", "mc_samples": "K"}
    requirement_note = "noise drawn given a discrete sample"

    temperature: float = 0.5
    mc_samples: int = 10

    family = "relaxation"
    requires = frozenset({Capability.RELAXABLE})
    unbiased = False
    reference = "Paulus et al., 2021"

    def __post_init__(self) -> None:
        check(self.temperature > 0, self.name, f"temperature={self.temperature} must be > 0")
        check(self.mc_samples >= 1, self.name, f"mc_samples={self.mc_samples} must be >= 1")

    def incompatibility(self, problem: Problem, n_samples: int) -> str | None:
        if type(problem).conditional_uniforms is Problem.conditional_uniforms:
            return f"{self.name} needs a problem that draws noise given a discrete sample"
        return super().incompatibility(problem, n_samples)

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        count, width = self.mc_samples, problem.noise_dim
        uniforms = torch.rand((replicates, n_samples, width), generator=generator,
                              dtype=DTYPE).clamp(EPSILON, 1 - EPSILON)
        hard = problem.harden(problem.relax(theta, uniforms, self.temperature))
        fresh = torch.rand((replicates, n_samples * count, width), generator=generator,
                           dtype=DTYPE)
        given = problem.conditional_uniforms(theta, hard.repeat_interleave(count, dim=1),
                                             fresh).clamp(EPSILON, 1 - EPSILON)

        def objective(copies: Tensor) -> Tensor:
            relaxed = problem.relax(copies, given, self.temperature)
            mean = relaxed.reshape(replicates, n_samples, count, *relaxed.shape[2:]).mean(2)
            return problem.f_relaxed(hard + mean - mean.detach()).mean(dim=1)

        return per_replicate_gradient(theta, replicates, objective)
