"""IndeCateR: each categorical variable's expectation summed out, one variable at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.base import Estimator, variant_blocks
from vrbench.problems.base import Capability, Problem


@register("indecater")
@dataclass(frozen=True)
class IndeCateR(Estimator):
    """IndeCateR: for each variable, every category tried with the others held at the draw.

    For independent categoricals ``x_d ~ softmax(θ_d)``, ``d = 1..D``, with K categories and a
    draw x: ``ĝ_d = Σ_k ∇θ_d π_d(k) f(x_{≠d}, x_d = k) = π_d ⊙ (F_d − π_d·F_d)`` with
    ``F_d(k) = f(x_{≠d}, x_d = k)``, averaged over n draws. Since only ``π_d`` depends on
    ``θ_d``, summing over ``x_d`` exactly while sampling the others is a Rao-Blackwellization
    of the score function per variable (the CatLog-derivative trick): unbiased, exact when f
    is separable, and ``D·K`` evaluations of f per draw. De Smet, Sansone & Zuidberg Dos
    Martires, "Differentiable sampling of categorical distributions using the CatLog-derivative
    trick", NeurIPS 2023, section 4 (the IndeCateR estimator); the same estimator as the local
    expectation gradients of Titsias & Lázaro-Gredilla (NeurIPS 2015).
    """

    display_name = "IndeCateR"

    family = "discrete"
    requires = frozenset({Capability.CATEGORICAL_LOGITS})
    reference = "De Smet et al., 2023"

    def f_evals(self, problem: Problem, n_samples: int) -> int:
        return problem.dim * n_samples  # θ has one logit per variable and category: D·K

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        samples = problem.sample(theta, (replicates, n_samples), generator)  # (R, n, D, K)
        variables, categories = samples.shape[-2:]
        probs = torch.softmax(theta.reshape(variables, categories), dim=-1)
        # Variant (d, k) of a draw has variable d set to category k: (R, n, block, K, D, K).
        same_variable = torch.eye(variables, dtype=torch.bool)[:, None, :, None]
        category = torch.eye(categories, dtype=samples.dtype)[None, :, None, :]
        values = torch.cat([
            problem.f(torch.where(same_variable[block], category,
                                  samples[..., None, None, :, :]))
            for block in variant_blocks(problem, variables, categories)], dim=-3)  # (R, n, D, K)
        centred = values - (values * probs).sum(-1, keepdim=True)
        return (probs * centred).mean(dim=1).flatten(-2)
